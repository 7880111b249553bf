from __future__ import annotations

from typing import Any

import numpy as np

from backends.core.rle import mask2rle

from .polygon import PolygonLabelsModel


class BrushLabelsModel(PolygonLabelsModel):
    """Segment models as brush masks: each object's mask at the task image's size, in Label
    Studio's RLE. The mask is filled from ultralytics' outline of it (``masks.xyn``, every part
    joined), which is already mapped to the original image whatever the inference size and
    runtime; holes are filled, as in the polygons training reads brush masks into.

    Served only from weights of its own (``own_weights_only``): a trained version's, or
    ``model_path``. A ``<BrushLabels>`` is often the segmenter's control, and the base segment
    weights already pre-label ``<PolygonLabels>``; masks appear once brush annotations trained."""

    tag = "BrushLabels"
    yolo_task = "segment"
    own_weights_only = True

    def regions(self, result: Any, names: dict[int, str], width: int, height: int) -> list[dict[str, Any]]:
        import cv2

        out = []
        for label, polygon, conf in self.outlines(result, names):
            mask = np.zeros((height, width), dtype=np.uint8)
            cv2.fillPoly(mask, [np.round(np.asarray(polygon) * (width, height)).astype(np.int32)], 255)
            if mask.any():
                out.append(self.region({"format": "rle", "rle": mask2rle(mask), "brushlabels": [label]}, width,
                                       height, conf))
        return out
