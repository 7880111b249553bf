"""Active backend settings: ``ACTIVE_*`` environment variables, overridable per project through
``extra_params`` (e.g. ``{"strategy": "coreset", "epochs": 20}``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from backends.core.settings import ProjectSettings

from .strategies import STRATEGIES

TaskKind = Literal["classification", "detection"]

#: ``ACTIVE_STRATEGY``'s default per task type: never one that trails random on that task type's
#: benchmark. Classification: margin reaches random's final accuracy with 61 % fewer labels
#: (bench/results/active_learning.json). Detection: random until bench/active_detection.py
#: measures a strategy that beats it; margin (max) trailed it, at 450 labels by 2.4 points of
#: mAP50-95 and 11.6 of the rare class's AP (seed 0, docs/active.md).
DEFAULT_STRATEGY: dict[str, str] = {"classification": "margin", "detection": "random"}


class ActiveSettings(ProjectSettings):
    model_config = SettingsConfigDict(env_prefix="ACTIVE_", extra="ignore")
    project_overridable = ("strategy", "epochs", "batch", "lr", "imgsz", "min_annotations", "val_ratio",
                           "loss_weight", "detach_after", "queue_size", "aggregate", "box_threshold", "disagreements",
                           "seed")

    # Which tasks first: random, least_confidence, margin, entropy, learning_loss, coreset,
    # discriminative, hybrid, badge. Empty: the project's task type's default (DEFAULT_STRATEGY),
    # the best that bench/active_learning.py (classification) and bench/active_detection.py
    # (detection) measured.
    strategy: str = ""
    # Classification task model: torchvision ResNet-18 (``resnet18_small``: its CIFAR stem, for images
    # of 32-64 px; ``small_cnn`` for tiny images on a CPU), started from
    # ``base_weights``: a ResNet-18 state dict file (e.g. torchvision's ImageNet weights), or empty for
    # random init (what the offline tests use).
    backbone: Literal["resnet18", "resnet18_small", "small_cnn"] = "resnet18"
    base_weights: str = ""
    imgsz: int = Field(224, ge=16)
    epochs: int = Field(10, gt=0)
    batch: int = Field(32, ge=2)
    lr: float = Field(0.01, gt=0)
    loss_weight: float = Field(1.0, ge=0)  # the loss-prediction objective's weight (the paper's lambda)
    detach_after: float = Field(0.6, ge=0, le=1)  # fraction of epochs before the loss head stops feeding the backbone
    min_annotations: int = Field(4, ge=2)
    val_ratio: float = Field(0.2, ge=0, lt=1)
    device: str = "auto"
    seed: int = 0

    # Scoring: tasks per inference chunk (each chunk's outputs are cached in the model store), how
    # many tasks a set-based strategy (coreset, discriminative, hybrid, badge) ranks explicitly (the
    # rest follow by margin), and how detection box uncertainties become one number per image.
    chunk: int = Field(256, gt=0)
    queue_size: int = Field(1000, gt=0)
    # With REDIS_URL: how many RQ workers a scoring job asks to take chunks alongside it (a large
    # project's model outputs then come from several workers; 0: the job computes every chunk).
    scoring_helpers: int = Field(3, ge=0)
    aggregate: Literal["max", "mean", "sum"] = "max"
    # Detection: the boxes uncertainty is computed from, down to this confidence (pre-labels keep
    # the detector's DETECTOR_SCORE_THRESHOLD): at the serving threshold a young model sees nothing
    # in most images, which all tie at the highest doubt.
    box_threshold: float = Field(0.05, ge=0, le=1)
    # Blind-spot report: how many highest-loss annotated tasks the "Model disagrees" tab keeps.
    disagreements: int = Field(20, ge=1, le=200)

    def strategy_for(self, kind: TaskKind) -> str:
        """The strategy a project of ``kind`` ranks with: ``strategy`` when set, else the kind's default."""
        return self.strategy or DEFAULT_STRATEGY[kind]

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str) -> str:
        if value and value not in STRATEGIES:
            raise ValueError(f"unknown strategy {value!r}; choose one of {', '.join(STRATEGIES)}")
        return value
