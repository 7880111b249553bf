from __future__ import annotations

from typing import Any

from .base import ControlModel


class PolygonLabelsModel(ControlModel):
    tag = "PolygonLabels"
    yolo_task = "segment"

    def regions(self, result: Any, names: dict[int, str], width: int, height: int) -> list[dict[str, Any]]:
        if result.masks is None:
            return []
        mapping = self.label_map(names)
        out = []
        for polygon, conf, cls in zip(result.masks.xyn, result.boxes.conf.tolist(), result.boxes.cls.tolist()):
            label = mapping.get(int(cls))
            if label is None or conf < self.threshold or len(polygon) < 3:
                continue
            points = [[round(100 * float(x), 3), round(100 * float(y), 3)] for x, y in polygon]
            out.append(self.region({"points": points, "polygonlabels": [label]}, width, height, conf))
        return out
