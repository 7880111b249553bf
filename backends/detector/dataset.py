"""From Label Studio annotations to a YOLO detection dataset on disk.

- One annotation per task: ground truth first, else the most recently updated; cancelled
  (skipped) annotations are ignored.
- Boxes are converted from Label Studio's percent (top-left, size, rotation in degrees about the
  top-left corner) to YOLO's normalised centre/size of the axis-aligned bounding box, clipped to the
  image. Boxes wholly outside the image are dropped and counted.
- A task annotated with no box is kept as a negative (an empty label file): it teaches the model
  what not to detect. Not when its annotation outlines one of the model's classes with another
  region type (a polygon, a brush mask, ...) on the same image: that object would be taught as
  background, so the task is skipped and the report says why.
- The train/val split is a deterministic hash of the task id, so a task stays on its side as the
  project grows and the val split is comparable between versions. At least one image goes to val;
  with a single image it serves for both.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from backends.core.datasplit import split  # noqa: F401 - re-exported for the detector's callers
from backends.core.media import storage_url

log = logging.getLogger(__name__)


@dataclass
class Sample:
    task_id: int
    image_url: str
    boxes: list[tuple[Any, ...]]  # class, then cx, cy, w, h (detect) or x1 y1 .. x4 y4 (obb), 0..1

    def label_lines(self) -> str:
        return "".join(f"{c} " + " ".join(f"{v:.6f}" for v in values) + "\n" for c, *values in self.boxes)


@dataclass
class BuildReport:
    n_annotated: int = 0
    n_negatives: int = 0
    n_boxes: int = 0
    dropped_outside: int = 0
    dropped_unknown_label: int = 0
    skipped_tasks: dict[int, str] = field(default_factory=dict)  # task id -> reason

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "skipped_tasks": {str(k): v for k, v in self.skipped_tasks.items()}}


def pick_annotation(task: dict[str, Any]) -> dict[str, Any] | None:
    annotations = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    if not annotations:
        return None
    truth = [a for a in annotations if a.get("ground_truth")]
    return max(truth or annotations, key=lambda a: (a.get("updated_at") or "", a.get("id") or 0))


def rect_corners(value: dict[str, Any], width: float = 1.0, height: float = 1.0) -> list[tuple[float, float]]:
    """A Label Studio rectangle value (percent) as its four corners (0..1, unclipped), clockwise
    from the corner it is rotated about.

    Label Studio rotates a box in pixels, so a rotated box needs the image's ``width`` and ``height``
    (any unit: only their ratio counts): rotating percentages would skew it on a non-square image.
    """
    x, y, w, h = (float(value.get(k, 0)) / 100 for k in ("x", "y", "width", "height"))
    angle = math.radians(float(value.get("rotation") or 0))
    corners = [(0, 0), (w * width, 0), (w * width, h * height), (0, h * height)]
    return [(x + (cx * math.cos(angle) - cy * math.sin(angle)) / width,
             y + (cx * math.sin(angle) + cy * math.cos(angle)) / height) for cx, cy in corners]


def rect_to_obb(value: dict[str, Any], width: float = 1.0, height: float = 1.0) -> tuple[float, ...] | None:
    """Label Studio rectangle value -> YOLO OBB's four corners ``x1 y1 .. x4 y4`` (0..1), clipped
    to the image (ultralytics refuses coordinates outside it); None if the box is outside."""
    if rect_to_yolo(value, width, height) is None:
        return None
    return tuple(min(1.0, max(0.0, v)) for corner in rect_corners(value, width, height) for v in corner)


def rect_to_yolo(value: dict[str, Any], width: float = 1.0, height: float = 1.0
                 ) -> tuple[float, float, float, float] | None:
    """Label Studio rectangle value (percent) -> YOLO (cx, cy, w, h) of its axis-aligned bounding
    box, clipped to the image; None if outside."""
    corners = rect_corners(value, width, height)
    xs, ys = [c[0] for c in corners], [c[1] for c in corners]
    x1, x2 = max(0.0, min(xs)), min(1.0, max(xs))
    y1, y2 = max(0.0, min(ys)), min(1.0, max(ys))
    if x2 - x1 <= 1e-6 or y2 - y1 <= 1e-6:
        return None
    return ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)


def other_region(item: dict[str, Any], to_name: str, class_index: dict[str, int]) -> set[str]:
    """{the region type} when ``item`` labels one of the model's classes on this image, else {}."""
    kind = str(item.get("type") or "")
    labels = (item.get("value") or {}).get(kind) if kind.endswith("labels") else None
    if item.get("to_name") != to_name or not isinstance(labels, list):
        return set()
    return {kind} if any(label in class_index for label in labels) else set()


