"""From Label Studio ``KeyPointLabels`` to a YOLO pose dataset: one line per object,
``0 cx cy w h x0 y0 v0 ... xK-1 yK-1 vK-1``, normalised to the image.

- **Which keypoint**: a point's label names its index in the model's skeleton through
  ``<Label model_index="N">``, as for predictions; K is the highest index + 1. A label without a
  ``model_index`` cannot be placed in the skeleton: dropped and counted.
- **Which object**: Label Studio keeps keypoints as loose points, so they are grouped by the
  ``RectangleLabels`` boxes of the same annotation on the same image: a point belongs to the
  smallest box that contains it, and each box holding a point is one object whose box is that
  rectangle. An annotation with no box is one object per image, boxed by its points' extent
  (padded by ``PAD``). With boxes drawn, a point inside none fits no object: dropped and counted.
  A box with no point is not an object of the skeleton (it may be a box of another class).
- **Visibility**: a placed point is visible (2); a keypoint of the skeleton without a point is
  absent (``0 0 0``), which ultralytics leaves out of the keypoint loss. A second point of the same
  index in one object is dropped and counted.
- An annotation without any point of the control is not a sample: the labeler did not place
  keypoints on it, which says nothing about where they are (never taught as background).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from .dataset import annotated_images, rect_to_yolo

Point = tuple[float, float]
Box = tuple[float, float, float, float]  # cx, cy, w, h (0..1)
PAD = 0.1  # an object boxed by its points: this fraction of their extent on each side
MIN_SIZE = 0.02  # ... and at least this fraction of the image, so one point still makes a box


@dataclass
class PoseSample:
    task_id: int
    image_url: str
    objects: list[tuple[Box, list[Point | None]]]  # each object's box and its points by index (None: absent)
    k: int = 0  # keypoints per object in the label file (more than the config's: absent); 0: as many as placed

    def label_lines(self) -> str:
        lines = []
        for box, points in self.objects:
            padded = points + [None] * (self.k - len(points))
            coords = " ".join("0 0 0" if p is None else f"{p[0]:.6f} {p[1]:.6f} 2" for p in padded)
            lines.append("0 " + " ".join(f"{v:.6f}" for v in box) + " " + coords + "\n")
        return "".join(lines)


@dataclass
class PoseReport:
    n_annotated: int = 0
    n_unannotated: int = 0  # annotated tasks without a point of this control
    n_objects: int = 0
    n_points: int = 0
    dropped: Counter[str] = field(default_factory=Counter)  # why -> points dropped
    skipped_tasks: dict[int, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"n_annotated": self.n_annotated, "n_unannotated": self.n_unannotated, "n_objects": self.n_objects,
                "n_points": self.n_points, "dropped": dict(self.dropped),
                "skipped_tasks": {str(k): v for k, v in self.skipped_tasks.items()}}


def pose_samples(tasks: Iterable[dict[str, Any]], from_name: str, to_name: str, image_key: str,
                 index_of: dict[str, int], report: PoseReport, config_labels: Collection[str]) -> list[PoseSample]:
    """Samples of keypoint control ``from_name``; ``index_of`` maps a label to its ``model_index``;
    ``config_labels`` (every label of the control) tells a label removed from the config from one
    that has no ``model_index``, so the report names the right cause."""
    k = max(index_of.values()) + 1
    known = set(config_labels) | set(index_of)
    samples = []
    for task, annotation, url in annotated_images(tasks, image_key, report.skipped_tasks):
        points, boxes = _points_and_boxes(annotation.get("result") or [], from_name, to_name, index_of, report, known)
        if not points:
            report.n_unannotated += 1
            continue
        objects = _group(points, boxes, k, report)
        if not objects:
            report.skipped_tasks[task["id"]] = "no keypoint inside a box"
            continue
        report.n_annotated += 1
        report.n_objects += len(objects)
        report.n_points += sum(p is not None for _, pts in objects for p in pts)
        samples.append(PoseSample(task["id"], url, objects))
    return samples


def _why_unplaced(labels: list[str], known: set[str]) -> str:
    """Why a point has no place in the skeleton, as its report counts it."""
    if not labels:
        return "point without label"
    return "label without model_index" if labels[0] in known else "label not in the config"


def _points_and_boxes(result: list[dict[str, Any]], from_name: str, to_name: str, index_of: dict[str, int],
                      report: PoseReport, known: set[str]) -> tuple[list[tuple[int, Point]], list[Box]]:
    points, boxes = [], []
    for item in result:
        value = item.get("value") or {}
        if item.get("to_name") != to_name:
            continue
        if item.get("type") == "rectanglelabels":
            box = rect_to_yolo(value, float(item.get("original_width") or 1), float(item.get("original_height") or 1))
            if box is not None:
                boxes.append(box)
        elif item.get("from_name") == from_name and item.get("type") == "keypointlabels":
            labels = value.get("keypointlabels") or []
            if not labels or labels[0] not in index_of:
                report.dropped[_why_unplaced(labels, known)] += 1
                continue
            try:
                x, y = float(value["x"]) / 100, float(value["y"]) / 100
            except (KeyError, TypeError, ValueError):
                report.dropped["point without x, y"] += 1
                continue
            points.append((index_of[labels[0]], (min(max(x, 0.0), 1.0), min(max(y, 0.0), 1.0))))
    return points, boxes


def _group(points: list[tuple[int, Point]], boxes: list[Box], k: int, report: PoseReport
           ) -> list[tuple[Box, list[Point | None]]]:
    """Each point into the smallest box holding it; with no box, one object of every point."""
    if not boxes:
        return [(_extent([p for _, p in points]), _skeleton(points, k, report))]
    members: dict[int, list[tuple[int, Point]]] = {}
    by_size = sorted(range(len(boxes)), key=lambda i: boxes[i][2] * boxes[i][3])
    for index, point in points:
        home = next((i for i in by_size if _inside(point, boxes[i])), None)
        if home is None:
            report.dropped["outside every box"] += 1
            continue
        members.setdefault(home, []).append((index, point))
    return [(boxes[i], _skeleton(members[i], k, report)) for i in sorted(members)]


def _skeleton(points: list[tuple[int, Point]], k: int, report: PoseReport) -> list[Point | None]:
    out: list[Point | None] = [None] * k
    for index, point in points:
        if out[index] is not None:
            report.dropped["second point of one keypoint"] += 1
            continue
        out[index] = point
    return out


def _inside(point: Point, box: Box) -> bool:
    cx, cy, w, h = box
    return abs(point[0] - cx) <= w / 2 and abs(point[1] - cy) <= h / 2


def _extent(points: list[Point]) -> Box:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    out = []
    for low, high in ((min(xs), max(xs)), (min(ys), max(ys))):
        pad = max(PAD * (high - low), (MIN_SIZE - (high - low)) / 2, 0.0)
        out.append((max(0.0, low - pad), min(1.0, high + pad)))
    (x1, x2), (y1, y2) = out
    return ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)
