"""The detector backend: YOLO pre-labels for every control tag a YOLO model serves, and fine-tuning
on submitted annotations (see ``training.py``); after each published version, the whole project's
pre-labels written into Label Studio by a background job (see ``prelabel.py``).

Task score (``prediction.score``): the mean confidence of the task's predicted regions, 0 when
there are none. Low means "the model is unsure or sees nothing here", which is what Label Studio's
uncertainty sampling serves first.
"""

from __future__ import annotations

import io
import logging
import shutil
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from backends.core.devices import resolve_device
from backends.core.downloads import shown
from backends.core.errors import LabelConfigError, LabelLoopError
from backends.core.media import LoadedImage, decode_image, short_url
from backends.core.model import LabelLoopModel

from .controls import CONTROL_MODELS, ControlModel, VideoRectangleModel, control_model_for
from .prelabel import Prelabeler, score_of
from .settings import DetectorSettings
from .video import Pacing, VideoTooLong
from .weights import check_allowed, configure_ultralytics, load_model, onnx_for, version_controls, weights_of

if TYPE_CHECKING:
    from backends.core.jobs import JobReporter
    from backends.core.journal import Event

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def env_settings() -> DetectorSettings:
    return DetectorSettings()


@dataclass(frozen=True)
class Deferred:
    """A task left to a background job (a video too long for ``/predict``): ``note`` says which."""

    note: dict[str, Any]


@dataclass(frozen=True)
class Plan:
    """Which weights serve a control, and which version name predictions from them carry."""

    control: ControlModel
    weights: str
    version: str | None  # a published version of this project, or None for base/model_path weights


GPU_PREDICT_BATCH = 16  # images per inference call on a GPU (DETECTOR_PREDICT_BATCH=0)
_NO_ONNX: set[tuple[str, int]] = set()  # (weights, imgsz) whose export failed under runtime=auto


def _encoded_blank(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (114, 114, 114)).save(buf, format=fmt)  # ultralytics' letterbox grey
    return buf.getvalue()


