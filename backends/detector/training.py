"""Fine-tuning a project's detector on its annotations (the ``fit`` of the detector backend).

Steps, each timed and recorded in the version's metadata:
1. fetch the project's tasks with annotations (and those of ``extra_params.train_projects``);
2. build a YOLO dataset (``dataset.py``), loading images through the shared media loader;
3. start from the current version, or the first time from the base weights, with the head adapted
   to the project's classes ("swap the last layer"): the backbone and neck are kept, the box branch
   is kept, and the class branch keeps the rows of classes the start model already knew;
4. train with ultralytics (frozen backbone layers, early stopping, a wall-clock cap), reporting
   progress and honouring cancellation between batches;
5. evaluate the new weights, and the current version, on the same val split;
6. publish: always, or with ``publish=if_better`` only if mAP50-95 (top-1 accuracy for classes)
   does not drop (otherwise the version is kept but not made current, and the reason recorded).
"""

from __future__ import annotations

import copy
import logging
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from backends.core.devices import resolve_device
from backends.core.downloads import shown
from backends.core.errors import LabelConfigError, LabelLoopError
from backends.core.jobs import JobCancelled, NoJob
from backends.core.scratch import owned_tempdir, remove_orphans
from backends.core.timings import Timings

from .compared import predicted_shape, truth_shapes
from .corrections import Shape, by_hand, total_corrections
from .dataset import split
from .trainable import TRAINABLE, ControlData, trainable_for
from .video_dataset import FrameSample, load_frames
from .weights import WEIGHTS_FILE, load_model, version_controls

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from backends.core.jobs import JobReporter

    from .model import DetectorModel

log = logging.getLogger(__name__)
#: training scratch directories: ``DATA_DIR/work/detector-<host>-<pid>-*``
WORKDIR_PREFIX = "detector-"


