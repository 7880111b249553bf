"""A project's ``extra_params``, in every shape Label Studio stores or sends.

Label Studio keeps the ML backend's extra params in a JSON field, but its Connect Model form writes
the text box's content into it as a **string**: ``""`` when the box is left empty (the form's
default), or the JSON text the user typed (``'{"epochs": 5}'``). The REST API and the SDK store an
object, and an old connection may hold ``null``. ``/setup`` forwards whatever is stored, so every
one of these shapes reaches the backends, and every one must mean the same settings.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import BadRequest

#: How much of a refused value an error message quotes (Label Studio shows the message in its form).
QUOTE_CHARS = 60


def parse_extra_params(value: Any) -> dict[str, Any]:
    """The extra params as a dict: ``None``, ``""`` and whitespace are ``{}``; JSON text is parsed;
    an object is taken as it is. Anything else is a :class:`BadRequest` naming the field and
    quoting what was received, in words that read well inside Label Studio's form."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        return _parse_text(value)
    raise BadRequest(f"'extra_params' must be a JSON object such as {{\"epochs\": 5}}, "
                     f"got a JSON {_json_kind(value)}: {_quote(json.dumps(value))}")


def _parse_text(text: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        problem = getattr(exc, "msg", str(exc))
        raise BadRequest(f"'extra_params' is not valid JSON ({problem}): {_quote(text)}. "
                         f"Write a JSON object such as {{\"epochs\": 5}}") from None
    if not isinstance(parsed, dict):
        raise BadRequest(f"'extra_params' must be a JSON object such as {{\"epochs\": 5}}, "
                         f"got a JSON {_json_kind(parsed)}: {_quote(text)}")
    return parsed


def _json_kind(value: Any) -> str:
    kinds = {bool: "boolean", int: "number", float: "number", str: "string", list: "array", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def _quote(text: str) -> str:
    text = " ".join(text.split())  # one line: the message may travel in an HTTP reason phrase
    return text if len(text) <= QUOTE_CHARS else text[: QUOTE_CHARS - 3] + "..."
