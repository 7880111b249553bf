from __future__ import annotations

import math
from typing import Any

from .base import ControlModel

#: a fitted box narrower than this (task image pixels) is a sliver at the edge, not a pre-label
MIN_SIDE_PX = 1.0

Point = tuple[float, float]
Box = tuple[float, float, float, float]  # centre x, centre y, width, height (pixels; the angle is kept apart)


class RotatedRectangleLabelsModel(ControlModel):
    """``<RectangleLabels model_obb="true">``: the rotated boxes of a YOLO OBB model.

    ultralytics gives a box as centre, size and an angle ``r`` (radians, turning the box's x axis
    towards the image's y axis: clockwise on screen). Label Studio keeps the *top-left corner* of
    the unrotated box and rotates the box clockwise about that corner, in pixels: the corner is
    the centre minus half of each rotated side. Sizes are normalised through the inferred image
    (which may be a downscaled copy) and scaled to the task image's pixels, so the angle holds.

    ultralytics does not clip rotated boxes. Label Studio takes a rotated rectangle whose corners
    stick out of the image, but refuses one wider or taller than the image or whose turning corner
    lies past its right or bottom edge; rather than lose such a box (an object at the image's
    edge), it is fitted onto the image (:func:`fit_inside`). Every other box is the model's own."""

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
            value = ls_value((cx * sx, cy * sy, w * sx, h * sy), r, width, height)
            if value is not None:
                out.append(self.region({**value, "rectanglelabels": [label]}, width, height, conf))
        return out


def ls_value(box: Box, r: float, width: int, height: int) -> dict[str, float] | None:
    """Label Studio's rectangle value for ``box`` turned by ``r``: as predicted where Label Studio
    takes it, else fitted onto the image; None when nothing of it can be shown."""
    value = ls_rotated_box(*box, r, width, height)
    if ls_takes(value):
        return value
    fitted = fit_inside(box, r, width, height)
    return ls_rotated_box(*fitted, r, width, height) if fitted is not None else None


def ls_takes(value: dict[str, float]) -> bool:
    """Whether Label Studio 1.23 stores this rectangle: finite, not wider or taller than the
    image, its turning corner not past the right or bottom edge (corners may stick out)."""
    numbers = [value[k] for k in ("x", "y", "width", "height", "rotation")]
    return (all(math.isfinite(v) for v in numbers) and value["width"] > 0 and value["height"] > 0
            and max(value["x"], value["y"], value["width"], value["height"]) <= 100)


def fit_inside(box: Box, r: float, width: int, height: int) -> Box | None:
    """``box`` (turned by ``r``) fitted onto a ``width`` x ``height`` image, angle kept: the part
    of it on the image, boxed again at the same angle (its centre moves), then shrunk about that
    centre, aspect kept, until every corner is on the image and no side is longer than the image.

    Invariants: the result lies inside ``box`` and inside the image, so Label Studio's x, y, width
    and height all fall in [0, 100]; a box already on the image is returned as it is; a box at a
    right angle (r a multiple of 90°) is clipped exactly, as an axis-aligned box would be. None
    when no part of it is on the image, or what is left is under ``MIN_SIDE_PX`` on a side."""
    if not all(math.isfinite(v) for v in (*box, r)) or min(box[2], box[3]) <= 0:
        return None
    corners = box_corners(box, r)
    if all(0 <= x <= width and 0 <= y <= height for x, y in corners) and box[2] <= width and box[3] <= height:
        return box
    part = clip_to_image(corners, width, height)
    if len(part) < 3:
        return None
    visible = rebox(part, r)
    scale = min(1.0, width / visible[2], height / visible[3], *(_shrink_to(visible, r, width, height)))
    if scale < 1:
        scale *= 1 - 1e-9  # just inside: a corner exactly on the edge may round past it
    fitted = (visible[0], visible[1], visible[2] * scale, visible[3] * scale)
    return fitted if min(fitted[2], fitted[3]) >= MIN_SIDE_PX else None


def box_corners(box: Box, r: float) -> list[Point]:
    """The four corners of ``box`` turned by ``r`` about its centre, in order around it."""
    cx, cy, w, h = box
    cos, sin = math.cos(r), math.sin(r)
    return [(cx + a * w * cos - b * h * sin, cy + a * w * sin + b * h * cos)
            for a, b in ((-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5))]


def clip_to_image(polygon: list[Point], width: float, height: float) -> list[Point]:
    """The part of a convex polygon inside [0, width] x [0, height] (Sutherland-Hodgman)."""
    # each side of the image as (axis, sign, offset): a point p is inside when sign * p[axis] + offset >= 0
    edges = ((0, 1, 0.0), (0, -1, width), (1, 1, 0.0), (1, -1, height))
    for axis, sign, offset in edges:
        inside = [sign * p[axis] + offset for p in polygon]
        clipped: list[Point] = []
        for i, p in enumerate(polygon):
            q, dp, dq = polygon[i - 1], inside[i], inside[i - 1]
            if (dp >= 0) != (dq >= 0):  # the edge q -> p crosses the line
                t = dq / (dq - dp)
                clipped.append((q[0] + t * (p[0] - q[0]), q[1] + t * (p[1] - q[1])))
            if dp >= 0:
                clipped.append(p)
        polygon = clipped
        if not polygon:
            return []
    return polygon


def rebox(polygon: list[Point], r: float) -> Box:
    """The smallest box turned by ``r`` that holds ``polygon``: its extent along the box's axes."""
    cos, sin = math.cos(r), math.sin(r)
    along = [x * cos + y * sin for x, y in polygon]
    across = [-x * sin + y * cos for x, y in polygon]
    s, t = (min(along) + max(along)) / 2, (min(across) + max(across)) / 2
    return s * cos - t * sin, s * sin + t * cos, max(along) - min(along), max(across) - min(across)


def _shrink_to(box: Box, r: float, width: float, height: float) -> list[float]:
    """For each corner and axis, the factor that brings it onto the image, shrinking about the centre."""
    cx, cy = box[0], box[1]
    factors = []
    for x, y in box_corners(box, r):
        factors += [_reach(cx, x - cx, width), _reach(cy, y - cy, height)]
    return factors


def _reach(start: float, step: float, end: float) -> float:
    """How many times ``step`` fits from ``start`` before leaving [0, end] (inf for no step)."""
    if step > 0:
        return max(end - start, 0.0) / step
    if step < 0:
        return max(start, 0.0) / -step
    return math.inf


def ls_rotated_box(cx: float, cy: float, w: float, h: float, r: float, width: int, height: int) -> dict[str, float]:
    """A box (pixels: centre, size, clockwise angle in radians) as Label Studio's rectangle value:
    its turning corner is the first of :func:`box_corners`."""
    x, y = box_corners((cx, cy, w, h), r)[0]
    return {"x": 100 * x / width, "y": 100 * y / height, "width": 100 * w / width, "height": 100 * h / height,
            "rotation": math.degrees(r) % 360}
