"""Which controls the detector fine-tunes, and how each one's annotations become a YOLO dataset:
one class per control tag, behind the tiny interface of :class:`Trainable`.

- ``RectangleLabels`` -> detect weights (``dataset.py``); with ``model_obb="true"``, obb weights
  from the boxes' rotated corners;
- ``PolygonLabels`` and ``BrushLabels`` -> segment weights (``segment_dataset.py``, brush masks
  traced to polygons);
- ``Choices`` on the image -> classify weights (``class_dataset.py``), one class per image;
- ``KeyPointLabels`` (not smart) -> pose weights (``pose_dataset.py``), points grouped by box;
- ``VideoRectangle`` -> detect weights from sampled frames (``video_dataset.py``), split by video.

Each control trains on its own regions only: two controls on one image are two datasets, two
sets of weights, and one version naming both (``training.py``). A control's **fingerprint** is a
hash of exactly what it would train on (its classes and every task's label lines), so a job can
tell the controls whose annotations changed since the serving version from those it may carry over.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar, cast

from .class_dataset import ClassReport, ClassSample, class_samples, write_class_dataset
from .controls.video_rectangle import DEFAULT_SAMPLE_S
from .dataset import BuildReport, LabelledSample, rect_to_obb, samples_from_tasks, write_dataset
from .pose_dataset import PoseReport, PoseSample, pose_samples
from .segment_dataset import SegmentReport, segment_samples
from .video_dataset import frame_samples

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from pathlib import Path

    from .controls import ControlModel


@dataclass
class ControlData:
    """One control's training set, built from the project's tasks."""

    control: ControlModel
    task: str  # the ultralytics task it trains: detect, segment, classify
    names: list[str]
    samples: Sequence[LabelledSample]
    report: Any  # BuildReport | SegmentReport | ClassReport: to_json(), n_annotated
    trainable: Trainable
    refused: str | None = None  # why this control cannot be trained at all (said in ``not_trained``)
    kpt_shape: list[int] | None = None  # pose: [keypoints, 3]; a version's weights fit one shape only

    @property
    def from_name(self) -> str:
        return self.control.from_name

    def fingerprint(self) -> str:
        lines = sorted((s.task_id, s.label_lines()) for s in self.samples)
        return hashlib.sha256(json.dumps([self.task, self.names, lines]).encode()).hexdigest()[:16]

    def has_objects(self) -> bool:
        """Whether any annotation holds a usable region of this control (one its dataset kept).
        A set of negatives only would teach the weights to find nothing, erasing what they knew
        (a base's COCO people, say)."""
        return any(s.label_lines() for s in self.samples)

    def widened(self, keypoints: int) -> ControlData:
        """A pose control's data with at least ``keypoints`` keypoints per object (the others
        absent); the fingerprint stays the one of the annotations (``self``)."""
        if not self.kpt_shape or keypoints <= self.kpt_shape[0]:
            return self
        poses = cast("Sequence[PoseSample]", self.samples)
        return replace(self, samples=[replace(s, k=keypoints) for s in poses], kpt_shape=[keypoints, 3])

    def write(self, root: Path, images: dict[int, Any], train: set[int], val: set[int]) -> Path:
        """The dataset on disk; returns what ultralytics' ``data=`` takes."""
        return self.trainable.write(root, self, images, train, val)


class Trainable:
    tag: ClassVar[str]
    task: ClassVar[str]

    def samples(self, tasks: Iterable[dict[str, Any]], control: ControlModel, image_key: str,
                class_index: dict[str, int]) -> tuple[list[Any], Any]:
        raise NotImplementedError

    def refusal(self, names: list[str]) -> str | None:
        """Why a control with these labels cannot be trained; None when it can."""
        return None

    def write(self, root: Path, data: ControlData, images: dict[int, Any], train: set[int], val: set[int]) -> Path:
        return write_dataset(root, data.samples, images, data.names, train, val)

    def data(self, tasks: Iterable[dict[str, Any]], control: ControlModel, image_key: str) -> ControlData:
        names = list(control.label_control.labels)  # a VideoRectangle's come from its <Labels>
        samples, report = self.samples(tasks, control, image_key, {n: i for i, n in enumerate(names)})
        return ControlData(control, self.task, names, samples, report, self, self.refusal(names))


class Boxes(Trainable):
    tag, task = "RectangleLabels", "detect"

    def samples(self, tasks: Iterable[dict[str, Any]], control: ControlModel, image_key: str,
                class_index: dict[str, int]) -> tuple[list[Any], Any]:
        report = BuildReport()
        return samples_from_tasks(tasks, control.from_name, control.to_name, image_key, class_index, report), report


class RotatedBoxes(Trainable):
    """``<RectangleLabels model_obb="true">``: each box's four corners, rotation included."""

    tag, task = "RectangleLabels", "obb"

    def samples(self, tasks: Iterable[dict[str, Any]], control: ControlModel, image_key: str,
                class_index: dict[str, int]) -> tuple[list[Any], Any]:
        report = BuildReport()
        found = samples_from_tasks(tasks, control.from_name, control.to_name, image_key, class_index, report,
                                   rect_to_obb)
        return found, report


class Polygons(Trainable):
    tag, task = "PolygonLabels", "segment"

    def samples(self, tasks: Iterable[dict[str, Any]], control: ControlModel, image_key: str,
                class_index: dict[str, int]) -> tuple[list[Any], Any]:
        report = SegmentReport()
        found = segment_samples(tasks, control.from_name, control.to_name, self.tag.lower(), image_key, class_index,
                                report)
        return found, report


class Brushes(Polygons):
    """``BrushLabels``: each mask decoded and traced to one polygon of all its parts."""

    tag, task = "BrushLabels", "segment"


class Classes(Trainable):
    """``Choices``: ``choice="multiple"`` never gets here, it is refused at ``/setup``
    (``controls/choices.py``): a classify model gives one class per image."""

    tag, task = "Choices", "classify"

    def samples(self, tasks: Iterable[dict[str, Any]], control: ControlModel, image_key: str,
                class_index: dict[str, int]) -> tuple[list[Any], Any]:
        report = ClassReport()
        return class_samples(tasks, control.from_name, image_key, class_index, report), report

    def refusal(self, names: list[str]) -> str | None:
        return None if len(names) >= 2 else "one choice only: a classifier needs two classes to tell apart"

    def write(self, root: Path, data: ControlData, images: dict[int, Any], train: set[int], val: set[int]) -> Path:
        return write_class_dataset(root, cast("Sequence[ClassSample]", data.samples), images, data.names, train, val)


class Poses(Trainable):
    """``KeyPointLabels``: one object class (``POSE_NAMES``; the labels are the skeleton's points,
    not classes), K keypoints from the labels' ``model_index``."""

    tag, task = "KeyPointLabels", "pose"

    def data(self, tasks: Iterable[dict[str, Any]], control: ControlModel, image_key: str) -> ControlData:
        index_of = {label: index for index, label in getattr(control, "index_to_label", {}).items()}
        report = PoseReport()
        samples = pose_samples(tasks, control.from_name, control.to_name, image_key, index_of, report,
                               control.control.labels)
        return ControlData(control, self.task, list(POSE_NAMES), samples, report, self,
                           kpt_shape=[max(index_of.values()) + 1, 3])

    def write(self, root: Path, data: ControlData, images: dict[int, Any], train: set[int], val: set[int]) -> Path:
        return write_dataset(root, data.samples, images, data.names, train, val, {"kpt_shape": data.kpt_shape})


class VideoBoxes(Trainable):
    """``VideoRectangle``: boxes interpolated as Label Studio shows them, on frames sampled every
    ``model_sample_s`` seconds; the same detect weights and evaluation as ``RectangleLabels``."""

    tag, task = "VideoRectangle", "detect"

    def samples(self, tasks: Iterable[dict[str, Any]], control: ControlModel, image_key: str,
                class_index: dict[str, int]) -> tuple[list[Any], Any]:
        report = BuildReport()
        sample_s = getattr(control, "sample_s", DEFAULT_SAMPLE_S)
        return frame_samples(tasks, control, image_key, class_index, report, sample_s), report


POSE_NAMES = ("object",)
#: by (control tag, YOLO task): a RectangleLabels trains detect, or obb with model_obb="true"
TRAINABLE: dict[tuple[str, str], Trainable] = {(cls.tag, cls.task): cls() for cls in
                                               (Boxes, RotatedBoxes, Polygons, Brushes, Classes, Poses,
                                                VideoBoxes)}


def trainable_for(control: ControlModel) -> Trainable:
    return TRAINABLE[control.key]
