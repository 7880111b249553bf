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

    ultralytics does not clip rotated boxes, and Label Studio refuses a rectangle wider or taller
    than the image or whose corner lies past its right or bottom edge; an object at the image's
    edge would then lose its pre-label. A box whose centre is on the image is therefore shrunk
    about its centre, angle kept, until it fits (see :func:`fit_inside`); one whose centre is off
    the image is left out."""

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
            fitted = fit_inside(cx * sx, cy * sy, w * sx, h * sy, r, width, height)
            if fitted is None:
                continue
            value = ls_rotated_box(cx * sx, cy * sy, *fitted, r, width, height)
            out.append(self.region({**value, "rectanglelabels": [label]}, width, height, conf))
        return out


def fit_inside(cx: float, cy: float, w: float, h: float, r: float, width: int, height: int
               ) -> tuple[float, float] | None:
    """The box's size shrunk by the one factor (≤ 1) that brings its four corners onto the image
    and each side within the image's width and height, or None if its centre is off the image.

    Invariant: with the returned size, every corner lies in [0, width] × [0, height], so Label
    Studio's x, y, width and height all lie in [0, 100]. A box already inside keeps its size."""
    if not (0 <= cx <= width and 0 <= cy <= height) or w <= 0 or h <= 0:
        return None
    cos, sin = math.cos(r), math.sin(r)
    limits = [1.0, width / w, height / h]
    for a in (-0.5, 0.5):
        for b in (-0.5, 0.5):
            dx, dy = a * w * cos - b * h * sin, a * w * sin + b * h * cos
            limits += [reach(cx, dx, width), reach(cy, dy, height)]
    scale = min(limits) * (1 - 1e-9)  # just inside: a corner exactly on the edge rounds past it
    return (w * scale, h * scale) if scale > 0 else None


def reach(start: float, step: float, end: float) -> float:
    """How many times ``step`` fits from ``start`` before leaving [0, end] (inf for no step)."""
    if step > 0:
        return (end - start) / step
    if step < 0:
        return start / -step
    return math.inf


def ls_rotated_box(cx: float, cy: float, w: float, h: float, r: float, width: int, height: int) -> dict[str, float]:
    """A box (pixels: centre, size, clockwise angle in radians) as Label Studio's rectangle value."""
    cos, sin = math.cos(r), math.sin(r)
    x = cx - w / 2 * cos + h / 2 * sin
    y = cy - w / 2 * sin - h / 2 * cos
    return {"x": 100 * x / width, "y": 100 * y / height, "width": 100 * w / width, "height": 100 * h / height,
            "rotation": math.degrees(r) % 360}
