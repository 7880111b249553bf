"""Detector settings: ``DETECTOR_*`` environment variables, overridable per project.

A project's ``extra_params`` (set when connecting the backend in Label Studio) may override the
training hyper-parameters by their short name, e.g. ``{"epochs": 30, "imgsz": 320}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from backends.core.settings import ProjectSettings

#: Hyper-parameters a project may override through extra_params.
PROJECT_OVERRIDABLE = ("epochs", "imgsz", "batch", "lr0", "freeze", "patience", "min_annotations",
                       "max_minutes", "val_ratio", "publish", "score_threshold", "seed", "prelabel",
                       "prelabel_max_tasks")


class DetectorSettings(ProjectSettings):
    model_config = SettingsConfigDict(env_prefix="DETECTOR_", extra="ignore")
    project_overridable = PROJECT_OVERRIDABLE

    # Base weights per YOLO task: an ultralytics name (downloaded by ultralytics where a network
    # exists), a local .pt path, or a model .yaml (random init; what the offline tests use).
    base_weights: str = "yolo11n.pt"
    seg_weights: str = "yolo11n-seg.pt"
    pose_weights: str = "yolo11n-pose.pt"
    cls_weights: str = "yolo11n-cls.pt"
    obb_weights: str = "yolo11n-obb.pt"  # RectangleLabels with model_obb="true": rotated boxes
    # Directories (besides the model store) that a label config's model_path may point into.
    weights_dirs: list[Path] = Field(default_factory=list)
    # Classes (``package.module.Class``, comma-separated) a weights file may contain besides torch.nn
    # and ultralytics.nn modules: a custom architecture's own layers. Weights are loaded weights-only
    # (safe_weights.py); a class listed here is trusted to build no harm from its pickled state.
    safe_globals: Annotated[list[str], NoDecode] = Field(default_factory=list)

    device: str = "auto"  # auto: cuda:0 when available, else cpu
    score_threshold: float = Field(0.25, ge=0, le=1)
    max_det: int = Field(300, gt=0)
    predict_imgsz: int = Field(640, gt=0)
    # auto: ONNX Runtime on a CPU (2.5x faster raw inference here), PyTorch on a GPU; see model.py
    runtime: Literal["auto", "torch", "onnx"] = "auto"
    # images per inference call; 0 = auto: 1 on a CPU (a batch is slower there: measured on 2
    # cores), GPU_PREDICT_BATCH on a GPU. Also bounds the activations a /predict holds at once.
    predict_batch: int = Field(0, ge=0)
    # decoded pixels a /predict holds at once: a chunk of tasks is inferred and its images dropped
    # once it reaches this (64 MP: five 12 MP photos, ~190 MB as RGB), whatever the request's size
    predict_pixels_held: int = Field(64_000_000, gt=0)
    # seconds of tracking one video may take inside /predict (Label Studio waits 100 s for the
    # whole request): a video projected past it is left to a prelabel job, which has no limit
    video_predict_s: float = Field(60.0, gt=0)

    epochs: int = Field(20, gt=0)
    imgsz: int = Field(640, ge=32)
    batch: int = Field(16, gt=0)
    lr0: float = Field(0.01, gt=0)
    freeze: int = Field(10, ge=0)  # backbone layers kept frozen while fine-tuning
    patience: int = Field(10, ge=0)
    min_annotations: int = Field(1, ge=1)
    max_minutes: float = Field(30.0, gt=0)
    val_ratio: float = Field(0.2, gt=0, lt=1)
    publish: Literal["always", "if_better"] = "if_better"
    seed: int = 0
    # the prelabel job (prelabel.py): after each published version ("publish") or only on
    # POST /jobs ("request"); tasks one run pre-labels at most (a 50,000-task project on a CPU
    # would hold the project's worker for an hour where a labeler needs the next fine-tune)
    prelabel: Literal["publish", "request"] = "publish"
    prelabel_max_tasks: int = Field(5000, gt=0)

    def base_for(self, task: str) -> str:
        """The base weights of a YOLO task (detect, segment, pose, classify, obb)."""
        return {"detect": self.base_weights, "segment": self.seg_weights, "pose": self.pose_weights,
                "classify": self.cls_weights, "obb": self.obb_weights}[task]

    @field_validator("safe_globals", mode="before")
    @classmethod
    def _split_names(cls, value: object) -> object:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value