def annotated_images(tasks: Iterable[dict[str, Any]], image_key: str, skipped: dict[int, str]
                     ) -> Iterator[tuple[dict[str, Any], dict[str, Any], str]]:
    """``(task, its annotation, its image URL)`` for each annotated task; a task without the image
    field is recorded in ``skipped`` with why. Shared by every control's dataset builder."""
    for task in tasks:
        annotation = pick_annotation(task)
        if annotation is None:
            continue
        url = (task.get("data") or {}).get(image_key)
        if not isinstance(url, str):
            skipped[task["id"]] = f"no data.{image_key}"
            continue
        yield task, annotation, storage_url(url, task["id"])


def samples_from_tasks(tasks: Iterable[dict[str, Any]], from_name: str, to_name: str, image_key: str,
                       class_index: dict[str, int], report: BuildReport,
                       geometry: Callable[..., tuple[float, ...] | None] = rect_to_yolo) -> list[Sample]:
    """The boxes of control ``from_name``, each as ``geometry`` writes it (``rect_to_yolo`` for
    detect, ``rect_to_obb`` for rotated boxes)."""
    samples = []
    for task, annotation, url in annotated_images(tasks, image_key, report.skipped_tasks):
        boxes, outlined = [], set()
        for item in annotation.get("result") or []:
            if item.get("from_name") != from_name or item.get("type") != "rectanglelabels":
                outlined |= other_region(item, to_name, class_index)
                continue
            labels = (item.get("value") or {}).get("rectanglelabels") or []
            if not labels or labels[0] not in class_index:
                report.dropped_unknown_label += 1
                continue
            # every result Label Studio saves carries the image's size; without it a rotated box is read as square
            box = geometry(item["value"], float(item.get("original_width") or 1),
                           float(item.get("original_height") or 1))
            if box is None:
                report.dropped_outside += 1
                continue
            boxes.append((class_index[labels[0]], *box))
        if outlined and not boxes:
            report.skipped_tasks[task["id"]] = (f"no box, but {', '.join(sorted(outlined))} regions of the model's "
                                                f"classes: not a negative")
            continue
        report.n_annotated += 1
        report.n_negatives += not boxes
        report.n_boxes += len(boxes)
        samples.append(Sample(task["id"], url, boxes))
    return samples


class LabelledSample(Protocol):
    task_id: int

    def label_lines(self) -> str:
        """The sample's YOLO label file (boxes, or segment polygons)."""


def write_dataset(root: Path, samples: Sequence[LabelledSample], images: dict[int, Any], names: list[str],
                  train: set[int], val: set[int], extra: dict[str, Any] | None = None) -> Path:
    """Write images/labels for the samples whose image loaded; returns the data.yaml path, which
    holds ``extra`` too (a pose dataset's ``kpt_shape``)."""
    for part in ("train", "val"):
        (root / "images" / part).mkdir(parents=True, exist_ok=True)
        (root / "labels" / part).mkdir(parents=True, exist_ok=True)
    for sample in samples:
        image = images.get(sample.task_id)
        if image is None:
            continue
        lines = sample.label_lines()
        for part, members in (("train", train), ("val", val)):
            if sample.task_id in members:
                image.save(root / "images" / part / f"{sample.task_id}.jpg", quality=95)
                (root / "labels" / part / f"{sample.task_id}.txt").write_text(lines)
    data = {"path": str(root), "train": "images/train", "val": "images/val", "names": dict(enumerate(names)),
            **(extra or {})}
    path = root / "data.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