def save_checkpoint(model: Any, path: Path, task: str = "detect") -> Path:
    """Write an ultralytics-loadable checkpoint of an ``nn.Module`` (``{"model", "train_args"}``)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": copy.deepcopy(model).float(), "train_args": {"task": task}}, path)
    return path


def adapt_head(model: Any, names: list[str], kpt_shape: list[int] | None = None) -> Any:
    """A copy of a YOLO model (detect, segment, pose, OBB, classify) whose head predicts exactly
    ``names`` (and, for pose, ``kpt_shape`` keypoints).

    Everything whose shape is unchanged is copied; in the class branch (``cv3``, and ``one2one_cv3``
    on end-to-end heads; a classify head's ``Linear``) each output row of a class the old model
    knew by the same name (case-insensitive) is copied too, so "Dog" keeps what it learned and a
    new "Hydrant" starts fresh. A pose head's keypoint branch is kept when the keypoint count is.
    YOLO11's class branch is ``max(ch, min(nc, 100))`` channels wide: when the class count moves it
    across that width (80 COCO classes -> 3 project classes), the branch cannot be carried over and
    is trained anew on top of the kept backbone, neck and box branch.
    """
    import torch

    old_names = [str(n) for n in dict(model.names).values()]
    old_kpt = list(getattr(model, "kpt_shape", None) or []) or None
    if old_names == names and (kpt_shape is None or old_kpt == list(kpt_shape)):
        return copy.deepcopy(model)
    shape = {"data_kpt_shape": tuple(kpt_shape)} if kpt_shape else {}
    # Any, like ``model``: ultralytics declares none of its models' attributes (model, args, names),
    # which torch's Module.__getattr__ would then type Tensor | Module
    new: Any = type(model)(copy.deepcopy(model.yaml), nc=len(names), verbose=False, **shape)
    new_state = new.state_dict()
    kept = {k: v for k, v in model.state_dict().items() if k in new_state and v.shape == new_state[k].shape}
    new.load_state_dict(kept, strict=False)
    old_index = {n.lower(): i for i, n in enumerate(old_names)}
    with torch.no_grad():
        for module, old in _class_layers(new.model[-1], model.model[-1], len(names), len(old_names)):
            for new_i, label in enumerate(names):
                old_i = old_index.get(label.lower())
                if old_i is not None:
                    _copy_row(module, old, new_i, old_i)
    new.names = dict(enumerate(names))
    new.args = getattr(model, "args", {})
    return new


def _class_layers(new_head: Any, old_head: Any, n_new: int, n_old: int) -> Iterator[tuple[Any, Any]]:
    """``(new, old)`` pairs of the head's layers with one output row per class: the class branch's
    last convolutions (``cv3``) of a detect or segment head, the ``Linear`` of a classify head."""
    import torch

    old_modules = dict(old_head.named_modules())
    for name, module in new_head.named_modules():
        old = old_modules.get(name)
        if isinstance(module, torch.nn.Conv2d) and isinstance(old, torch.nn.Conv2d) and "cv3" in name:
            sizes = (module.out_channels, old.out_channels, module.in_channels, old.in_channels)
        elif isinstance(module, torch.nn.Linear) and isinstance(old, torch.nn.Linear):
            sizes = (module.out_features, old.out_features, module.in_features, old.in_features)
        else:
            continue
        # YOLO11 widens the class branch with nc: when its input width moved, it is re-learnt whole
        if sizes[:2] == (n_new, n_old) and sizes[2] == sizes[3]:
            yield module, old


def _copy_row(new: Any, old: Any, new_row: int, old_row: int) -> None:
    new.weight[new_row] = old.weight[old_row]
    if new.bias is not None and old.bias is not None:
        new.bias[new_row] = old.bias[old_row]


@dataclass
class Trained:
    """One control's fine-tune: its best weights, scores, and val split (images included)."""

    data: ControlData
    best: Path
    metrics: dict[str, Any]
    current_metrics: dict[str, Any] | None
    accepted: bool
    decision: str
    n_train: int
    val: list[Any]
    images: dict[int, Any]


class FineTuner:
    def __init__(self, detector: DetectorModel, job: JobReporter | None = None) -> None:
        self.detector = detector
        self.job: JobReporter = job or NoJob()  # None: plain Python (a notebook), which nothing cancels
        self.settings = detector.settings
        self.services = detector.services
        self.registry = detector.project_registry
        self.timings = Timings()
        self._images: dict[str, Any] = {}  # image URL -> decoded image, for this job

    # -- orchestration --------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        controls = self._trainable_controls()
        started = time.time()
        with self.timings("fetch"):
            tasks = self._fetch_tasks()
        datasets = [trainable_for(c).data(tasks, c, self._image_key(c.to_name)) for c in controls]
        why_not = {d.from_name: self._why_not(d) for d in datasets}
        enough = [d for d in datasets if why_not[d.from_name] is None]
        if not enough:
            reason = "; ".join(f"{name}: {why}" for name, why in why_not.items())
            log.info("detector project %s: not training: %s", self.detector.project_id, reason)
            return {"skipped": reason, "report": {d.from_name: d.report.to_json() for d in datasets}}
        workdir = owned_tempdir(self._work_root(), WORKDIR_PREFIX)
        try:
            not_trained = {name: why for name, why in why_not.items() if why is not None}
            return self._train_and_publish(workdir, datasets, enough, not_trained, started)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _train_and_publish(self, workdir: Path, datasets: list[ControlData], enough: list[ControlData],
                           not_trained: dict[str, str], started: float) -> dict[str, Any]:
        current = self.registry.current()
        before = version_controls(current, self._first_box()) if current is not None else {}
        # only the controls whose training set changed since the serving version; all when none did
        # (a Train click, or new settings: the user asked for training)
        changed = [d for d in enough if (before.get(d.from_name) or {}).get("fingerprint") != d.fingerprint()]
        trained = [self._train_control(workdir / f"c{i}", d, current, before.get(d.from_name))
                   for i, d in enumerate(changed or enough)]
        make_current = any(t.accepted for t in trained)
        entries = self._entries(trained, datasets, current, before, make_current)
        primary = self._primary(entries)
        sources = {}
        for from_name, entry in entries.items():
            sources[from_name] = entry.pop("_source")
            entry["weights"] = WEIGHTS_FILE if from_name == primary else f"controls/{_file_name(from_name)}.pt"
        metadata = self._metadata(entries, primary, trained, current, started)
        metadata["not_trained"] = not_trained
        with self.registry.stage() as staged:
            for from_name, entry in entries.items():
                target = Path(staged.path) / entry["weights"]
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(sources[from_name], target)
                with self.timings("export"):  # the serving runtime's file, in the version before it serves
                    self.detector.serving_weights(str(target))
            metadata["timings"]["export"] = self.timings["export"]
            with self.timings("corrections"):
                metadata["corrections"] = {
                    t.data.from_name: self._corrections(Path(staged.path) / entries[t.data.from_name]["weights"],
                                                        current, t)
                    for t in trained}
            metadata["timings"]["corrections"] = self.timings["corrections"]
            version = staged.publish(metadata, make_current=make_current)
        if make_current:
            self.detector.request_prelabel(version.name)
        log.info("detector project %s: %s %s: %s", self.detector.project_id,
                 "published" if make_current else "kept (not serving)", version.name, metadata["decision"])
        return {"version": version.name, "serving": make_current, "decision": metadata["decision"],
                "metrics": entries[primary].get("metrics"), "not_trained": not_trained,
                "controls": {n: {k: e.get(k) for k in ("task", "trained", "decision", "metrics", "carried_from")}
                             for n, e in entries.items()}}

    def _train_control(self, workdir: Path, data: ControlData, current: Any, before: dict[str, Any] | None) -> Trained:
        """Train one control's weights and evaluate them, and the serving ones, on its val split."""
        with self.timings("dataset"):
            images = self._load_images(data.samples, data.report)
            usable = [s for s in data.samples if s.task_id in images]
            if not usable:
                raise LabelLoopError(f"{data.from_name}: no annotated image could be loaded; see the job's report")
            train_ids, val_ids = split_by_group(usable, self.settings.val_ratio, self.settings.seed)
        serving = Path(current.path) / before["weights"] if current is not None and before else None
        with self.timings("prepare"):
            start, data = self._start_checkpoint(str(serving) if serving else self._base_weights(data.task), data,
                                                 workdir)
        with self.timings("dataset"):
            data_yaml = data.write(workdir / "data", images, train_ids, val_ids)
        self.job.progress(stage="training", control=data.from_name, n_train=len(train_ids), n_val=len(val_ids))
        with self.timings("train"):
            best = self._train(start, data_yaml, workdir)
        with self.timings("evaluate"):
            metrics = evaluate(best, data_yaml, self.settings, data.names, workdir=workdir, task=data.task)
            current_metrics = None
            if serving is not None and before and (before.get("names"), before.get("kpt_shape")) == (
                    data.names, data.kpt_shape):
                current_metrics = evaluate(serving, data_yaml, self.settings, data.names, workdir=workdir,
                                           task=data.task)
        accepted, decision = publish_decision(self.settings.publish, metrics, current_metrics, GATE[data.task])
        val = [s for s in usable if s.task_id in val_ids]
        return Trained(data, best, metrics, current_metrics, accepted, decision, len(train_ids), val,
                       {s.task_id: images[s.task_id] for s in val})

    def _entries(self, trained: list[Trained], datasets: list[ControlData], current: Any,
                 before: dict[str, dict[str, Any]], make_current: bool) -> dict[str, dict[str, Any]]:
        """Each control's entry in the new version: its new weights; or, when it did not change or
        (with other controls publishing) scored worse, the serving version's, carried over."""
        entries: dict[str, dict[str, Any]] = {}
        done = {t.data.from_name: t for t in trained}
        for data in datasets:
            t, old = done.get(data.from_name), before.get(data.from_name)
            if t is not None and (t.accepted or not make_current or old is None):
                entries[data.from_name] = {
                    "tag": data.control.tag, "task": data.task, "names": data.names, "trained": True,
                    "fingerprint": data.fingerprint(), "metrics": t.metrics, "current_metrics": t.current_metrics,
                    "decision": t.decision, "n_annotations": data.report.n_annotated, "n_train": t.n_train,
                    "n_val": len(t.val), "val_task_ids": sorted(s.task_id for s in t.val),
                    "report": data.report.to_json(), "_source": t.best,
                    **({"kpt_shape": t.data.kpt_shape} if t.data.kpt_shape else {})}
            elif old is not None:
                entries[data.from_name] = {**old, "trained": False, "carried_from": old.get("carried_from") or current.name,
                                           "_source": Path(current.path) / old["weights"]}
                if t is not None:
                    entries[data.from_name]["rejected"] = {"metrics": t.metrics, "decision": t.decision}
        return entries

    def _metadata(self, entries: dict[str, dict[str, Any]], primary: str, trained: list[Trained], current: Any,
                  started: float) -> dict[str, Any]:
        """The version's metadata: every control's entry, and the primary control's at the top level
        (where versions of one box control kept them, and where /metrics and the active backend read)."""
        main = entries[primary]
        decisions = [f"{t.data.from_name}: {t.decision}" for t in trained]
        return {
            "names": main["names"], "from_name": primary, "metrics": main.get("metrics"),
            "current_metrics": main.get("current_metrics"),
            "decision": trained[0].decision if len(trained) == 1 else "; ".join(decisions),
            **{k: main.get(k) for k in ("n_annotations", "n_train", "n_val", "val_task_ids", "report")},
            "controls": entries,
            "hyperparameters": {k: getattr(self.settings, k) for k in
                                ("epochs", "imgsz", "batch", "lr0", "freeze", "patience", "max_minutes",
                                 "val_ratio", "publish", "seed")},
            "start_weights": current.name if current else shown(self.settings.base_weights),
            "timings": {**self.timings, "total": round(time.time() - started, 2)}, "job": self.job.id,
        }

    @staticmethod
    def _primary(entries: dict[str, dict[str, Any]]) -> str:
        """The control whose weights are the version's ``weights.pt``: the first box control, else
        the first control (what the active backend and imported versions mean by a version's weights)."""
        return next((n for n, e in entries.items() if e["task"] == "detect"), next(iter(entries)))

    # -- steps ----------------------------------------------------------------------------------
    def _corrections(self, new: Path, current: Any, trained: Trained) -> dict[str, Any]:
        """Corrections per val image (corrections.py) for the new version, the version it would
        replace (or the base weights) and labeling by hand, on the same images."""
        data, val = trained.data, trained.val
        truths = [truth_shapes(s, data) for s in val]
        pictures = [trained.images[s.task_id] for s in val]
        old = version_controls(current, self._first_box()).get(data.from_name) if current is not None else None
        before = str(Path(current.path) / old["weights"]) if old else self._base_weights(data.task)
        shown_before = current.name if old else shown(before)
        out: dict[str, Any] = {"version": self._corrections_of(str(new), data, pictures, truths),
                               "by_hand": by_hand(truths).to_json()}
        try:
            out["before"] = {"weights": shown_before, **self._corrections_of(before, data, pictures, truths)}
        except LabelLoopError as exc:  # e.g. base weights with no class named as a label
            out["before"] = {"weights": shown_before, "error": exc.message}
        return out

    def _corrections_of(self, weights: str, data: ControlData, pictures: list[Any], truths: list[list[Shape]]
                        ) -> dict[str, Any]:
        regions = self.detector.regions_from(weights, data.control, pictures)
        predicted = [[predicted_shape(r, data.task) for r in image] for image in regions]
        return total_corrections(list(zip(predicted, truths))).to_json()

    def _trainable_controls(self) -> list[Any]:
        found = [c for c in self.detector.controls if c.key in TRAINABLE and not c.model_path]
        if not found:
            tags = dict.fromkeys(tag for tag, _ in TRAINABLE)
            raise LabelConfigError(f"training needs a {' or '.join(f'<{t}>' for t in tags)} control without model_path")
        return found

    def _why_not(self, data: ControlData) -> str | None:
        """Why a control is not trained by this job (the job's ``not_trained``, or ``skipped``);
        None when it is trained."""
        if data.refused:
            return data.refused
        annotated = len({getattr(s, "group", s.task_id) for s in data.samples})  # a video's frames count once
        if annotated < self.settings.min_annotations:
            return f"{annotated} annotated tasks, fewer than min_annotations={self.settings.min_annotations}"
        if not data.has_objects():
            return (f"no usable {data.control.tag} region of {data.from_name!r} in any of the {len(data.samples)} "
                    "annotated tasks (its report counts what was dropped): nothing to learn; the weights it has "
                    "keep serving")
        return None

    def _first_box(self) -> str | None:
        return next((c.from_name for c in self.detector.controls if c.yolo_task == "detect"), None)

    def _base_weights(self, task: str) -> str:
        return self.settings.base_for(task)

    def _image_key(self, to_name: str) -> str:
        return next(o.value_name for o in self.detector.label_interface.objects if o.name == to_name)

    def _fetch_tasks(self) -> list[dict[str, Any]]:
        projects = [self.detector.project_id]
        extra = self.detector.extra_params.get("train_projects") or []
        if not isinstance(extra, list) or not all(isinstance(p, int) for p in extra):
            raise LabelLoopError("extra_params.train_projects must be a list of Label Studio project ids")
        tasks = []
        for project in projects + [p for p in extra if p != self.detector.project_id]:
            for task in self.services.ls.iter_tasks(project):
                tasks.append(task)
                self.job.check_cancelled()
        return tasks

    def _load_images(self, samples: Sequence[Any], report: Any) -> dict[int, Any]:
        """The samples' images, loaded once per job (two controls on one image share it); a
        video's sampled frames in one pass over it."""
        if samples and isinstance(samples[0], FrameSample):
            return self._load_frames(cast("list[FrameSample]", list(samples)), report)
        images = {}
        for i, sample in enumerate(samples):
            self.job.check_cancelled()
            try:
                if sample.image_url not in self._images:
                    self._images[sample.image_url] = self.services.media.load_image(sample.image_url).image
                images[sample.task_id] = self._images[sample.image_url]
            except LabelLoopError as exc:  # e.g. the task was deleted since: skip it, say why
                report.skipped_tasks[sample.task_id] = exc.message
                log.warning("detector: task %s left out of training: %s", sample.task_id, exc.message)
            if i % 20 == 0:
                self.job.progress(stage="loading images", loaded=i + 1, total=len(samples))
        return images

    def _load_frames(self, samples: list[FrameSample], report: Any) -> dict[int, Any]:
        """Each video's sampled frames, one video at a time (progress and cancellation between)."""
        by_video: dict[str, list[FrameSample]] = {}
        for sample in samples:
            by_video.setdefault(sample.image_url, []).append(sample)
        frames: dict[int, Any] = {}
        for done, group in enumerate(by_video.values()):
            self.job.check_cancelled()
            self.job.progress(stage="decoding video frames", videos=done, total=len(by_video))
            frames.update(load_frames(self.services.media, group))
        images = {}
        for sample in samples:
            loaded = frames.get(sample.task_id)
            if isinstance(loaded, Exception):
                report.skipped_tasks[sample.group] = getattr(loaded, "message", None) or f"{type(loaded).__name__}: {loaded}"
            elif loaded is None:
                report.skipped_tasks.setdefault(sample.group, f"frame {sample.frame} is past the video's end")
            else:
                images[sample.task_id] = loaded
        return images

    def _start_checkpoint(self, source: str, data: ControlData, workdir: Path) -> tuple[Path, ControlData]:
        """``source`` (the control's serving weights, else the base weights of its task) with the
        head adapted to the control's classes; and the control's data as it trains from there: a
        pose control keeps every keypoint the start model has (COCO's 17 for the base weights), so
        their branch carries over whole, its own points placed by ``model_index`` among them."""
        base = load_model(source).model
        if getattr(base, "task", "detect") != data.task:
            raise LabelConfigError(f"start weights {shown(source)!r} are a {base.task} model; "
                                   f"{data.control.tag} training needs a {data.task} model")
        if data.kpt_shape:
            data = data.widened(int(base.model.kpt_shape[0]))
        start = save_checkpoint(adapt_head(base.model, data.names, data.kpt_shape), workdir / "start.pt", task=data.task)
        return start, data

    def _train(self, start: Path, data_yaml: Path, workdir: Path) -> Path:
        epochs = self.settings.epochs
        deadline = time.monotonic() + self.settings.max_minutes * 60
        cancelled = False

        def on_batch_end(trainer: Any) -> None:
            # ultralytics checks trainer.stop right after this callback: a graceful stop between
            # batches that still writes last.pt.
            nonlocal cancelled
            if self.job.cancelled.is_set():
                cancelled = trainer.stop = True
            elif time.monotonic() > deadline:
                log.warning("detector: max_minutes=%s reached; stopping at epoch %d", self.settings.max_minutes,
                            trainer.epoch + 1)
                trainer.stop = True

        def on_epoch_end(trainer: Any) -> None:
            loss = _total_loss(getattr(trainer, "tloss", None))
            self.job.progress(stage="training", epoch=trainer.epoch + 1, epochs=epochs, loss=loss)
            log.info("detector project %s: epoch %d/%d loss %s", self.detector.project_id, trainer.epoch + 1,
                     epochs, f"{loss:.4f}" if loss is not None else "-")

        trainer = fine_tune(start, data_yaml, workdir, self.settings,
                            {"on_train_batch_end": on_batch_end, "on_train_epoch_end": on_epoch_end})
        if cancelled:
            self._keep_checkpoint(Path(trainer.last))
            raise JobCancelled(f"training cancelled at epoch {trainer.epoch + 1}/{epochs}")
        best = Path(trainer.best) if Path(trainer.best).exists() else Path(trainer.last)
        if not best.exists():
            raise LabelLoopError("training produced no weights")
        return best

    # -- plumbing -------------------------------------------------------------------------------
    def _keep_checkpoint(self, last: Path) -> None:
        if last.exists():
            keep = self.registry.dir / "checkpoints" / f"job-{self.job.id or 'x'}-last.pt"
            keep.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(last, keep)
            log.info("detector: cancelled job's last checkpoint kept at %s (not published)", keep)

    def _work_root(self) -> Path:
        """Training runs' scratch space (dataset, ultralytics run folder), without what runs killed
        mid-training left behind."""
        root = self.services.settings.data_dir / "work"
        root.mkdir(parents=True, exist_ok=True)
        for orphan in remove_orphans(root, WORKDIR_PREFIX):
            log.info("detector: removed %s, left by a training run that was killed", orphan.name)
        return root


#: the metric each task's publish gate compares: mAP50-95 (of masks for segment, of keypoints (OKS)
#: for pose), top-1 accuracy for classes
GATE = {"detect": "map50_95", "segment": "map50_95", "pose": "map50_95", "obb": "map50_95", "classify": "top1"}
_SHOWN = {"map50_95": "mAP50-95", "top1": "top-1 accuracy"}


def publish_decision(rule: str, metrics: dict[str, Any], current: dict[str, Any] | None,
                     key: str = "map50_95") -> tuple[bool, str]:
    """Whether a trained version becomes current, and why (recorded in its metadata). Under
    ``if_better`` a version that scores lower on ``key`` (``GATE``) than the current one on the same
    val split is kept but not served, so a bad batch of labels cannot make pre-labels worse; a tie
    publishes (the newer labels win). ``current`` is None when no version for these classes exists."""
    if rule == "always":
        return True, "publish=always"
    if current is None:
        return True, "first version for these classes"
    new, old, shown_key = metrics[key], current[key], _SHOWN.get(key, key)
    if new >= old:
        return True, f"{shown_key} {new:.4f} >= current {old:.4f}"
    return False, f"{shown_key} {new:.4f} < current {old:.4f} on the same val split"


def fine_tune(start: Path, data_yaml: Path, workdir: Path, settings: Any,
              callbacks: dict[str, Any] | None = None) -> Any:
    """Train ``start`` (a checkpoint) on ``data_yaml`` with the detector's hyper-parameters; returns
    the ultralytics trainer (``.best``, ``.last``, ``.epoch``). Used by jobs and benchmarks alike.

    ultralytics' own ``time=`` argument is not used: it is not a cap but stretches the epoch count
    to fill the time. The wall-clock cap lives in the caller's batch callback instead.
    """
    from ultralytics import YOLO

    model = YOLO(str(start))
    for event, callback in (callbacks or {}).items():
        model.add_callback(event, callback)
    model.train(
        data=str(data_yaml), epochs=settings.epochs, imgsz=settings.imgsz, batch=settings.batch,
        lr0=settings.lr0, freeze=settings.freeze or None, patience=settings.patience,
        device=resolve_device(settings.device), workers=0, project=str(workdir / "runs"), name="train",
        exist_ok=True, plots=False, amp=False, verbose=False, seed=settings.seed, deterministic=True, val=True,
        cache=False,
    )
    return model.trainer


def evaluate(weights: Path, data_yaml: Path, settings: Any, names: list[str], *, workdir: Path,
             task: str = "detect") -> dict[str, Any]:
    """mAP50, mAP50-95, precision, recall, F1, overall and per class, on the dataset's val split:
    of the boxes for detect weights, of the masks for segment weights (their boxes' mAP is added
    under ``box``). The publish gate reads ``map50_95``, so a segment version is judged by its masks.

    ``workdir`` holds ultralytics' val run folder: without ``project=`` it would write ``runs/``
    into the working directory, which in the images is read-only (no version ever published).
    Classify weights are scored by top-1 and top-5 accuracy instead."""
    from ultralytics import YOLO

    model = YOLO(str(weights))
    result = model.val(data=str(data_yaml), split="val", imgsz=settings.imgsz, batch=settings.batch,
                       device=resolve_device(settings.device), plots=False, verbose=False, workers=0,
                       project=str(workdir / "runs"), name="val", exist_ok=True)
    if task == "classify":
        return {"top1": float(result.top1), "top5": float(result.top5)}
    metric = {"segment": getattr(result, "seg", None), "pose": getattr(result, "pose", None)}.get(task) or result.box
    precision, recall = float(metric.mp), float(metric.mr)
    per_class = {}
    for i, class_index in enumerate(metric.ap_class_index.tolist()):
        p, r, ap50, ap = (float(v) for v in metric.class_result(i))
        per_class[names[class_index]] = {"precision": p, "recall": r, "map50": ap50, "map50_95": ap,
                                         "f1": _f1(p, r)}
    out = {"map50": float(metric.map50), "map50_95": float(metric.map), "precision": precision, "recall": recall,
           "f1": _f1(precision, recall), "per_class": per_class}
    if task in ("segment", "pose"):
        out["box"] = {"map50": float(result.box.map50), "map50_95": float(result.box.map)}
    return out


def _total_loss(tloss: Any) -> float | None:
    """ultralytics keeps the running epoch loss as a tensor (older) or a dict of parts (8.4)."""
    if tloss is None:
        return None
    if isinstance(tloss, dict):
        return float(sum(float(v) for v in tloss.values()))
    return float(tloss.sum())


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def _file_name(from_name: str) -> str:
    """A control's name as a file name: Label Studio allows any characters in ``name``."""
    return re.sub(r"[^\w.-]", "_", from_name)[:80] or "control"


def split_by_group(samples: Sequence[Any], val_ratio: float, seed: int) -> tuple[set[int], set[int]]:
    """Train and val sample ids, split by each sample's ``group`` (a video's frames share their
    task's: neighbouring frames on both sides would make val a copy of train), else by its own id."""
    group_of = {s.task_id: getattr(s, "group", s.task_id) for s in samples}
    train_groups, val_groups = split(sorted(set(group_of.values())), val_ratio, seed)
    return ({i for i, g in group_of.items() if g in train_groups}, {i for i, g in group_of.items() if g in val_groups})
