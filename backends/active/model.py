"""The active backend: scores unlabeled tasks and reorders Label Studio's queue.

Projects it serves (found from the label config):
- classification, a ``<Choices>`` on an ``<Image>``: it trains its own classifier with a
  loss-prediction head on submits (``training.py``), versioned in its registry;
- detection, a ``<RectangleLabels>`` on an ``<Image>``: it scores with the detector backend's
  published versions from the shared model store and trains nothing itself; a watcher starts a
  scoring job whenever the detector publishes a new version.

Jobs: ``train`` (submits; classification only), ``score`` (after a version, on TASKS_CREATED, on
``POST /jobs``). ``/predict`` answers tasks opened before the scoring job reached them with the
same pre-labels and a score from the strategy's per-task uncertainty (set-based strategies fall
back to entropy there; the next scoring job ranks them properly).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from backends.core.devices import resolve_device
from backends.core.errors import LabelConfigError, LabelLoopError, NotFound
from backends.core.files import write_json_atomic
from backends.core.media import LoadedImage
from backends.core.model import TRAINING_ACTIONS, LabelLoopModel
from backends.core.predictions import SCORE_DECIMALS

from .ranking import build_pool, hashed_scores, task_scores
from .scoring import Scorer, queue_version
from .settings import ActiveSettings, TaskKind
from .task_models import ClassifierTaskModel, DetectorTaskModel, TaskModel

if TYPE_CHECKING:
    from backends.core.jobs import JobReporter
    from backends.core.journal import Event

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def env_settings() -> ActiveSettings:
    return ActiveSettings()


class ActiveModel(LabelLoopModel):
    backend = "active"
    job_kinds = {**{action: "train" for action in TRAINING_ACTIONS}, "TASKS_CREATED": "score"}
    #: how often the watcher checks the detector's published version (detection projects)
    watch_interval_s = float(os.environ.get("ACTIVE_WATCH_S", 10))

    @cached_property
    def settings(self) -> ActiveSettings:
        return env_settings().for_project(self.extra_params)

    @cached_property
    def device(self) -> str:
        """Where the classifier and the detector's versions run: the rule every backend shares."""
        return resolve_device(self.settings.device)

    # -- what the project is ----------------------------------------------------------------------
    @cached_property
    def control(self) -> Any:
        """The ``<Choices>`` or ``<RectangleLabels>`` on an ``<Image>`` this backend ranks for."""
        images = {o.name for o in self.label_interface.objects if o.tag.lower() == "image"}
        for tag in ("Choices", "RectangleLabels"):
            for control in self.label_interface.controls:
                attr = {k.lower(): str(v).lower() for k, v in (control.attr or {}).items()}
                if attr.get("perregion") == "true":
                    continue  # a region's attribute (a box's colour), not the image's class
                if control.tag == tag and control.to_name and control.to_name[0] in images:
                    return _one_of_at_least_two_choices(control, attr)
        tags = sorted({c.tag for c in self.label_interface.controls}) or ["none"]
        raise LabelConfigError("the active backend ranks image classification (<Choices> on an <Image>) or "
                               f"detection (<RectangleLabels> on an <Image>) projects; this config has {', '.join(tags)}")

    @property
    def kind(self) -> TaskKind:
        return "classification" if self.control.tag == "Choices" else "detection"

    @property
    def strategy(self) -> str:
        """The project's strategy: its ``strategy`` setting, else its task type's default."""
        return self.settings.strategy_for(self.kind)

    def setup(self) -> None:
        self.control  # noqa: B018 - structural validation only; nothing heavy in /setup

    def image_url(self, task: dict[str, Any], object_name: str | None = None) -> str:
        return super().image_url(task, object_name or self.control.to_name[0])

    # -- versions -------------------------------------------------------------------------------
    def task_model(self) -> TaskModel | None:
        """The model scores come from: this backend's classifier, or the detector's current version."""
        registry = self.registry
        if registry is None:  # a model without a project has no version to score with
            return None
        if self.kind == "classification":
            current = registry.current()
            return ClassifierTaskModel(current.name, current.path, self.control, self.device) if current else None
        # here, not at the top: a classification project never loads the detector's modules
        from backends.detector.weights import weights_of

        current = self.services.registry("detector", registry.project).current()
        if current is None or not weights_of(current.path).is_file():
            return None
        from backends.detector.model import env_settings as detector_settings

        # the boxes labelers see: the detector's score threshold and inference size (its
        # DETECTOR_PREDICT_IMGSZ; a model fine-tuned at 320 px scored at 640 finds other boxes)
        detector = detector_settings()
        return DetectorTaskModel(current.name, weights_of(current.path), self.control, detector.score_threshold,
                                 self.device, imgsz=detector.predict_imgsz, doubt_threshold=self.settings.box_threshold)

    @property
    def model_version(self) -> str:
        try:
            task_model = self.task_model()
        except LabelLoopError:
            task_model = None
        return queue_version(self.strategy if task_model else "random", task_model)

    @property
    def state_dir(self) -> Path:
        """The project's folder in the model store: only a model for a project keeps state."""
        return self.services.registry(self.backend, self.project).dir

    def save_state(self, name: str, data: dict[str, Any]) -> None:
        """Write a JSON state file atomically (readers see the old or the new one)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.state_dir / name, data, indent=2, default=str)

    def load_state(self, name: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.state_dir / name).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    # -- predict --------------------------------------------------------------------------------
    def predict(self, tasks: list[dict[str, Any]], context: dict[str, Any] | None = None, **kwargs: Any) -> list[dict[str, Any]]:
        task_model = self.task_model()
        version = queue_version(self.strategy if task_model else "random", task_model)
        if task_model is None:
            return [{"result": [], "model_version": version} for _ in tasks]
        images = self.per_task(tasks, self.load_task_image)
        ok = [(i, img) for i, img in enumerate(images) if isinstance(img, LoadedImage)]
        outputs = task_model.outputs([img for _, img in ok]) if ok else []
        results: list[dict[str, Any]] = [{"result": [], "model_version": version} for _ in tasks]
        if outputs:
            scores = self._task_scores([tasks[i] for i, _ in ok], outputs)
            for (i, _), out, score in zip(ok, outputs, scores):
                results[i] = {"result": out.regions, "score": round(float(score), SCORE_DECIMALS), "model_version": version}
        return results

    def _task_scores(self, tasks: list[dict[str, Any]], outputs: list[Any]) -> np.ndarray:
        """The score the scoring job gives each task by its own value (``ranking.task_scores``), so a
        task pre-labeled here sorts where the queue would put it, and the next scoring finds it unchanged."""
        strategy = self.strategy
        if strategy == "random":
            return hashed_scores([int(t["id"]) for t in tasks], self.settings.seed, self.project_id or 0)
        pool, _ = build_pool(outputs, [], strategy, aggregate=self.settings.aggregate, seed=self.settings.seed)
        return task_scores(pool, strategy)

    # -- jobs -----------------------------------------------------------------------------------
    def fit(self, event: str, data: dict[str, Any], *, job: JobReporter | None = None,
            events: Sequence[Event] = (), **kwargs: Any) -> dict[str, Any] | None:
        if self.kind == "detection":
            return {"skipped": "detection projects are ranked with the detector's versions; a scoring job "
                               "follows each detector publish"}
        from .training import ClassifierTrainer

        return ClassifierTrainer(self, job).run()

    def run_job(self, kind: str, events: Sequence[Event], job: JobReporter) -> dict[str, Any] | None:
        if kind == "score":
            return Scorer(self, job, events).run()
        return super().run_job(kind, events, job)

    def help_with(self, board: Any) -> int:
        """An RQ worker's share of a scoring job's model outputs (see ``Scorer.help``)."""
        return Scorer(self, None).help(board)

    def request_scoring(self, action: str, payload: dict[str, Any]) -> None:
        self.services.journal.record(self.backend, self.project, action, {**payload, "project": self.project},
                                     kind="score")

    def report(self) -> dict[str, Any]:
        found = self.load_state("report.json")
        if found is None:
            raise NotFound(f"no blind-spot report for project {self.project_id} yet: the scoring job writes it "
                           "once a task model exists and some tasks are labeled")
        return found

    @classmethod
    def watch(cls, services: Any) -> None:
        """Detection projects: start a scoring job when the detector's current version changed."""
        for project in services.journal.projects(cls.backend):
            setup = services.journal.get_setup(cls.backend, project)
            if setup is None or not setup.label_config:
                continue
            model = cls.for_project(project, services)
            try:
                if model.kind != "detection":
                    continue
            except LabelLoopError:
                continue
            detector = services.registry("detector", project).current_name()
            last = model.load_state("last_scoring.json") or {}
            if detector and detector != last.get("task_model") and last.get("requested_for") != detector:
                log.info("active project %s: detector published %s; scoring", project, detector)
                model.request_scoring("DETECTOR_PUBLISHED", {"version": detector})
                model.save_state("last_scoring.json", {**last, "requested_for": detector})


def _one_of_at_least_two_choices(control: Any, attr: dict[str, str]) -> Any:
    """A classifier over fewer than two choices has nothing to be unsure between (and margin, the
    default strategy, compares the two best classes); the classifier is single-label (softmax), so
    a multi-label <Choices> would be trained on the first choice of each annotation only."""
    if control.tag == "Choices" and attr.get("choice") == "multiple":
        raise LabelConfigError(f"<Choices name=\"{control.name}\" choice=\"multiple\"> is multi-label; the active "
                               "backend's classifier picks one class per image (use choice=\"single\" or "
                               "\"single-radio\")")
    if control.tag == "Choices" and len(control.labels) < 2:
        raise LabelConfigError(f"<Choices name=\"{control.name}\"> has {len(control.labels)} choice(s); the active "
                               "backend ranks by the model's doubt between classes and needs at least 2")
    return control
