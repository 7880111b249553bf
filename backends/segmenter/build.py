"""The one place an engine is built: ``get_engine`` turns the settings into an engine, once per
distinct setting and process."""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

from backends.core.devices import resolve_device

from .engine import SegmentEngine, choose

log = logging.getLogger(__name__)


@lru_cache(maxsize=2)
def get_engine(engine: str, model_type: str | None, runtime: str, checkpoint: str | None, allow_random: bool,
               device: str, onnx_root: Path = Path(".data/sam-onnx")) -> SegmentEngine:
    """One engine per distinct setting, built once per process; ONNX exports go under ``onnx_root``."""
    choice, state = choose(engine, model_type, runtime, checkpoint, allow_random, resolve_device(device))
    if choice.runtime == "onnx":
        from .onnx_engine import OnnxEngine

        built: SegmentEngine = OnnxEngine(choice, state, onnx_root)
    elif choice.engine == "sam":
        from .sam_engine import SamEngine

        built = SamEngine(choice, state)
    else:
        from .ultralytics_engine import UltralyticsEngine

        built = UltralyticsEngine(choice, state)
    if state is None:
        log.warning("%s with RANDOM weights (SAM_ALLOW_RANDOM): masks are meaningless, latency is real", built.name)
    return built
