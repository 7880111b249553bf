"""From Label Studio polygons and brush masks to YOLO segment labels (one object per line:
``class x1 y1 x2 y2 ...``, normalised to the image).

- ``PolygonLabels``: Label Studio's points (percent of the image) as they are, clipped to the
  image. A polygon of fewer than 3 distinct points has no area: dropped and counted.
- ``BrushLabels``: the RLE is decoded (``core.rle.rle2mask``) at the result's
  ``original_height`` x ``original_width`` and traced with OpenCV. Every outer contour of the
  object counts (a brush stroke can leave several islands); they are joined into one polygon by
  ultralytics' ``merge_multi_segment``, by hairlines, as ultralytics converts COCO's multi-part
  masks. Holes are filled: a YOLO polygon has none. Islands under ``MIN_ISLAND_PX`` pixels are
  brush noise and dropped. Undecodable RLE is dropped and counted, never a failed job.
- A label no longer in the config is dropped and counted, as for boxes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backends.core.rle import rle2mask

from .dataset import annotated_images, other_region

Point = tuple[float, float]
MIN_ISLAND_PX = 4  # a brush island smaller than this is a stray click, not part of the object


@dataclass
class SegmentSample:
    task_id: int
    image_url: str
    objects: list[tuple[int, list[Point]]]  # class, polygon (0..1)

    def label_lines(self) -> str:
        return "".join(f"{c} " + " ".join(f"{x:.6f} {y:.6f}" for x, y in points) + "\n" for c, points in self.objects)


@dataclass
class SegmentReport:
    n_annotated: int = 0
    n_negatives: int = 0
    n_objects: int = 0
    dropped: Counter[str] = field(default_factory=Counter)  # why -> regions dropped
    skipped_tasks: dict[int, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"n_annotated": self.n_annotated, "n_negatives": self.n_negatives, "n_objects": self.n_objects,
                "dropped": dict(self.dropped), "skipped_tasks": {str(k): v for k, v in self.skipped_tasks.items()}}


def polygon_points(value: dict[str, Any]) -> list[Point] | None:
    """A Label Studio polygon value -> clipped 0..1 points; None if it has no area."""
    points = []
    for point in value.get("points") or []:
        if not (isinstance(point, (list, tuple)) and len(point) >= 2):
            return None
        try:
            x, y = float(point[0]) / 100, float(point[1]) / 100
        except (TypeError, ValueError):
            return None
        points.append((min(max(x, 0.0), 1.0), min(max(y, 0.0), 1.0)))
    return points if len(set(points)) >= 3 and _area(points) > 0 else None


def brush_polygon(value: dict[str, Any], height: int, width: int) -> list[Point] | None:
    """A Label Studio brush value -> one 0..1 polygon of all its islands; None if it is empty.
    Raises ``ValueError`` for RLE that does not decode to ``height`` x ``width``."""
    import cv2
    from ultralytics.data.converter import merge_multi_segment

    mask = rle2mask(value.get("rle"), height, width).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    islands = [c.reshape(-1, 2) for c in contours if cv2.contourArea(c) >= MIN_ISLAND_PX and len(c) >= 3]
    if not islands:
        return None
    joined = np.concatenate(merge_multi_segment([i.reshape(-1).tolist() for i in islands]), axis=0) \
        if len(islands) > 1 else islands[0]
    scale = np.array([width, height], dtype=float)
    return [(float(x), float(y)) for x, y in np.clip(joined / scale, 0.0, 1.0)]


def segment_samples(tasks: Iterable[dict[str, Any]], from_name: str, to_name: str, kind: str, image_key: str,
                    class_index: dict[str, int], report: SegmentReport) -> list[SegmentSample]:
    """Samples of control ``from_name`` of type ``kind`` (``polygonlabels`` or ``brushlabels``) on
    image ``to_name``. A task annotated with none of its regions is a negative (an empty label
    file), unless it outlines one of the classes with another region type (see dataset.py)."""
    samples = []
    for task, annotation, url in annotated_images(tasks, image_key, report.skipped_tasks):
        objects, outlined = [], set()
        for item in annotation.get("result") or []:
            if item.get("from_name") != from_name or item.get("type") != kind:
                outlined |= other_region(item, to_name, class_index)
            elif (found := _object(item, kind, class_index, report)) is not None:
                objects.append(found)
        if outlined and not objects:  # a box of a class is no proof that the image has no mask of it
            report.skipped_tasks[task["id"]] = (f"no {kind} region, but {', '.join(sorted(outlined))} regions of "
                                                f"the model's classes: not a negative")
            continue
        report.n_annotated += 1
        report.n_negatives += not objects
        report.n_objects += len(objects)
        samples.append(SegmentSample(task["id"], url, objects))
    return samples


def _object(item: dict[str, Any], kind: str, class_index: dict[str, int], report: SegmentReport
            ) -> tuple[int, list[Point]] | None:
    value = item.get("value") or {}
    labels = value.get(kind) or []
    if not labels or labels[0] not in class_index:
        report.dropped["unknown label"] += 1
        return None
    if kind == "polygonlabels":
        points = polygon_points(value)
        if points is None:
            report.dropped["polygon with fewer than 3 points"] += 1
        return (class_index[labels[0]], points) if points else None
    try:
        height, width = int(item["original_height"]), int(item["original_width"])
        points = brush_polygon(value, height, width)
    except (KeyError, TypeError, ValueError) as exc:
        report.dropped[f"undecodable brush mask ({_reason(exc)})"] += 1
        return None
    if points is None:
        report.dropped["empty brush mask"] += 1
    return (class_index[labels[0]], points) if points else None


def _reason(exc: Exception) -> str:
    return "no original size" if isinstance(exc, KeyError) else str(exc).split(":")[0]


def _area(points: list[Point]) -> float:
    xs, ys = np.array([p[0] for p in points]), np.array([p[1] for p in points])
    return float(abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))) / 2)
