"""Credentials never reach the log, tracebacks included."""

import io
import logging

from backends.core.logs import RedactingFilter, RedactingFormatter, register_secret


def test_a_secret_in_a_traceback_is_masked_too():
    register_secret("s3cr3t-api-key-value")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter("%(message)s"))
    handler.addFilter(RedactingFilter())
    log = logging.getLogger("test_logs")
    log.addHandler(handler)
    try:
        try:
            raise RuntimeError("upstream said: bad key s3cr3t-api-key-value")
        except RuntimeError:
            log.exception("calling Label Studio with Token s3cr3t-api-key-value failed")
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert "RuntimeError: upstream said: bad key ***" in text and "s3cr3t-api-key-value" not in text
