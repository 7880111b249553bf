"""Segmenter settings: ``SAM_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SegmenterSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SAM_", extra="ignore")

    # Names are checked when the engine is built (engine.py), so a wrong one is a 503 at /predict
    # that names the setting, not a server that will not start.
    engine: str = "auto"  # auto, sam, mobile_sam, sam2
    model_type: str | None = None  # the engine's size; unset: the checkpoint's, else the engine's smallest
    runtime: str = "auto"  # auto, torch, onnx
    # a state dict of the engine: a path, an ultralytics release name (mobile_sam.pt, sam2.1_t.pt:
    # downloaded into MODEL_DIR/downloads where a network exists) or a URL
    checkpoint: str | None = None
    onnx_dir: Path | None = None  # ONNX exports, one folder per engine and weights; unset: DATA_DIR/sam-onnx
    allow_random: bool = False  # no checkpoint: random weights (tests, latency measurements)
    device: str = "auto"
    cache_mb: int = Field(512, ge=0)  # in-memory embedding cache (~4 MiB per image)
    disk_cache_mb: int = Field(2048, ge=0)  # shared by processes and workers; 0 disables it
    prefetch_on_open: bool = True  # non-interactive /predict starts computing the embedding
    polygon_tolerance: float = Field(1.5, ge=0)  # polygon simplification, pixels
    multimask: bool = False  # ask SAM for 3 masks and keep the best-scored one
