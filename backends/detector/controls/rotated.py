from __future__ import annotations

import math
from typing import Any

from .base import ControlModel


class RotatedRectangleLabelsModel(ControlModel):
    """``<RectangleLabels model_obb="true">``: the rotated boxes of a YOLO OBB model.

    ultralytics gives a box as centre, size and an angle ``r`` (radians, turning the box's x axis
    towards the image's y axis: clockwise on screen). Label Studio keeps the *top-left corner* of
    the unrotated box and rotates the box clockwise about that corner, in pixels: the corner is
    the centre minus half of each rotated side. Sizes are normalised through the inferred image
    (which may be a downscaled copy) and scaled to the task image's pixels, so the angle holds.
    Label Studio refuses a rectangle wider or taller than the image, or whose corner lies past its
    right or bottom edge: such a box is not pre-labelled."""

    tag = "RectangleLabels"
    yolo_task = "obb"

    def regions(self, result: Any, names: dict[int, str], width: int, height: int) -> list[dict[str, Any]]:
        if result.obb is None:
            return []
        mapping = self.label_map(names)
        inferred_h, inferred_w = result.orig_shape[:2]
        sx, sy = width / inferred_w, height / inferred_h
        out = []
        for (cx, cy, w, h, r), conf, cls in zip(result.obb.xywhr.tolist(), result.obb.conf.tolist(),
                                                result.obb.cls.tolist()):
            label = mapping.get(int(cls))
            if label is None or conf < self.threshold:
                continue
            value = ls_rotated_box(cx * sx, cy * sy, w * sx, h * sy, r, width, height)
            if max(value["x"], value["y"], value["width"], value["height"]) > 100:
                continue  # a side longer than the image (or a corner past it): no Label Studio rectangle
            out.append(self.region({**value, "rectanglelabels": [label]}, width, height, conf))
        return out


def ls_rotated_box(cx: float, cy: float, w: float, h: float, r: float, width: int, height: int) -> dict[str, float]:
    """A box (pixels: centre, size, clockwise angle in radians) as Label Studio's rectangle value."""
    cos, sin = math.cos(r), math.sin(r)
    x = cx - w / 2 * cos + h / 2 * sin
    y = cy - w / 2 * sin - h / 2 * cos
    return {"x": 100 * x / width, "y": 100 * y / height, "width": 100 * w / width, "height": 100 * h / height,
            "rotation": math.degrees(r) % 360}
