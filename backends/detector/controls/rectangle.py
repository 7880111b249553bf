from __future__ import annotations

from typing import Any

from .base import ControlModel


class RectangleLabelsModel(ControlModel):
    tag = "RectangleLabels"
    yolo_task = "detect"

    def regions(self, result: Any, names: dict[int, str], width: int, height: int) -> list[dict[str, Any]]:
        mapping = self.label_map(names)
        boxes = result.boxes
        out = []
        # normalised: the image inferred on may be a downscaled copy of the task's (model.py)
        for (x1, y1, x2, y2), conf, cls in zip(boxes.xyxyn.tolist(), boxes.conf.tolist(), boxes.cls.tolist()):
            label = mapping.get(int(cls))
            if label is None or conf < self.threshold:
                continue
            value = {
                "x": 100 * x1, "y": 100 * y1, "width": 100 * (x2 - x1), "height": 100 * (y2 - y1),
                "rectanglelabels": [label],
            }
            out.append(self.region(value, width, height, conf))
        return out
