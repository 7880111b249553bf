"""Detector test fixtures: offline YOLO settings, small checkpoints, images with known boxes."""

from __future__ import annotations

import base64
import io
import random
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from backends.core.services import Services
from backends.core.settings import CoreSettings
from backends.detector import model as detector_model
from backends.detector.training import save_checkpoint

OFFLINE_ENV = {
    "YOLO_OFFLINE": "1",
    "DETECTOR_BASE_WEIGHTS": "yolo11n.yaml",
    "DETECTOR_SEG_WEIGHTS": "yolo11n-seg.yaml",
    "DETECTOR_POSE_WEIGHTS": "yolo11n-pose.yaml",
    "DETECTOR_CLS_WEIGHTS": "yolo11n-cls.yaml",
    "DETECTOR_OBB_WEIGHTS": "yolo11n-obb.yaml",
}


@pytest.fixture
def detector_env(monkeypatch, tmp_path):
    for key, value in OFFLINE_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DETECTOR_WEIGHTS_DIRS", f'["{tmp_path / "weights"}"]')
    detector_model.env_settings.cache_clear()
    yield tmp_path / "weights"
    detector_model.env_settings.cache_clear()


@pytest.fixture
def services(tmp_path, detector_env):
    return Services.from_settings(CoreSettings(DATA_DIR=tmp_path / "data", LABEL_STUDIO_URL="http://127.0.0.1:9"))


def one_class_checkpoint(kind: str, directory: Path, names: dict[int, str]) -> Path:
    """A random-init model of ``kind`` whose classes are exactly ``names`` (so every output maps)."""
    from ultralytics.nn.tasks import ClassificationModel, DetectionModel, OBBModel, PoseModel, SegmentationModel

    build = {"segment": (SegmentationModel, "yolo11n-seg.yaml"), "pose": (PoseModel, "yolo11n-pose.yaml"),
             "classify": (ClassificationModel, "yolo11n-cls.yaml"), "detect": (DetectionModel, "yolo11n.yaml"),
             "obb": (OBBModel, "yolo11n-obb.yaml")}[kind]
    import torch

    # fixed initial weights: a test's briefly fine-tuned model then predicts the same on every run
    # (random ones left the five-control test without any mask on some runs)
    torch.manual_seed(0)
    model = build[0](build[1], nc=len(names), verbose=False)
    model.names = names
    return save_checkpoint(model, directory / f"{kind}-{len(names)}.pt", task=kind)


def scene(seed: int, size=(160, 120)) -> tuple[bytes, list[tuple[int, int, int, int]]]:
    """A gray image with 1-2 red rectangles; returns PNG bytes and the boxes in pixels."""
    rng = random.Random(seed)
    img = Image.new("RGB", size, (rng.randint(60, 200),) * 3)
    draw, boxes = ImageDraw.Draw(img), []
    for _ in range(rng.randint(1, 2)):
        w, h = rng.randint(25, 50), rng.randint(20, 40)
        x, y = rng.randint(0, size[0] - w), rng.randint(0, size[1] - h)
        draw.rectangle([x, y, x + w, y + h], fill=(220, 30, 30))
        boxes.append((x, y, w, h))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue(), boxes


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()
