"""Training the classification task model on a project's submitted labels (the active backend's ``fit``).

1. fetch the annotated tasks; each gives its newest submitted choice for the ``<Choices>`` control;
2. split train/val deterministically by task id (``core.datasplit``);
3. start from the current version (its classifier layer swapped if the classes changed), or the
   first time from ``ACTIVE_BASE_WEIGHTS`` (random init when empty);
4. train classifier + loss-prediction head (``classifier.train``), evaluate accuracy and per class
   precision/recall on val, publish a version with its metrics and timings;
5. ask for a scoring job, so the queue follows the new model.

Every version is published (no ``if_better`` gate): the queue is re-ranked by each newer model,
and the metrics stay in ``/versions`` for anyone who wants to roll back.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from backends.core.datasplit import split
from backends.core.errors import BadRequest, LabelLoopError
from backends.core.jobs import NoJob
from backends.core.timings import Timings

from . import classifier
from .report import truth_from_task
from .task_models import CLASSIFIER_FILE

if TYPE_CHECKING:
    from backends.core.jobs import JobReporter

    from .model import ActiveModel

log = logging.getLogger(__name__)


class ClassifierTrainer:
    def __init__(self, active: ActiveModel, job: JobReporter | None = None) -> None:
        self.active, self.job = active, job or NoJob()  # None: plain Python, which nothing cancels
        self.settings = active.settings
        self.timings = Timings()

    def run(self) -> dict[str, Any]:
        started = time.time()
        names = list(self.active.control.labels)
        with self.timings("data"):
            samples = self._samples(names)
        if len(samples) < self.settings.min_annotations:
            reason = f"{len(samples)} labeled images, fewer than min_annotations={self.settings.min_annotations}"
            log.info("active project %s: not training: %s", self.active.project_id, reason)
            return {"skipped": reason}
        ids = [task_id for task_id, _, _ in samples]
        ratio = self.settings.val_ratio
        train_ids, val_ids = split(ids, ratio, self.settings.seed) if ratio else (set(ids), set())
        x = classifier.to_tensor([img for _, img, _ in samples], self.settings.imgsz)
        y = torch.tensor([label for _, _, label in samples])
        is_train = torch.tensor([t in train_ids for t in ids])
        model, start = self._start_model(names)
        config = classifier.TrainConfig(epochs=self.settings.epochs, batch=self.settings.batch, lr=self.settings.lr,
                                        loss_weight=self.settings.loss_weight, detach_after=self.settings.detach_after,
                                        seed=self.settings.seed, device=self.active.device)
        with self.timings("train"):
            classifier.train(model, x[is_train], y[is_train], config, on_epoch=self._on_epoch)
        evaluated = x[~is_train] if val_ids else x[is_train]
        truth = y[~is_train] if val_ids else y[is_train]
        metrics = evaluate(model, evaluated, truth.numpy(), names, self.active.device)
        metrics["evaluated_on"] = "val" if val_ids else "train (no val split)"
        return self._publish(model, names, metrics, start, len(train_ids), len(val_ids), started)

    def _samples(self, names: list[str]) -> list[tuple[int, Any, int]]:
        samples = []
        for task in self.active.services.ls.iter_tasks(self.active.project):
            self.job.check_cancelled()
            truth = truth_from_task(task, self.active.control.name, "classification")
            if truth is None or truth.label not in names:
                continue
            try:
                # at the model's input size at once: a thousand 12-megapixel photos held whole would take
                # tens of GB, and to_tensor resizes them to exactly this anyway
                image = self.active.load_task_image(task).image.resize((self.settings.imgsz, self.settings.imgsz))
            except LabelLoopError as exc:  # e.g. deleted since: leave it out, say why
                log.warning("active: task %s left out of training: %s", task.get("id"), exc.message)
                continue
            samples.append((truth.task_id, image, names.index(truth.label)))
        return samples

    def _start_model(self, names: list[str]) -> tuple[classifier.TaskClassifier, str]:
        current = self.active.project_registry.current()
        if current is not None and (current.path / CLASSIFIER_FILE).is_file():
            model, old_names, _ = classifier.load(current.path / CLASSIFIER_FILE)
            return model.with_classes(old_names, names), current.name
        base = self.settings.base_weights
        return classifier.load_base(self.settings.backbone, len(names), base or None), base or "random init"

    def _publish(self, model: classifier.TaskClassifier, names: list[str], metrics: dict[str, Any], start: str,
                 n_train: int, n_val: int, started: float) -> dict[str, Any]:
        hyper = {k: getattr(self.settings, k) for k in ("backbone", "imgsz", "epochs", "batch", "lr", "loss_weight",
                                                       "detach_after", "val_ratio", "seed")}
        with self.active.project_registry.stage() as staged:
            classifier.save(model, staged.path / CLASSIFIER_FILE, names, self.settings.imgsz)
            version = staged.publish({
                "names": names, "metrics": metrics, "n_annotations": n_train + n_val, "n_train": n_train,
                "n_val": n_val, "start_weights": start, "hyperparameters": hyper,
                "timings": {**self.timings, "total": round(time.time() - started, 2)},
                "job": self.job.id})
        log.info("active project %s: published %s (accuracy %.3f on %s)", self.active.project_id, version.name,
                 metrics["accuracy"], metrics["evaluated_on"])
        self.active.request_scoring("VERSION_PUBLISHED", {"version": version.name})
        return {"version": version.name, "metrics": metrics}

    def _on_epoch(self, epoch: int, loss: float) -> None:
        self.job.check_cancelled()
        if not math.isfinite(loss):  # a diverged model would rank the queue by NaN; retrying diverges again
            raise BadRequest(f"training diverged (loss {loss} at epoch {epoch + 1}); the current version stays. "
                             f"Lower 'lr' (now {self.settings.lr}) in the project's extra_params")
        self.job.progress(stage="training", epoch=epoch + 1, epochs=self.settings.epochs, loss=round(loss, 4))
        log.info("active project %s: epoch %d/%d loss %.4f", self.active.project_id, epoch + 1, self.settings.epochs, loss)


def evaluate(model: classifier.TaskClassifier, x: torch.Tensor, y: np.ndarray, names: list[str],
             device: str = "cpu") -> dict[str, Any]:
    predicted = classifier.infer(model, x, device=device).probs.argmax(1)
    per_class = {}
    for i, name in enumerate(names):
        tp = int(((predicted == i) & (y == i)).sum())
        fp = int(((predicted == i) & (y != i)).sum())
        fn = int(((predicted != i) & (y == i)).sum())
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        per_class[name] = {"precision": round(p, 4), "recall": round(r, 4),
                           "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0, "support": tp + fn}
    return {"accuracy": round(float((predicted == y).mean()) if len(y) else 0.0, 4), "n": int(len(y)),
            "per_class": per_class}
