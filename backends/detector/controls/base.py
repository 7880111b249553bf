"""The small interface every control model implements, and the label mapping they share."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from backends.core.errors import LabelConfigError


def truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


class ControlModel(ABC):
    #: The Label Studio control tag served, e.g. "RectangleLabels".
    tag: ClassVar[str]
    #: The YOLO task whose output it reads: detect, segment, pose, classify or obb.
    yolo_task: ClassVar[str]
    #: True: served only by weights of its own (a trained version's, or model_path), never the base's
    own_weights_only: ClassVar[bool] = False
    #: True: labels a ``<Video>`` (regions from tracks), not an ``<Image>``
    on_video: ClassVar[bool] = False

    def __init__(self, control: Any, default_threshold: float) -> None:
        self.control = control
        self.from_name: str = control.name
        self.to_name: str = control.to_name[0]
        attrs = control.attr or {}
        try:
            self.threshold = float(attrs.get("model_score_threshold", default_threshold))
        except ValueError:
            raise LabelConfigError(
                f"{self.tag} {self.from_name!r}: model_score_threshold={attrs['model_score_threshold']!r} is not a number"
            ) from None
        self.model_path: str | None = attrs.get("model_path")
        self.skip = truthy(attrs.get("model_skip", "false"))
        self.label_control = control  # whose <Label>s name the classes (another tag's for video boxes)

    def connect(self, interface: Any) -> None:  # noqa: B027 - a hook, empty for most controls
        """Find what the control needs from the rest of the config (most need nothing)."""

    @property
    def key(self) -> tuple[str, str]:
        """(tag, YOLO task): what the control is trained as (a RectangleLabels trains detect or obb)."""
        return self.tag, self.yolo_task

    # -- label mapping --------------------------------------------------------------------------
    def label_map(self, model_names: dict[int, str]) -> dict[int, str]:
        """Model class index -> Label Studio label, by exact name, then case-insensitive name,
        then the label's ``predicted_values="jeep,cab"``. No match at all is a config error."""
        by_exact = {name: idx for idx, name in model_names.items()}
        by_lower = {name.lower(): idx for idx, name in model_names.items()}
        mapping: dict[int, str] = {}
        for label in self.label_control.labels:
            attrs = self.label_control.labels_attrs[label].attr or {}
            candidates = [label] + [v.strip() for v in attrs.get("predicted_values", "").split(",") if v.strip()]
            for candidate in candidates:
                idx = by_exact.get(candidate, by_lower.get(candidate.lower()))
                if idx is not None:
                    mapping.setdefault(idx, label)
        if not mapping:
            shown = ", ".join(list(model_names.values())[:30]) + (" ..." if len(model_names) > 30 else "")
            raise LabelConfigError(
                f"none of the labels of {self.tag} {self.from_name!r} ({', '.join(self.label_control.labels)}) matches "
                f"a class of the model ({shown}). Rename labels, or add predicted_values=\"model_class\" to a <Label>"
            )
        return mapping

    # -- output ---------------------------------------------------------------------------------
    def region(self, value: dict[str, Any], width: int, height: int, score: float) -> dict[str, Any]:
        """One result item; built through the SDK tag so values are validated by its schema."""
        label_key = self.tag.lower()
        labels = value.pop(label_key)
        region = self.control.label(labels, **value)
        result = json.loads(region.to_json())
        result.update(original_width=width, original_height=height, image_rotation=0, score=round(float(score), 4))
        return result

    @abstractmethod
    def regions(self, result: Any, names: dict[int, str], width: int, height: int) -> list[dict[str, Any]]:
        """Regions for one image from one ultralytics ``Results``. Coordinates come from the
        result's normalised forms (``xyxyn``, ``xyn``): the image inferred on may be a downscaled
        copy; ``width`` and ``height`` are the task image's, for ``original_width/height``."""
