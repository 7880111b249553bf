from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .base import ControlModel


def boxes_of(result: Any, mapping: dict[int, str], threshold: float) -> Iterator[tuple[dict[str, Any], float]]:
    """(rectangle value in percent, confidence) of each box of ``result`` whose class maps to a
    label and whose confidence reaches ``threshold``. Normalised coordinates: the image inferred on
    may be a downscaled copy of the task's (model.py)."""
    boxes = result.boxes
    for (x1, y1, x2, y2), conf, cls in zip(boxes.xyxyn.tolist(), boxes.conf.tolist(), boxes.cls.tolist()):
        label = mapping.get(int(cls))
        if label is not None and conf >= threshold:
            yield {"x": 100 * x1, "y": 100 * y1, "width": 100 * (x2 - x1), "height": 100 * (y2 - y1),
                   "rectanglelabels": [label]}, conf


class RectangleLabelsModel(ControlModel):
    tag = "RectangleLabels"
    yolo_task = "detect"

    def regions(self, result: Any, names: dict[int, str], width: int, height: int) -> list[dict[str, Any]]:
        return [self.region(value, width, height, conf) for value, conf in boxes_of(result, self.label_map(names),
                                                                                    self.threshold)]
