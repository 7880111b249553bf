from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .base import ControlModel


class PolygonLabelsModel(ControlModel):
    tag = "PolygonLabels"
    yolo_task = "segment"

    def regions(self, result: Any, names: dict[int, str], width: int, height: int) -> list[dict[str, Any]]:
        out = []
        for label, polygon, conf in self.outlines(result, names):
            points = [[round(100 * float(x), 3), round(100 * float(y), 3)] for x, y in polygon]
            out.append(self.region({"points": points, "polygonlabels": [label]}, width, height, conf))
        return out

    def outlines(self, result: Any, names: dict[int, str]) -> Iterator[tuple[str, Any, float]]:
        """``(label, outline 0..1, confidence)`` of each object of a segment result over the threshold."""
        if result.masks is None:
            return
        mapping = self.label_map(names)
        for polygon, conf, cls in zip(result.masks.xyn, result.boxes.conf.tolist(), result.boxes.cls.tolist()):
            label = mapping.get(int(cls))
            if label is not None and conf >= self.threshold and len(polygon) >= 3:
                yield label, polygon, conf
