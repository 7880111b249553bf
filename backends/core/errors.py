"""Errors a user can act on, each with the HTTP status that says whose move it is.

Most mean "the caller sent something we cannot use" (4xx). A few say the problem is on this side
or upstream and may pass: 503 (Label Studio or its images unreachable for now, retried), 507
(``ModelStoreError``: the model store cannot take a new version, e.g. a full disk); a 424 says a
dependency failed (a download, a token Label Studio refuses) and a 422 a file we will not load
(weights that would run code). Every one becomes a JSON body ``{"error": <kind>, "message": <text>}``
in the protocol server, and a logged, empty prediction when it happens to one task of a batch.
A background job retries those of 5xx (``jobs.may_pass``) and fails at once on a 4xx.
Anything else that escapes a handler is a bug and becomes a 500 with a generic message.
"""

from __future__ import annotations

from collections.abc import Sequence


class LabelLoopError(Exception):
    """Base class: a problem with the input, described so a user can fix it."""

    status: int = 400
    kind: str = "bad_request"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    def to_json(self) -> dict[str, str]:
        return {"error": self.kind, "message": self.message}


class BadRequest(LabelLoopError):
    """The request body is malformed or misses a required key."""


class LabelConfigError(LabelLoopError):
    """The project's label config cannot be served by this backend."""

    status = 422
    kind = "label_config"


class MediaError(LabelLoopError):
    """An image could not be fetched or decoded, or its URL was refused.

    ``transient``: the image may well load on a later try (no connection, a timeout, 429, 502-504,
    a token that could not be refreshed), as opposed to gone (404, or Label Studio's 500 for a
    missing upload) or unreadable. A background job that meets only transient failures is seeing
    an outage, not deleted tasks."""

    status = 422
    kind = "media"

    def __init__(self, message: str, *, status: int | None = None, transient: bool = False) -> None:
        super().__init__(message, status=status)
        self.transient = transient


def raise_if_outage(errors: Sequence[LabelLoopError], total: int, what: str) -> None:
    """Fail a background job's batch with a 503 (the job is retried) when every one of its
    ``total`` images failed for reasons that pass (``MediaError.transient``): that is an outage, not
    deleted tasks, and going on would write a result that leaves those tasks out."""
    if total and len(errors) == total and all(getattr(e, "transient", False) for e in errors):
        raise LabelLoopError(f"no image of {what} of {total} could be loaded (all transient failures, e.g. "
                             f"{errors[0].message}); retrying later", status=503)


class NotFound(LabelLoopError):
    status = 404
    kind = "not_found"


class Conflict(LabelLoopError):
    status = 409
    kind = "conflict"


class Unauthorized(LabelLoopError):
    status = 401
    kind = "unauthorized"


class ModelStoreError(LabelLoopError):
    """The model store cannot take a new version (full, read-only, no permission)."""

    status = 507
    kind = "model_store"


def http_status(exc: BaseException) -> int | None:
    """The HTTP status behind an upstream error, if any: label-studio-sdk's ``ApiError.status_code``,
    or ``exc.response.status_code`` for requests / httpx errors."""
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else None
