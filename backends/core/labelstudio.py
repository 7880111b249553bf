"""Label Studio API access for the backends, on top of label-studio-sdk.

The SDK already tells a legacy token from a personal access token (a JWT refresh token) and
exchanges the latter for 5-minute access tokens before they expire; we reuse its header builder
so media downloads authenticate exactly like API calls do.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

import requests
from label_studio_sdk import LabelStudio

from .errors import BadRequest, LabelLoopError, http_status

if TYPE_CHECKING:
    from label_studio_sdk.core.pagination import SyncPager

#: wait per prediction a model-version delete may remove, on top of the client's timeout (2.5x measured)
DELETE_S_PER_PREDICTION = 0.01

log = logging.getLogger(__name__)
REFRESH_MARGIN_S = 30.0  # access tokens live 300 s


class LabelStudioClient:
    def __init__(self, url: str, api_key: str | None, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._api_key = api_key
        self._timeout = timeout

    @property
    def timeout(self) -> float:
        """Seconds a request waits for Label Studio unless its work sizes its own wait."""
        return self._timeout

    def __repr__(self) -> str:  # never show the key
        return f"LabelStudioClient({self.url!r}, api_key={'set' if self._api_key else 'unset'})"

    @property
    def configured(self) -> bool:
        return bool(self._api_key)

    @cached_property
    def sdk(self) -> LabelStudio:
        if not self._api_key:
            raise BadRequest(
                "LABEL_STUDIO_API_KEY is not set: the backend cannot read annotations or media from "
                f"Label Studio at {self.url}. Set it to a legacy token or a personal access token."
            )
        return LabelStudio(base_url=self.url, api_key=self._api_key, timeout=self._timeout)

    def auth_headers(self) -> dict[str, str]:
        """The Authorization header Label Studio expects, refreshing a PAT's access token if due."""
        if not self._api_key:
            return {}
        self._refresh_if_due()
        headers = self.sdk._client_wrapper.get_headers()  # the SDK's own token manager
        return {"Authorization": headers["Authorization"]}

    def _refresh_if_due(self, margin_s: float = REFRESH_MARGIN_S) -> None:
        """The SDK refreshes a PAT's access token only once it has expired, so a request could leave
        with a token that expires in flight; drop it ``margin_s`` before its expiry instead."""
        tokens = self.sdk._client_wrapper._tokens_client
        if tokens._use_legacy_token or tokens._access_token_expiration is None:
            return
        if tokens._access_token_expiration - timedelta(seconds=margin_s) <= datetime.now(UTC):
            with tokens._token_refresh_lock:
                tokens._access_token = None

    def iter_tasks(self, project: int, *, page_size: int = 100, after: int | None = None,
                   until: int | None = None) -> Iterator[dict[str, Any]]:
        """Every task of a project (with an id above ``after`` and up to ``until``, if given) with
        its annotations and predictions, in id order, page by page. Callers pick the labeled ones from the annotations
        themselves: Label Studio 1.23 ignores the API's ``only_annotated``, and its
        ``total_annotations`` filter reads a counter kept by signals.

        Pages are keyed by id (each asks for the tasks after the last id seen), not numbered: with
        page numbers, a task deleted from an earlier page while we read shifts every later task back
        by one, and one would be skipped without a word (a labeled task missing from a training set,
        an unlabeled one from the queue)."""
        last_id = after
        while True:
            self._refresh_if_due()
            beyond = [] if last_id is None else [
                {"filter": "filter:tasks:id", "operator": "greater", "type": "Number", "value": last_id}]
            if until is not None:
                beyond.append({"filter": "filter:tasks:id", "operator": "less_or_equal", "type": "Number", "value": until})
            query = {"filters": {"conjunction": "and", "items": beyond}, "ordering": ["tasks:id"]}
            # the SDK's list() returns SyncPagerExt[T] with T bound to nothing: items are RoleBasedTask models
            pager: SyncPager[Any, Any] = self.sdk.tasks.list(
                project=project, fields="all", page=1, page_size=page_size, query=json.dumps(query))
            tasks = [t.model_dump(mode="json") if hasattr(t, "model_dump") else dict(t) for t in pager.items or []]
            if not tasks:  # not "a short page": Label Studio may cap page_size (TASK_API_PAGE_SIZE_MAX)
                return
            ids = [int(t["id"]) for t in tasks]
            if until is not None and max(ids) > until:  # the bound ignored: would read to the end unasked
                raise LabelLoopError(f"Label Studio at {self.url} ignored the task list's id filter (asked for ids "
                                     f"up to {until}, got {max(ids)}): cannot list project {project}'s tasks")
            if last_id is not None and min(ids) <= last_id:  # filter or ordering ignored: would loop forever
                raise LabelLoopError(f"Label Studio at {self.url} ignored the task list's id filter (asked for ids "
                                     f"after {last_id}, got {min(ids)}): cannot list project {project}'s tasks")
            yield from tasks
            last_id = max(ids)

    def delete_model_version(self, project: int, version: str, *, at_most: int = 0) -> int:
        """Delete every prediction of ``version`` in ``project`` in one request (no SDK call for it);
        returns how many went. An empty version would delete *all* predictions: refused here.

        ``at_most`` (the predictions the version may hold) sizes the wait: Label Studio answers
        only once all are gone, ~4 ms each (34 s for 8,800, measured on 2 cores), and a request
        that times out is retried after Label Studio finished it anyway, so its count is lost."""
        if not version:
            raise ValueError("delete_model_version needs a model version")
        timeout = self._timeout + at_most * DELETE_S_PER_PREDICTION
        reply = requests.delete(f"{self.url}/api/projects/{project}/model-versions/", json={"model_version": version},
                                headers=self.auth_headers(), timeout=timeout)
        reply.raise_for_status()
        data = reply.json()
        return int(data.get("deleted_predictions", 0)) if isinstance(data, dict) else 0

    def get_task(self, task_id: int) -> dict[str, Any] | None:
        """One task with its annotations; None when it is gone (404)."""
        self._refresh_if_due()
        try:
            return self.sdk.tasks.get(str(task_id)).model_dump(mode="json")
        except Exception as exc:
            if http_status(exc) == 404:
                return None
            raise

    def get_project(self, project: int) -> dict[str, Any]:
        self._refresh_if_due()
        return self.sdk.projects.get(id=project).model_dump(mode="json")


def is_labeled(task: dict[str, Any]) -> bool:
    """Labeled = one annotation that was not skipped: a skipped task stays in the active queue and
    gets pre-labels, as Label Studio's own ``total_annotations`` (which the queue tab filters on)
    counts it."""
    return any(isinstance(a, dict) and not a.get("was_cancelled") for a in task.get("annotations") or [])
