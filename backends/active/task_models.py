"""The models the active backend scores with, behind one small interface.

A :class:`TaskModel` turns images into :class:`ImageOutputs`: per-image informativeness inputs
(class probabilities, or per-box confidences for detection), an embedding for the diversity
strategies, a predicted loss, and the pre-label regions written with the queue score.

- :class:`ClassifierTaskModel`: the backend's own classifier versions (``classifier.py``).
- :class:`DetectorTaskModel`: the *detector* backend's published versions, read from the shared
  model store; nothing is trained twice. Its embedding is the pooled output of the YOLO backbone
  (ultralytics ``embed``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from . import classifier

CLASSIFIER_FILE = "classifier.pt"


@dataclass
class ImageOutputs:
    """One image's model outputs. ``probs`` is [C] for classification; for detection it is None
    and ``box_confidences`` holds each detected box's confidence."""

    embedding: np.ndarray
    regions: list[dict[str, Any]]
    probs: np.ndarray | None = None
    predicted_loss: float | None = None
    box_confidences: list[float] = field(default_factory=list)
    box_labels: list[str] = field(default_factory=list)
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)  # x, y, w, h in percent
    #: detection: the confidence of every box down to ``ACTIVE_BOX_THRESHOLD``, below the serving
    #: threshold the regions and ``box_confidences`` keep (None: those boxes only)
    doubt_confidences: list[float] | None = None

    @property
    def uncertain_boxes(self) -> list[float]:
        """The confidences detection uncertainty is computed from. At the serving threshold a weak
        model sees nothing in most images (58 % of candidates at 50 labels, bench/active_detection.py),
        and every such image tied at the highest doubt: the queue was a random pick of empty images.
        The boxes it is unsure of are the ones it does not serve."""
        return self.box_confidences if self.doubt_confidences is None else self.doubt_confidences


class TaskModel:
    version: str

    @property
    def cache_name(self) -> str:
        """The file its outputs are cached in: one per version, and per whatever else changes them."""
        return f"{self.version}.jsonl"

    @property
    def class_names(self) -> list[str] | None:
        """What ``ImageOutputs.probs``' columns are, in order (None for detection): the names the
        model was trained with, which need not be the label config's any more."""
        return None

    def outputs(self, images: list[Any]) -> list[ImageOutputs]:
        raise NotImplementedError


@lru_cache(maxsize=8)
def _load_classifier(path: str, mtime: float) -> tuple[classifier.TaskClassifier, list[str], int, threading.Lock]:
    model, names, imgsz = classifier.load(Path(path))
    return model, names, imgsz, threading.Lock()


class ClassifierTaskModel(TaskModel):
    def __init__(self, version: str, path: Path, control: Any, device: str = "cpu", batch: int = 64) -> None:
        self.version = version
        self.path = path / CLASSIFIER_FILE
        self.control = control
        self.device = device
        self.batch = batch

    @property
    def class_names(self) -> list[str]:
        return list(_load_classifier(str(self.path), self.path.stat().st_mtime)[1])

    def outputs(self, images: list[Any]) -> list[ImageOutputs]:
        model, names, imgsz, lock = _load_classifier(str(self.path), self.path.stat().st_mtime)
        known = set(self.control.labels)
        with lock:  # one model object per process; torch modules are not re-entrant in eval mode with hooks
            out = classifier.infer(model, classifier.to_tensor([img.image for img in images], imgsz),
                                   batch=self.batch, device=self.device)
        results = []
        for i, img in enumerate(images):
            probs = out.probs[i]
            top = int(probs.argmax())
            # a class renamed or removed from the config since training: scored, but no pre-label
            regions = [json_region(self.control.label([names[top]]), img.width, img.height, float(probs[top]))
                       ] if names[top] in known else []
            results.append(ImageOutputs(embedding=out.embeddings[i], regions=regions, probs=probs,
                                        predicted_loss=float(out.predicted_loss[i])))
        return results


class DetectorTaskModel(TaskModel):
    """A published detector version; boxes become the pre-labels, their confidences the uncertainty."""

    def __init__(self, version: str, weights: Path, control: Any, threshold: float, device: str = "cpu",
                 imgsz: int = 640, doubt_threshold: float | None = None) -> None:
        self.version = version
        self.weights = str(weights)
        self.control = control
        self.threshold = threshold  # the detector's serving threshold: regions and box_confidences
        self.doubt_threshold = threshold if doubt_threshold is None else doubt_threshold  # uncertain_boxes
        self.device = device
        self.imgsz = imgsz

    @property
    def cache_name(self) -> str:
        return f"{self.version}.doubt-{self.doubt_threshold:g}.jsonl"

    def outputs(self, images: list[Any]) -> list[ImageOutputs]:
        from backends.detector.weights import load_model

        loaded = load_model(self.weights)
        pil = [img.image for img in images]
        with loaded.lock:
            results = loaded.model.predict(pil, conf=min(self.threshold, self.doubt_threshold), imgsz=self.imgsz,
                                           device=self.device, verbose=False)
            embeddings = loaded.model.embed(pil, imgsz=self.imgsz, device=self.device, verbose=False)
        names = dict(loaded.names)
        by_lower = {label.lower(): label for label in self.control.labels}
        outputs = []
        for img, result, embedding in zip(images, results, embeddings):
            doubts: list[float] = []
            out = ImageOutputs(embedding=embedding.cpu().numpy().astype(np.float32), regions=[], doubt_confidences=doubts)
            for (x1, y1, x2, y2), conf, cls in zip(result.boxes.xyxy.tolist(), result.boxes.conf.tolist(),
                                                    result.boxes.cls.tolist()):
                label = by_lower.get(str(names.get(int(cls), cls)).lower())
                if label is None:
                    continue  # a class this project does not label
                if conf >= self.doubt_threshold:
                    doubts.append(float(conf))
                if conf < self.threshold:
                    continue  # not served: a doubt, not a pre-label
                box = (100 * x1 / img.width, 100 * y1 / img.height, 100 * (x2 - x1) / img.width,
                       100 * (y2 - y1) / img.height)
                out.box_confidences.append(float(conf))
                out.box_labels.append(label)
                out.boxes.append(box)
                region = self.control.label([label], x=box[0], y=box[1], width=box[2], height=box[3], rotation=0)
                out.regions.append(json_region(region, img.width, img.height, float(conf)))
            outputs.append(out)
        return outputs


def json_region(sdk_region: Any, width: int, height: int, score: float) -> dict[str, Any]:
    from backends.core.model import LabelLoopModel

    return LabelLoopModel.region(sdk_region, width=width, height=height, score=score)
