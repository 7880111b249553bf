"""Which controls the detector fine-tunes, and how each one's annotations become a YOLO dataset:
one class per control tag, behind the tiny interface of :class:`Trainable`.

- ``RectangleLabels`` -> detect weights (``dataset.py``);
- ``PolygonLabels`` -> segment weights (``segment_dataset.py``, which also reads brush masks for
  the ``BrushLabels`` control to come).

Each control trains on its own regions only: two controls on one image are two datasets, two
sets of weights, and one version naming both (``training.py``). A control's **fingerprint** is a
hash of exactly what it would train on (its classes and every task's label lines), so a job can
tell the controls whose annotations changed since the serving version from those it may carry over.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .dataset import BuildReport, LabelledSample, samples_from_tasks
from .segment_dataset import SegmentReport, segment_samples

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .controls import ControlModel


@dataclass
class ControlData:
    """One control's training set, built from the project's tasks."""

    control: ControlModel
    task: str  # the ultralytics task it trains: detect, segment
    names: list[str]
    samples: list[LabelledSample]
    report: Any  # BuildReport | SegmentReport: to_json(), n_annotated

    @property
    def from_name(self) -> str:
        return self.control.from_name

    def fingerprint(self) -> str:
        lines = sorted((s.task_id, s.label_lines()) for s in self.samples)
        return hashlib.sha256(json.dumps([self.task, self.names, lines]).encode()).hexdigest()[:16]


class Trainable:
    tag: ClassVar[str]
    task: ClassVar[str]

    def samples(self, tasks: Iterable[dict[str, Any]], control: ControlModel, image_key: str,
                class_index: dict[str, int]) -> tuple[list[Any], Any]:
        raise NotImplementedError

    def data(self, tasks: Iterable[dict[str, Any]], control: ControlModel, image_key: str) -> ControlData:
        names = list(control.control.labels)
        samples, report = self.samples(tasks, control, image_key, {n: i for i, n in enumerate(names)})
        return ControlData(control, self.task, names, samples, report)


class Boxes(Trainable):
    tag, task = "RectangleLabels", "detect"

    def samples(self, tasks: Iterable[dict[str, Any]], control: ControlModel, image_key: str,
                class_index: dict[str, int]) -> tuple[list[Any], Any]:
        report = BuildReport()
        return samples_from_tasks(tasks, control.from_name, control.to_name, image_key, class_index, report), report


class Polygons(Trainable):
    tag, task = "PolygonLabels", "segment"

    def samples(self, tasks: Iterable[dict[str, Any]], control: ControlModel, image_key: str,
                class_index: dict[str, int]) -> tuple[list[Any], Any]:
        report = SegmentReport()
        found = segment_samples(tasks, control.from_name, control.to_name, self.tag.lower(), image_key, class_index,
                                report)
        return found, report


TRAINABLE: dict[str, Trainable] = {cls.tag: cls() for cls in (Boxes, Polygons)}
