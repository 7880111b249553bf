"""Segmenter backend (Segment Anything). ``create_app()`` is the WSGI factory for gunicorn."""

from __future__ import annotations

from typing import Any


def create_app(**kwargs: Any) -> Any:
    from backends.core.app import create_app as core_create_app

    from .model import SegmenterModel

    return core_create_app(SegmenterModel, **kwargs)