class DetectorModel(LabelLoopModel):
    backend = "detector"
    requested_kinds = ("prelabel",)

    @cached_property
    def settings(self) -> DetectorSettings:
        return env_settings().for_project(self.extra_params)

    @property
    def base_version(self) -> str:
        return f"detector-base-{Path(shown(self.settings.base_weights)).stem}"

    @cached_property
    def controls(self) -> list[ControlModel]:
        kinds = {o.name: o.tag.lower() for o in self.label_interface.objects}
        found = []
        for control in self.label_interface.controls:
            cls = control_model_for(control)
            if cls is None or not control.to_name or kinds.get(control.to_name[0]) != ("video" if cls.on_video else "image"):
                continue
            if control.tag == "KeyPointLabels" and str((control.attr or {}).get("smart", "")).lower() == "true":
                continue  # smart keypoints are the labeler's clicks for the segmenter, not pose output
            model = cls(control, self.settings.score_threshold)
            if not model.skip:
                model.connect(self.label_interface)
                found.append(model)
        if not found:
            tags = ", ".join(sorted(CONTROL_MODELS))
            raise LabelConfigError(f"the label config has no control this backend serves on an <Image> or <Video> ({tags})")
        return found

    def setup(self) -> None:
        self.controls  # noqa: B018 - structural validation only; weights load on first predict

    # -- predict --------------------------------------------------------------------------------
    def plans(self) -> list[Plan]:
        current = self.registry.current() if self.registry else None  # read the pointer once
        first_box = next((c.from_name for c in self.controls if c.yolo_task == "detect"), None)
        served = version_controls(current, first_box) if current is not None else {}
        plans = []
        for control in self.controls:
            entry = served.get(control.from_name)
            if control.model_path:
                plans.append(Plan(control, check_allowed(control.model_path, self.allowed_weight_dirs), None))
            elif current is not None and entry is not None:
                plans.append(Plan(control, str(Path(current.path) / entry["weights"]), current.name))
            elif control.own_weights_only:
                continue  # e.g. the segmenter's <BrushLabels>, until brush annotations have trained
            else:  # e.g. a second box control: the version's classes are not its labels
                plans.append(Plan(control, self.settings.base_for(control.yolo_task), None))
        return plans

    @property
    def allowed_weight_dirs(self) -> list[Path]:
        return [self.services.settings.model_dir, *self.settings.weights_dirs]

    def predict(self, tasks: list[dict[str, Any]], context: dict[str, Any] | None = None,
                **kwargs: Any) -> list[dict[str, Any] | list[dict[str, Any]]]:
        """Pre-labels for ``tasks``, a chunk at a time: a chunk's images are decoded, run through
        every control's weights and turned into regions before the next chunk is decoded, so a
        /predict of 1,000 tasks holds no more images and ultralytics results than one of 10."""
        version, regions = self.task_regions(tasks)
        # a deferred task gets no prediction now (an empty list: Label Studio stores none), the job's later
        return [[] if isinstance(r, Deferred) else self._prediction(r if isinstance(r, list) else None, version)
                for r in regions]

    def task_regions(self, tasks: list[dict[str, Any]], *, alone: bool | None = None, pacing: Pacing | None = None
                     ) -> tuple[str, list[list[dict[str, Any]] | LabelLoopError | Deferred]]:
        """The version serving, and each task's regions (or why its image did not load, or, for a
        video too long to track within ``DETECTOR_VIDEO_PREDICT_S``, the job that will). ``alone``
        as in ``per_task``: by default a single task's load error is raised, for ``/predict``'s 4xx.
        ``pacing``: how videos are tracked; by default within ``/predict``'s budget."""
        pacing = pacing or Pacing(budget_s=self.settings.video_predict_s)  # from here: the request's time counts
        configure_ultralytics(self.services.settings.data_dir, self.settings.safe_globals)
        plans = self.plans()
        version = self.serving_version(plans)
        alone = len(tasks) == 1 if alone is None else alone
        grouped = _group([p for p in plans if not p.control.on_video])
        to_names = list(dict.fromkeys(to_name for _, to_name in grouped))
        regions: list[list[dict[str, Any]] | LabelLoopError | Deferred] = []
        for chunk in self._decoded_chunks(tasks, to_names, alone=alone):
            regions.extend(self._predict_chunk(chunk, grouped))
        video_plans = [p for p in plans if p.control.on_video]
        for i, task in enumerate(tasks):
            if video_plans and isinstance(regions[i], list):
                try:
                    regions[i] = self.per_task([task], partial(self._tracked, plans=video_plans, pacing=pacing),
                                               alone=alone)[0]
                except VideoTooLong as long:
                    regions[i] = self._defer(task, long, alone)
        return version, regions

    def _defer(self, task: dict[str, Any], long: VideoTooLong, alone: bool) -> Deferred | LabelLoopError:
        """Queue a prelabel job for a video too long to track inside ``/predict``."""
        frames = f"{long.total} frames" if long.total else "its frames"
        timed = f"timed on {long.done}" if long.done else "waiting for the tracker another video holds"
        why = (f"task {task.get('id')}'s video: tracking {frames} would take this request about "
               f"{long.projected_s:.0f} s ({timed}), over DETECTOR_VIDEO_PREDICT_S={long.budget_s:g}")
        task_id = task.get("id")
        if self.project_id is None or isinstance(task_id, bool) or not isinstance(task_id, int):
            error = LabelLoopError(f"{why}; no project to queue a prelabel job in: send 'project' with the task",
                                   status=422)
            if alone:
                raise error
            return error
        recorded = self.services.journal.record(self.backend, self.project_id, "VIDEO_TOO_LONG_FOR_PREDICT",
                                                {"tasks": [task_id]}, kind="prelabel")
        note = {"task": task_id, "job": recorded.job_id, "reason": f"{why}: the prelabel job writes its prediction"}
        log.info("detector project %s: %s", self.project_id, note["reason"])
        self.deferred.append(note)
        return Deferred(note)

    def _tracked(self, task: dict[str, Any], plans: list[Plan], pacing: Pacing) -> list[dict[str, Any]]:
        """Tracked ``videorectangle`` regions of the task's video for each video control."""
        from .video import collect_tracks, probe, tracker_config

        regions: list[dict[str, Any]] = []
        for plan in plans:
            control: VideoRectangleModel = plan.control  # type: ignore[assignment]
            url = self.media_url(task, control.to_name, "video")
            path = self.services.media.load_file(url)
            info = probe(path, f"task {task.get('id')}'s video {short_url(url)}")
            loaded = load_model(self.serving_weights(plan.weights), role="track")
            mapping = control.label_map(load_model(plan.weights).names)
            tracker = tracker_config(control.control.attr or {}, self.services.settings.data_dir / "trackers")
            with _held(loaded.lock, pacing):
                # class-agnostic NMS: one box per object, so one track; an object the model is unsure
                # of would otherwise be two overlapping boxes of two classes, two tracks. The track's
                # label is then the majority of its frames' classes.
                frames = loaded.model.track(
                    source=str(path), stream=True, persist=False, tracker=tracker, conf=control.detection_conf,
                    imgsz=self.settings.predict_imgsz, max_det=self.settings.max_det, verbose=False,
                    device=resolve_device(self.settings.device), agnostic_nms=True)
                paced = pacing.frames(((i, result.boxes) for i, result in enumerate(frames)), info.frames)
                tracks = collect_tracks(paced, mapping)
            if not info.frames:  # the container did not say: the frames tracked do
                info = replace(info, frames=pacing.done)
            regions.extend(control.video_regions(tracks, info, control.framerate_for(task)))
        return regions

    def serving_version(self, plans: list[Plan] | None = None) -> str:
        """The ``model_version`` this project's predictions carry: the trained version serving a
        control, else the base weights' name."""
        return next((p.version for p in plans or self.plans() if p.version), None) or self.base_version

    def _decoded_chunks(self, tasks: list[dict[str, Any]], to_names: list[str], alone: bool) -> Iterator[list[dict[str, Any]]]:
        """Per task, its image for each ``<Image>`` (or the error loading it), a chunk at a time:
        at most one inference group of tasks, and no more once ``predict_pixels_held`` decoded
        pixels are held (so at most that plus one image, itself capped by MEDIA_MAX_PIXELS)."""
        size, budget = self.inference_group(), self.settings.predict_pixels_held
        chunk: list[dict[str, Any]] = []
        pixels = 0
        for task in tasks:
            images = {name: self.per_task([task], partial(self.load_task_image, object_name=name), alone=alone)[0]
                      for name in to_names}
            chunk.append(images)
            pixels += sum(img.width * img.height for img in images.values() if isinstance(img, LoadedImage))
            if len(chunk) >= size or pixels >= budget:
                yield chunk
                chunk, pixels = [], 0
        if chunk:
            yield chunk

    def _predict_chunk(self, chunk: list[dict[str, Any]], grouped: dict[tuple[str, str], list[Plan]]
                       ) -> list[list[dict[str, Any]] | LabelLoopError]:
        """Regions for each task of ``chunk``; for a task whose image could not be loaded, why."""
        regions: list[list[dict[str, Any]] | LabelLoopError] = [
            next((img for img in images.values() if not isinstance(img, LoadedImage)), [])
            for images in chunk]
        for (weights, to_name), group in grouped.items():
            ok = [(i, images[to_name]) for i, images in enumerate(chunk) if isinstance(regions[i], list)]
            if not ok:
                continue
            inputs = [self._inference_copy(img.image) for _, img in ok]
            results = self._infer(weights, inputs, min(p.control.threshold for p in group))
            model_names = load_model(weights).names  # the .pt's names (also those of its ONNX export)
            for (i, img), result in zip(ok, results):
                for plan in group:
                    regions[i].extend(plan.control.regions(result, model_names, img.width, img.height))  # type: ignore[union-attr]
        return regions

    def regions_from(self, weights: str, control: ControlModel, images: list[Image.Image]) -> list[list[dict[str, Any]]]:
        """``control``'s regions on ``images`` from ``weights`` as ``/predict`` makes them (same
        threshold, runtime, inference size and label mapping): what a labeler would be shown."""
        results = self._infer(weights, [self._inference_copy(image) for image in images], control.threshold)
        names = load_model(weights).names
        return [control.regions(result, names, *image.size) for result, image in zip(results, images)]

    def _inference_copy(self, image: Image.Image) -> Image.Image:
        """The image as inference needs it: ultralytics letterboxes to ``predict_imgsz`` anyway, so
        an image over twice that on its long side is reduced by an integer factor first (fast, and
        it spares ultralytics' full-size numpy and BGR copies: 2 x 243 MB for 9000x9000 pixels)."""
        factor = max(image.size) // (2 * self.settings.predict_imgsz)
        return image.reduce(factor) if factor >= 2 else image

    def inference_group(self) -> int:
        """Images per inference call: DETECTOR_PREDICT_BATCH, or 1 on a CPU and 16 on a GPU."""
        return self.settings.predict_batch or (1 if resolve_device(self.settings.device) == "cpu" else GPU_PREDICT_BATCH)

    def _infer(self, weights: str, images: list[Any], conf: float) -> list[Any]:
        device = resolve_device(self.settings.device)
        loaded = load_model(self.serving_weights(weights))
        kwargs: dict[str, Any] = {"verbose": False, "device": device}
        if loaded.task != "classify":
            kwargs.update(conf=conf, max_det=self.settings.max_det, imgsz=self.settings.predict_imgsz)
        group = self.inference_group()
        results: list[Any] = []
        for start in range(0, len(images), group):
            with loaded.lock:  # per group: concurrent requests interleave instead of queueing whole
                results.extend(loaded.model.predict(images[start:start + group], **kwargs))
        return results

    def serving_weights(self, weights: str) -> str:
        """What inference loads for ``weights``: its ONNX export (made once, kept beside the .pt)
        under ``runtime=onnx``, and under ``auto`` on a CPU; else the weights themselves. Under
        ``auto`` a failed export falls back to PyTorch instead of failing the request."""
        runtime = self.settings.runtime
        if runtime == "torch" or (runtime == "auto" and resolve_device(self.settings.device) != "cpu"):
            return weights
        if runtime == "onnx":
            return onnx_for(weights, self.settings.predict_imgsz) or weights
        key = (weights, self.settings.predict_imgsz)
        if key in _NO_ONNX:
            return weights
        try:
            return onnx_for(*key) or weights
        except (LabelConfigError, OSError) as exc:  # e.g. weights in a read-only folder
            _NO_ONNX.add(key)  # tried once per process, not on every request
            log.warning("detector: serving %s with PyTorch, its ONNX export failed: %s", weights, exc)
            return weights

    @staticmethod
    def _prediction(regions: list[dict[str, Any]] | None, version: str) -> dict[str, Any]:
        return {"result": regions or [], "score": score_of(regions or []), "model_version": version}

    @classmethod
    def warmup(cls, services: Any) -> None:
        """Load the base detect weights and run one real inference through the serving path before
        the first request needs them. Loading alone (~10 s on CPU) is not enough: ultralytics imports
        torchvision and builds its predictor lazily inside the first ``predict`` (~1.75 s on 2 cores,
        measured), and on a CPU the ONNX export and its session (~5 s) are made there too, all of
        which a labeler opening the first task would otherwise wait for."""
        configure_ultralytics(services.settings.data_dir, env_settings().safe_globals)
        base = env_settings().base_weights
        load_model(base)  # a request reads the class names from the .pt even when ONNX Runtime serves it
        blank = [decode_image(_encoded_blank(fmt), "warm-up") for fmt in ("JPEG", "PNG")]  # PIL loads decoders lazily
        cls(project_id=None, label_config=None, services=services)._infer(base, blank[:1], 1.0)

    # -- your own weights -----------------------------------------------------------------------
    def import_version(self, *, path: str | None = None, upload: Any = None, name_hint: str | None = None) -> Any:
        """Register detect weights trained elsewhere as a new current version of this project.

        ``path`` must lie in the model store or ``DETECTOR_WEIGHTS_DIRS``; an upload is written into
        the staging folder first. The weights must load as an ultralytics detect model; their class
        names become the version's label map.
        """
        if self.registry is None:
            raise LabelLoopError("registering weights needs a project")
        with self.registry.stage() as staged:
            target = weights_of(staged.path)
            if upload is not None:
                upload.save(target)
                source = getattr(upload, "filename", None) or "upload"
            elif path:
                shutil.copy(check_allowed(path, self.allowed_weight_dirs), target)
                source = path
            else:
                raise LabelLoopError("give a 'path' or upload a .pt file")
            loaded = load_model(str(target), shown_as=str(source))  # weights-only: a refusal names the upload
            if loaded.task != "detect":
                raise LabelLoopError(f"{source} is a {loaded.task} model; versions serve RectangleLabels (detect)", status=422)
            names = [str(n) for n in loaded.names.values()]
            version = staged.publish({"names": names, "imported_from": str(source), "metrics": None,
                                      "decision": "registered through POST /versions"})
        self.request_prelabel(version.name)
        return version

    # -- fit ------------------------------------------------------------------------------------
    def run_job(self, kind: str, events: Sequence[Event], job: JobReporter) -> dict[str, Any] | None:
        if kind == "prelabel":
            return Prelabeler(self, job, events).run()
        return super().run_job(kind, events, job)

    def request_prelabel(self, version: str) -> None:
        """Queue a prelabel job for the whole project after ``version`` was published, where the
        project's ``prelabel`` setting asks for it (``publish``)."""
        if self.settings.prelabel == "publish" and self.project_id is not None:
            self.services.journal.record(self.backend, self.project_id, "VERSION_PUBLISHED", {"version": version},
                                         kind="prelabel")

    def fit(self, event: str, data: dict[str, Any], *, job: JobReporter | None = None,
            events: Sequence[Event] = (), **kwargs: Any) -> dict[str, Any] | None:
        configure_ultralytics(self.services.settings.data_dir, self.settings.safe_globals)
        # here, not at the top: the server process (jobs run in the job process) never loads training code
        from .training import FineTuner

        return FineTuner(self, job).run()


@contextmanager
def _held(lock: threading.Lock, pacing: Pacing) -> Iterator[None]:
    """``lock``, waited for only as long as the request's budget allows (another video may hold
    the tracker for minutes); past it, ``VideoTooLong``, and the task goes to a job."""
    left = pacing.remaining_s()
    if not lock.acquire(timeout=-1 if left is None else max(left, 0.0)):
        assert pacing.budget_s is not None
        raise VideoTooLong(pacing.budget_s - (left or 0.0), 0, 0, pacing.budget_s)
    try:
        yield
    finally:
        lock.release()


def _group(plans: list[Plan]) -> dict[tuple[str, str], list[Plan]]:
    grouped: dict[tuple[str, str], list[Plan]] = {}
    for plan in plans:
        grouped.setdefault((plan.weights, plan.control.to_name), []).append(plan)
    return grouped
