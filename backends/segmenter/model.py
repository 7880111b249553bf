"""The segmenter backend: Segment Anything masks from clicks and boxes, embeddings ready early.

- Interactive ``/predict`` (smart tools): the labeler's points / box -> one mask for the chosen
  label, returned as ``BrushLabels`` and/or ``PolygonLabels``, whichever the config has.
- Non-interactive ``/predict`` (a task is opened): box pre-labels or annotations of the task
  (e.g. the detector's) become masks; a task without boxes gets its embedding computed in the
  background, so it is ready by the first click.
- ``TASKS_CREATED`` webhooks queue a durable prefetch job that embeds the new tasks' images.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Sequence
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import Counter, Histogram

from backends.core.downloads import local_weights
from backends.core.errors import LabelConfigError, LabelLoopError
from backends.core.media import LoadedImage
from backends.core.model import LabelLoopModel

from .build import get_engine
from .cache import EmbeddingCache
from .engine import Embedding, Prompt, SegmentEngine
from .prompts import parse_context
from .regions import brush_region, polygon_region
from .settings import SegmenterSettings

if TYPE_CHECKING:
    from backends.core.jobs import JobReporter
    from backends.core.journal import Event
    from backends.core.settings import CoreSettings

log = logging.getLogger(__name__)
OUTPUT_TAGS = ("BrushLabels", "PolygonLabels")
EMBEDDINGS = Counter("labelloop_sam_embeddings_total", "Embedding lookups by where they came from", ["source"])
MASKS = Counter("labelloop_sam_masks_total", "Masks decoded", ["kind"])
# The decoder's share of a click: a click's latency minus this is what the server adds (parsing,
# RLE, JSON, HTTP); bench/segmenter.py compares the two within one server process.
DECODE_SECONDS = Histogram("labelloop_sam_decode_seconds", "Mask decoder time per prompt", ["engine"],
                           buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0))


@lru_cache(maxsize=1)
def env_settings() -> SegmenterSettings:
    return SegmenterSettings()


class _ImageMeta:
    """URL -> (content sha256, width, height), LRU-bounded."""

    def __init__(self, size: int = 4096) -> None:
        self._items: OrderedDict[str, tuple[str, int, int]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, url: str) -> tuple[str, int, int] | None:
        with self._lock:
            found = self._items.get(url)
            if found is not None:
                self._items.move_to_end(url)
            return found

    def put(self, url: str, meta: tuple[str, int, int]) -> None:
        with self._lock:
            self._items[url] = meta
            self._items.move_to_end(url)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


_image_meta = _ImageMeta()
_caches: dict[str, EmbeddingCache] = {}
_caches_lock = threading.Lock()


def embedding_cache(services: Any, engine: SegmentEngine) -> EmbeddingCache:
    """One cache per process, engine and weights: an embedding is decoded only by the model that
    made it. The disk tier lives under DATA_DIR/sam-embeddings/<engine>, emptied when the weights
    change (cache.py)."""
    key = f"{engine.name}@{engine.weights_id}"
    with _caches_lock:
        if key not in _caches:
            settings = env_settings()
            _caches[key] = EmbeddingCache(
                settings.cache_mb * 1024 * 1024, services.settings.data_dir / "sam-embeddings" / engine.name,
                settings.disk_cache_mb * 1024 * 1024, weights=engine.weights_id, device=engine.device,
            )
        return _caches[key]


def engine_for(s: SegmenterSettings, core: CoreSettings) -> SegmentEngine:
    return get_engine(s.engine, s.model_type, s.runtime, local_checkpoint(s.checkpoint, core.model_dir / "downloads"),
                      s.allow_random, s.device, s.onnx_dir or core.data_dir / "sam-onnx")


def local_checkpoint(spec: str | None, downloads: Path) -> str | None:
    """``SAM_CHECKPOINT`` as a local file: a release name or URL is downloaded into the model store
    once (as the detector's weights are); offline, that is a 503 naming the setting."""
    if spec is None:
        return None
    try:
        return local_weights(spec, downloads)
    except LabelConfigError as exc:
        raise LabelLoopError(f"SAM_CHECKPOINT: {exc.message}", status=503) from None


class SegmenterModel(LabelLoopModel):
    backend = "segmenter"
    job_kinds = {"TASKS_CREATED": "prefetch"}  # Segment Anything is used as is: no training
    # The prefetch computes embeddings for this server's clicks: in a job process it would hold a
    # second SAM and hand its work over only through the disk tier, while a click meanwhile
    # computes the same embedding again instead of waiting for it (cache.py).
    jobs_in_child = False

    @cached_property
    def settings(self) -> SegmenterSettings:
        return env_settings()

    @property
    def base_version(self) -> str:
        """From the settings alone: /setup (Label Studio's Connect form) must not wait for weights."""
        s = self.settings
        return "-".join(["segmenter", s.engine, *([s.model_type] if s.model_type else [])])

    @cached_property
    def engine(self) -> SegmentEngine:
        return engine_for(self.settings, self.services.settings)

    @property
    def cache(self) -> EmbeddingCache:
        return embedding_cache(self.services, self.engine)

    @cached_property
    def outputs(self) -> list[Any]:
        images = {o.name for o in self.label_interface.objects if o.tag.lower() == "image"}
        if not images:
            raise LabelConfigError("the label config has no <Image>: the segmenter works on images")
        found = [c for c in self.label_interface.controls if c.tag in OUTPUT_TAGS and c.to_name and c.to_name[0] in images]
        if not found:
            raise LabelConfigError("the segmenter needs a <BrushLabels> or <PolygonLabels> control on an <Image>")
        return found

    @cached_property
    def images(self) -> list[str]:
        """The <Image> tags a mask control draws on, in config order (the first is the default)."""
        return list(dict.fromkeys(c.to_name[0] for c in self.outputs))

    def setup(self) -> None:
        self.outputs  # noqa: B018 - structural validation; SAM loads on first use

    @classmethod
    def warmup(cls, services: Any) -> None:
        s = env_settings()
        if s.checkpoint or s.allow_random:
            engine_for(s, services.settings)

    # -- embeddings -----------------------------------------------------------------------------
    def embedding_for(self, task: dict[str, Any], to_name: str) -> tuple[Embedding, int, int]:
        """The embedding of a task's image and the image's size. A warm click needs neither the
        pixels nor their hash again: both are remembered per URL (URLs are treated as immutable,
        as the media cache does), so it goes straight from the URL to the decoder."""
        url = self.image_url(task, to_name)
        known = _image_meta.get(url)
        if known is not None:
            embedding = self.cache.peek(known[0])
            if embedding is not None:
                EMBEDDINGS.labels("memory").inc()
                return embedding, known[1], known[2]
        image = self.services.media.load_image(url)
        _image_meta.put(url, (image.sha256, image.width, image.height))
        embedding, _ = self.embedding(image)
        return embedding, image.width, image.height

    def embedding(self, image: LoadedImage) -> tuple[Embedding, str]:
        embedding, source = self.cache.get_or_compute(
            image.sha256, lambda: self.engine.embed(np.asarray(image.image))
        )
        EMBEDDINGS.labels(source).inc()
        return embedding, source

    # -- predict --------------------------------------------------------------------------------
    def predict(self, tasks: list[dict[str, Any]], context: dict[str, Any] | None = None, **kwargs: Any) -> list[dict[str, Any]]:
        self.outputs  # noqa: B018 - a config the segmenter cannot serve is the request's 4xx, not each task's
        if context and context.get("result") is not None:
            return [self._interactive(tasks[0], context)] + [self.empty_prediction() for _ in tasks[1:]]
        outcomes = self.per_task(tasks, self._boxes_to_masks)
        return [o if isinstance(o, dict) else self.empty_prediction() for o in outcomes]

    def _interactive(self, task: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
        extreme = any((c.attr or {}).get("extreme_points") == "true" for c in self.label_interface.controls
                      if c.tag == "KeyPointLabels")
        if not context.get("result"):
            log.info("segmenter: task %s: context has no point or box region; nothing to segment", task.get("id"))
            return {**self.empty_prediction(), "score": 0.0}
        image = self._clicked_image(context)
        embedding, width, height = self.embedding_for(task, image)
        parsed = parse_context(context, width, height, extreme_points=extreme)
        if not parsed.prompt.points and parsed.prompt.box is None:
            raise LabelLoopError(f"all {parsed.outside} prompt regions lie outside the {width}x{height} image", status=422)
        targets = self._targets(parsed.label, image)
        mask, score = self.decode(embedding, parsed.prompt, self.settings.multimask)
        MASKS.labels("interactive").inc()
        log.debug("segmenter: task %s: mask of %d px", task.get("id"), int(mask.sum()))
        return self._prediction(mask, score, targets)

    def decode(self, embedding: Embedding, prompt: Prompt, multimask: bool) -> tuple[np.ndarray, float]:
        with DECODE_SECONDS.labels(self.engine.name).time():
            return self.engine.decode(embedding, prompt, multimask)

    def _clicked_image(self, context: dict[str, Any]) -> str:
        """The <Image> the prompt regions were drawn on: with several images in the config, segmenting
        another image's pixels, or drawing the mask on every image, would be wrong."""
        for item in context.get("result") or []:
            if isinstance(item, dict) and item.get("to_name") in self.images:
                return str(item["to_name"])
        return self.images[0]

    def _targets(self, label: str | None, image: str) -> list[tuple[Any, str]]:
        """(output control, label) pairs on ``image`` for the label the labeler chose."""
        targets = []
        for control in self.outputs:
            if control.to_name[0] != image:
                continue
            if label is None:
                targets.append((control, control.labels[0]))
            elif label in control.labels:
                targets.append((control, label))
        if not targets:
            known = sorted({lab for c in self.outputs for lab in c.labels})
            raise LabelConfigError(f"label {label!r} is not a label of the config's brush/polygon controls ({', '.join(known)})")
        return targets

    def _prediction(self, mask: np.ndarray, score: float, targets: Sequence[tuple[Any, str]]) -> dict[str, Any]:
        result = []
        for control, label in targets:
            if control.tag == "BrushLabels":
                result.append(brush_region(mask, control.name, control.to_name[0], label, score))
            else:
                region = polygon_region(mask, control.name, control.to_name[0], label, score, self.settings.polygon_tolerance)
                if region:
                    result.append(region)
        return {"result": result, "score": round(float(score), 4), "model_version": self.model_version}

    def _boxes_to_masks(self, task: dict[str, Any]) -> dict[str, Any]:
        boxes = [(image or self.images[0], value) for image, value in task_boxes(task)]
        boxes = [(image, value) for image, value in boxes if image in self.images]
        if not boxes:
            if self.settings.prefetch_on_open:
                prefetch_in_background(self, task)
            return self.empty_prediction()
        result: list[dict[str, Any]] = []
        scores = []
        for image, value in boxes:
            embedding, width, height = self.embedding_for(task, image)  # a memory hit after the first box
            x1, y1 = value["x"] * width / 100, value["y"] * height / 100
            x2, y2 = x1 + value["width"] * width / 100, y1 + value["height"] * height / 100
            label = (value.get("rectanglelabels") or [None])[0]
            try:
                targets = self._targets(label, image)
            except LabelConfigError:
                continue  # a box whose label has no mask counterpart
            mask, score = self.decode(embedding, Prompt([], [], (x1, y1, x2, y2)), False)
            MASKS.labels("box").inc()
            result.extend(self._prediction(mask, score, targets)["result"])
            scores.append(score)
        return {"result": result, "score": round(float(np.mean(scores)), 4) if scores else 0.0,
                "model_version": self.model_version}

    # -- prefetch jobs --------------------------------------------------------------------------
    def run_job(self, kind: str, events: Sequence[Event], job: JobReporter) -> dict[str, Any] | None:
        if kind != "prefetch":
            return super().run_job(kind, events, job)
        tasks = [t for e in events for t in (e.payload.get("tasks") or []) if isinstance(t, dict)]
        done = failed = 0
        for task in tasks:
            job.check_cancelled()
            try:
                for image in self.images:
                    self.embedding_for(task, image)
                done += 1
            except LabelLoopError as exc:
                failed += 1
                log.warning("segmenter: prefetch of task %s skipped: %s", task.get("id"), exc.message)
            job.progress(embedded=done, failed=failed, total=len(tasks))
        return {"embedded": done, "failed": failed, "tasks": len(tasks)}


def task_boxes(task: dict[str, Any]) -> list[tuple[str | None, dict[str, Any]]]:
    """(image tag, rectangle value) of the task's newest annotation, else of its predictions."""
    annotations = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
    sources = [annotations[-1]] if annotations else [p for p in task.get("predictions") or [] if isinstance(p, dict)]
    boxes = []
    for source in sources:
        for item in source.get("result") or []:
            if isinstance(item, dict) and item.get("type") == "rectanglelabels" and isinstance(item.get("value"), dict):
                value = item["value"]
                if all(isinstance(value.get(k), (int, float)) for k in ("x", "y", "width", "height")):
                    boxes.append((item.get("to_name") if isinstance(item.get("to_name"), str) else None, value))
    return boxes


_prefetch_queue: queue.Queue[tuple[SegmenterModel, dict[str, Any]]] = queue.Queue(maxsize=256)
_prefetch_thread: threading.Thread | None = None


def prefetch_in_background(model: SegmenterModel, task: dict[str, Any]) -> None:
    """Start embedding an opened task's image without making /predict wait for it."""
    global _prefetch_thread
    try:
        _prefetch_queue.put_nowait((model, task))
    except queue.Full:
        return
    if _prefetch_thread is None or not _prefetch_thread.is_alive():
        _prefetch_thread = threading.Thread(target=_prefetch_loop, name="sam-prefetch", daemon=True)
        _prefetch_thread.start()


def _prefetch_loop() -> None:
    while True:
        model, task = _prefetch_queue.get()
        try:
            for image in model.images:
                model.embedding_for(task, image)
        except Exception as exc:  # a prefetch failure only means the first click computes it
            log.warning("segmenter: background embedding of task %s failed: %s", task.get("id"), exc)
