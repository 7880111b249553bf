"""What corrections per image compares (``corrections.py``): a control's pre-labels, as Label
Studio results, and its annotated regions, as the training samples hold them, both as the same
shapes, per YOLO task:

- ``detect``: axis-aligned boxes (:class:`Region`);
- ``obb``: rotated boxes as their four corners (:class:`Area`), so a box at the wrong angle is an
  adjust even where its axis-aligned extent matches;
- ``segment``: polygons and brush masks (:class:`Area`); a brush pre-label is compared as the
  mask it paints, its annotation as the outline the training set traced from it;
- ``pose``: each placed keypoint (:class:`Point`), labelled as Label Studio names it, so a point
  at the right place under another label is a relabel;
- ``classify``: the image's class (:class:`WholeImage`).

Both sides are in image fractions (0..1), whatever the image's size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from backends.core.rle import rle2mask

from .corrections import Area, Point, Region, Shape, WholeImage
from .dataset import rect_corners, rect_to_yolo

if TYPE_CHECKING:
    from .trainable import ControlData


def predicted_shape(result: dict[str, Any], task: str) -> Shape:
    """One pre-label (a Label Studio result as ``/predict`` makes it) as a shape."""
    value, kind = result["value"], result["type"]
    width, height = result.get("original_width") or 1, result.get("original_height") or 1
    label = (value.get(kind) or [""])[0]
    if kind == "rectanglelabels" and task == "obb":
        return Area.from_polygon(label, rect_corners(value, width, height))
    if kind == "rectanglelabels":
        box = rect_to_yolo(value, width, height)
        return Region(label, _corners(*box) if box else (0.0, 0.0, 0.0, 0.0))
    if kind == "polygonlabels":
        return Area.from_polygon(label, [(x / 100, y / 100) for x, y in value["points"]])
    if kind == "brushlabels":
        return Area.from_mask(label, rle2mask(value["rle"], height, width))
    if kind == "keypointlabels":
        return Point(label, (value["x"] / 100, value["y"] / 100))
    if kind == "choices":
        return WholeImage(label)
    raise ValueError(f"no shape for a {kind!r} result")


def truth_shapes(sample: Any, data: ControlData) -> list[Shape]:
    """One training sample's annotated regions as shapes (the sample type is the task's)."""
    names = data.names
    if data.task == "detect":
        return [Region(names[c], _corners(cx, cy, w, h)) for c, cx, cy, w, h in sample.boxes]
    if data.task == "obb":
        return [Area.from_polygon(names[c], list(zip(xy[0::2], xy[1::2]))) for c, *xy in sample.boxes]
    if data.task == "segment":
        return [Area.from_polygon(names[c], points) for c, points in sample.objects]
    if data.task == "pose":
        labels = getattr(data.control, "index_to_label", {})
        return [Point(labels.get(i, str(i)), point) for _, points in sample.objects
                for i, point in enumerate(points) if point is not None]
    if data.task == "classify":
        return [WholeImage(names[sample.class_id])]
    raise ValueError(f"no shapes for task {data.task!r}")


def _corners(cx: float, cy: float, w: float, h: float) -> tuple[float, float, float, float]:
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
