"""Shared fixtures. The real Label Studio fixtures live in tests/harness.py."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from backends.core.settings import CoreSettings

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "label-studio-samples"
RECT_CONFIG = (
    '<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
    '<Label value="Cat"/><Label value="Dog"/></RectangleLabels></View>'
)

pytest_plugins = ["tests.harness"]


def sample(name: str) -> dict:
    """A request body Label Studio 1.23 really sent (tests/samples holds a copy for CI)."""
    local = Path(__file__).parent / "samples" / f"{name}.json"
    return json.loads(local.read_text())["request_body"]


@pytest.fixture(scope="session", autouse=True)
def shared_sam_onnx_exports(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One MobileSAM ONNX export for the whole run, not one per segmenter a test starts (~10 s
    each): the exports depend only on the (random, seeded) weights. Subprocesses inherit it."""
    import os

    os.environ.setdefault("SAM_ONNX_DIR", str(tmp_path_factory.mktemp("sam-onnx")))


@pytest.fixture
def settings(tmp_path: Path) -> CoreSettings:
    return CoreSettings(DATA_DIR=tmp_path / "data", TRAIN_DEBOUNCE_S=0.0, EMBEDDED_WORKER=False, WARMUP=False,
                        LABEL_STUDIO_URL="http://127.0.0.1:9", LABEL_STUDIO_API_KEY=None)


def png_bytes(width: int = 64, height: int = 48, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()
