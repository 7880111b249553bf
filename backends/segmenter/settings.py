"""Segmenter settings: ``SAM_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SegmenterSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SAM_", extra="ignore")

    model_type: Literal["vit_b", "vit_l", "vit_h"] = "vit_b"
    checkpoint: Path | None = None  # the official .pth for model_type
    allow_random: bool = False  # no checkpoint: random weights (tests, latency measurements)
    device: str = "auto"
    cache_mb: int = Field(512, ge=0)  # in-memory embedding cache (~4 MiB per image)
    disk_cache_mb: int = Field(2048, ge=0)  # shared by processes and workers; 0 disables it
    prefetch_on_open: bool = True  # non-interactive /predict starts computing the embedding
    polygon_tolerance: float = Field(1.5, ge=0)  # polygon simplification, pixels
    multimask: bool = False  # ask SAM for 3 masks and keep the best-scored one
