"""From Label Studio ``Choices`` on an image to a YOLO classify dataset: one class per image.

- The dataset is ultralytics' folder layout, ``train/<class>/<task>.jpg`` and ``val/<class>/...``,
  with the folders named by class *index* and the names in ``.ndjson.yaml`` (ultralytics then reads
  the folder names as class ids). Named folders would be sorted by name, so the classes' order
  would not be the control's, and a label may hold characters no folder name can ("a/b", "..").
- A task's class is the one choice of its annotation for this control. An annotation with no
  choice for it is not a sample (the labeler left the question unanswered: nothing to learn, not
  a negative); one with a label no longer in the config, or with several choices (a control
  changed from ``choice="multiple"``), is dropped and counted.
- The train/val split is the detector's (a hash of the task id): comparable between versions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .dataset import annotated_images

NAMES_FILE = ".ndjson.yaml"  # the file whose names ultralytics prefers over the folders' names


@dataclass
class ClassSample:
    task_id: int
    image_url: str
    class_id: int

    def label_lines(self) -> str:
        """What the control's fingerprint hashes: the class, as a YOLO label file would hold it."""
        return f"{self.class_id}\n"


@dataclass
class ClassReport:
    n_annotated: int = 0
    n_unanswered: int = 0  # annotated tasks whose annotation holds no choice for this control
    dropped: Counter[str] = field(default_factory=Counter)  # why -> annotations dropped
    skipped_tasks: dict[int, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"n_annotated": self.n_annotated, "n_unanswered": self.n_unanswered, "dropped": dict(self.dropped),
                "skipped_tasks": {str(k): v for k, v in self.skipped_tasks.items()}}


def class_samples(tasks: Iterable[dict[str, Any]], from_name: str, image_key: str, class_index: dict[str, int],
                  report: ClassReport) -> list[ClassSample]:
    samples = []
    for task, annotation, url in annotated_images(tasks, image_key, report.skipped_tasks):
        choices = [item for item in annotation.get("result") or []
                   if item.get("from_name") == from_name and item.get("type") == "choices"]
        chosen = (choices[0].get("value") or {}).get("choices") if choices else None
        if not chosen:
            report.n_unanswered += 1
            continue
        why = _refused(chosen, class_index)
        if why:
            report.dropped[why] += 1
            continue
        report.n_annotated += 1
        samples.append(ClassSample(task["id"], url, class_index[chosen[0]]))
    return samples


def write_class_dataset(root: Path, samples: Sequence[ClassSample], images: dict[int, Any], names: list[str],
                        train: set[int], val: set[int]) -> Path:
    """Write the samples whose image loaded; returns the dataset folder (ultralytics' ``data=``)."""
    for sample in samples:
        image = images.get(sample.task_id)
        if image is None:
            continue
        for part, members in (("train", train), ("val", val)):
            if sample.task_id in members:
                folder = root / part / str(sample.class_id)
                folder.mkdir(parents=True, exist_ok=True)
                image.convert("RGB").save(folder / f"{sample.task_id}.jpg", quality=95)
    (root / "train").mkdir(parents=True, exist_ok=True)
    (root / "val").mkdir(parents=True, exist_ok=True)
    (root / NAMES_FILE).write_text(yaml.safe_dump({"names": dict(enumerate(names))}, allow_unicode=True))
    return root


def _refused(chosen: Any, class_index: dict[str, int]) -> str | None:
    if not isinstance(chosen, list) or len(chosen) != 1:
        return "several choices"
    if chosen[0] not in class_index:
        return "label not in the config"
    return None
