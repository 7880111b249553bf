"""Logging setup with a filter that masks credentials, whatever code path formats them."""

from __future__ import annotations

import logging
import re

_SECRET_PATTERNS = [
    re.compile(r"(?i)\b(Token|Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?i)(api[_-]?key|access_token|refresh|password|token)(['\"]?\s*[:=]\s*['\"]?)[^\s'\",&}]{6,}"),
]


_KNOWN_SECRETS: set[str] = set()


def register_secret(value: str | None) -> None:
    """A configured credential (API key, Basic auth password): masked wherever it appears, even bare
    (e.g. echoed back in an upstream error body), not only after ``Token``/``password=``."""
    if value and len(value) >= 6:
        _KNOWN_SECRETS.add(value)


def redact(text: str) -> str:
    for secret in _KNOWN_SECRETS:
        text = text.replace(secret, "***")
    text = _SECRET_PATTERNS[0].sub(lambda m: f"{m.group(1)} ***", text)
    return _SECRET_PATTERNS[1].sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class RedactingFormatter(logging.Formatter):
    """Masks the whole formatted line: the filter sees the message only, and a traceback (an
    exception's text, the locals an SDK error repeats) is appended after filters ran."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_logging(level: str = "INFO") -> None:
    root = logging.getLogger()
    if not any(getattr(h, "_labelloop", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler._labelloop = True  # type: ignore[attr-defined]
        handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"))
        handler.addFilter(RedactingFilter())
        root.addHandler(handler)
    root.setLevel(level.upper())
    # Werkzeug's request log and urllib3's debug lines can carry URLs with credentials.
    for name in ("werkzeug", "urllib3", "httpx"):
        logging.getLogger(name).addFilter(RedactingFilter())
