"""Active learning backend: scores unlabeled tasks and reorders Label Studio's queue.

``create_app()`` is the WSGI factory for gunicorn; the classes (``classifier``, ``strategies``,
``ranking``, ``scoring``) are plain Python, usable from a notebook without any server.
"""

from __future__ import annotations

from typing import Any


def create_app(**kwargs: Any) -> Any:
    from backends.core.app import create_app as core_create_app

    from .model import ActiveModel

    return core_create_app(ActiveModel, **kwargs)
