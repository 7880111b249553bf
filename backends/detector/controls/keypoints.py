from __future__ import annotations

from typing import Any

from backends.core.errors import LabelConfigError

from .base import ControlModel


class KeyPointLabelsModel(ControlModel):
    """Pose models: each ``<Label model_index="N">`` names keypoint N of the model's skeleton."""

    tag = "KeyPointLabels"
    yolo_task = "pose"

    def __init__(self, control: Any, default_threshold: float) -> None:
        super().__init__(control, default_threshold)
        attrs = control.attr or {}
        self.point_threshold = float(attrs.get("model_point_threshold", 0.0))
        self.point_size = float(attrs.get("model_point_size", 1.0))
        self.index_to_label: dict[int, str] = {}
        for label in control.labels:
            index = (control.labels_attrs[label].attr or {}).get("model_index")
            if index is None:
                continue
            if not str(index).isdigit():
                raise LabelConfigError(f"KeyPointLabels {self.from_name!r}: <Label value={label!r}> "
                                       f"model_index={index!r} is not a number")
            self.index_to_label[int(index)] = label
        if not self.index_to_label:
            raise LabelConfigError(
                f"KeyPointLabels {self.from_name!r}: give each <Label> a model_index (the keypoint's index in the "
                "pose model, e.g. 0 = nose for COCO pose)"
            )

    def regions(self, result: Any, names: dict[int, str], width: int, height: int) -> list[dict[str, Any]]:
        if result.keypoints is None:
            return []
        points = result.keypoints.xyn.tolist()
        confs = result.keypoints.conf.tolist() if result.keypoints.conf is not None else None
        out = []
        for i, (instance, box_conf) in enumerate(zip(points, result.boxes.conf.tolist())):
            if box_conf < self.threshold:
                continue
            for index, label in self.index_to_label.items():
                if index >= len(instance):
                    continue
                x, y = instance[index]
                point_conf = confs[i][index] if confs else box_conf
                if point_conf < self.point_threshold or (x == 0 and y == 0):
                    continue  # ultralytics reports invisible keypoints at (0, 0)
                value = {"x": 100 * x, "y": 100 * y, "width": self.point_size, "keypointlabels": [label]}
                out.append(self.region(value, width, height, point_conf * box_conf))
        return out
