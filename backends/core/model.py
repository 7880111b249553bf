"""Base class of every backend's model, keeping the label-studio-ml v2 contract.

``setup()``, ``predict(tasks, context=None, **kwargs)`` and ``fit(event, data, **kwargs)`` mean what
they mean upstream, so people who wrote a backend before feel at home. A model object is cheap
and made per request (it knows its project and label config); anything heavy (weights) must be
loaded lazily and cached at module level by the subclass, never in ``__init__`` or ``setup()``,
because Label Studio gives ``/setup`` only 3 seconds.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable, Sequence
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from label_studio_sdk.label_interface import LabelInterface

from .errors import LabelConfigError, LabelLoopError, MediaError, NotFound
from .extra_params import parse_extra_params
from .media import LoadedImage, storage_url
from .registry import ModelRegistry
from .services import Services

if TYPE_CHECKING:
    from typing import Self

    from .jobs import JobReporter
    from .journal import Event, Job, Journal

log = logging.getLogger(__name__)
T = TypeVar("T")

TRAINING_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED", "START_TRAINING")


@lru_cache(maxsize=64)
def parse_label_config(config: str) -> LabelInterface:
    """Parsed once per distinct config: a model object is made per request, and parsing the XML
    each time cost more than the rest of the server's /predict overhead (bench/protocol.py).
    Callers must treat the result as read-only."""
    try:
        return LabelInterface(config)
    except Exception as exc:  # the SDK raises assorted XML and key errors
        raise LabelConfigError(f"the label config cannot be parsed: {exc}") from None


def load_model_class(path: str) -> type[LabelLoopModel]:
    """The model class a worker (RQ, the job process) is named as ``module:QualName``: workers import
    the backend themselves, by path."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def importable(model_path: str, model_class: type) -> bool:
    """Whether another process importing ``model_path`` gets ``model_class`` (not so for a class
    defined in ``__main__``, a notebook or a function): only then can a worker run its jobs."""
    try:
        return load_model_class(model_path) is model_class
    except (ImportError, AttributeError):
        return False


def newest_label_config(journal: Journal, job: Job) -> str | None:
    """The label config of the newest of a job's events that carries its project (None: none does)."""
    for event in reversed(journal.events_for(job.id)):
        project = event.payload.get("project")
        if isinstance(project, dict) and isinstance(project.get("label_config"), str):
            return project["label_config"]
    return None


class LabelLoopModel:
    #: The backend's name: metrics label, model store folder, version prefix.
    backend: ClassVar[str] = "base"
    #: Webhook action -> background job kind. Actions not listed are acknowledged and ignored.
    job_kinds: ClassVar[dict[str, str]] = {action: "train" for action in TRAINING_ACTIONS}
    #: Job kinds no webhook starts, only ``POST /jobs`` (or the backend itself, e.g. after a publish).
    requested_kinds: ClassVar[tuple[str, ...]] = ()
    #: Whether ``JOB_RUNNER=process`` runs this backend's jobs in the job process. A backend whose jobs
    #: only fill the server's own memory (the segmenter's embedding prefetch) keeps them in a thread.
    jobs_in_child: ClassVar[bool] = True
    #: Seconds between calls of :meth:`watch` in the server (None: the backend watches nothing).
    watch_interval_s: ClassVar[float | None] = None

    def __init__(
        self,
        *,
        project_id: int | None,
        label_config: str | None,
        services: Services,
        extra_params: dict[str, Any] | str | None = None,
    ) -> None:
        self.project_id = project_id
        self.label_config = label_config
        self.services = services
        # any shape Label Studio stores (its Connect Model form saves a string): see extra_params.py
        self.extra_params = parse_extra_params(extra_params)
        #: tasks this request left to a background job (``{"task", "job", "reason"}``): their entry in
        #: ``predict``'s answer is an empty list (Label Studio then stores no prediction for them)
        self.deferred: list[dict[str, Any]] = []

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    def for_project(cls, project: int | None, services: Services, *, label_config: str | None = None,
                    overrides: dict[str, Any] | None = None) -> Self:
        """The one way to build a model for a project outside a plain notebook call: as the project's
        last ``/setup`` left it (its label config unless ``label_config`` is given, its extra params
        with ``overrides`` on top). The server, the job workers, the watcher and the CLI all build
        through here, so none of them can rank or train with other settings than the others."""
        setup = services.journal.get_setup(cls.backend, project) if project is not None else None
        stored = setup.extra_params if setup else {}
        return cls(project_id=project, label_config=label_config or (setup.label_config if setup else None),
                   services=services, extra_params={**stored, **(overrides or {})} or None)

    @classmethod
    def for_job(cls, job: Job, services: Services) -> Self:
        """The model a background job runs with: the newest label config its events carry (a
        PROJECT_UPDATED or annotation webhook sent after the last ``/setup``), else the stored one."""
        return cls.for_project(job.project, services, label_config=newest_label_config(services.journal, job))

    # -- label config ---------------------------------------------------------------------------
    @cached_property
    def label_interface(self) -> LabelInterface:
        if not self.label_config or not isinstance(self.label_config, str):
            raise LabelConfigError("the request carries no label config")
        return parse_label_config(self.label_config)

    @property
    def project(self) -> int:
        """The project id, for code that only runs for a project (jobs, versions, pre-labels); a
        model built without one (a notebook's, a /predict that names none) cannot run it."""
        if self.project_id is None:
            raise LabelLoopError(f"the {self.backend} backend needs a project for this; the model has none")
        return self.project_id

    # -- versions -------------------------------------------------------------------------------
    @property
    def project_registry(self) -> ModelRegistry:
        """:attr:`registry` for code that only runs for a project (training, scoring)."""
        return self.services.registry(self.backend, self.project)

    @cached_property
    def registry(self) -> ModelRegistry | None:
        if self.project_id is None:
            return None
        return self.services.registry(self.backend, self.project_id)

    @property
    def base_version(self) -> str:
        """What predictions carry before any version was published for the project."""
        return f"{self.backend}-base"

    @property
    def model_version(self) -> str:
        current = self.registry.current_name() if self.registry else None
        return current or self.base_version

    @classmethod
    def warmup(cls, services: Services) -> None:
        """Load heavy things in the background when a server starts (never inside /setup)."""

    # -- the v2 contract ------------------------------------------------------------------------
    def setup(self) -> None:
        """Validate the project's label config cheaply. Must not load weights."""
        self.label_interface  # noqa: B018 - parse errors surface here

    def predict(self, tasks: list[dict[str, Any]], context: dict[str, Any] | None = None,
                **kwargs: Any) -> Sequence[dict[str, Any] | list[dict[str, Any]]]:
        """One entry per task: its prediction, or a list of predictions (Label Studio's protocol
        allows several; an empty one stores none, see ``deferred``)."""
        raise NotImplementedError

    def fit(self, event: str, data: dict[str, Any], *, job: JobReporter | None = None,
            events: Sequence[Event] = (), **kwargs: Any) -> dict[str, Any] | None:
        """Train on the project's annotations. ``event``/``data`` are the newest webhook, as upstream;
        ``events`` all those the job coalesced, ``job`` what reports progress and cancels (None: a
        plain call from a notebook, which nothing cancels)."""
        return None

    def run_job(self, kind: str, events: Sequence[Event], job: JobReporter) -> dict[str, Any] | None:
        """Entry point of the background queue. ``train`` jobs call ``fit`` as upstream does."""
        if kind == "train":
            last = events[-1]
            return self.fit(last.action, last.payload, events=list(events), job=job)
        raise LabelLoopError(f"{self.backend} has no job kind {kind!r}")

    def help_with(self, board: Any) -> int:
        """Take chunks of a job's shared work (``core.shared_work``) and compute them; returns how many.
        Backends whose jobs share nothing never receive helpers."""
        raise LabelLoopError(f"{self.backend} shares no work with helpers")

    def report(self) -> dict[str, Any]:
        """A project report the backend keeps (``GET /report?project=N``)."""
        raise NotFound(f"the {self.backend} backend keeps no project report")

    @classmethod
    def watch(cls, services: Services) -> None:
        """Called every ``watch_interval_s`` by the server: notice outside changes and queue jobs."""

    def import_version(self, *, path: str | None = None, upload: Any = None, name_hint: str | None = None) -> Any:
        raise LabelLoopError(f"the {self.backend} backend does not accept externally trained weights", status=405)

    # -- helpers for subclasses -----------------------------------------------------------------
    @staticmethod
    def dedup_key(action: str, payload: dict[str, Any]) -> str | None:
        """Key under which a re-sent identical webhook is recognised and dropped."""
        annotation = payload.get("annotation")
        if action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED") and isinstance(annotation, dict):
            if annotation.get("id") is not None:
                return f"{action}:{annotation.get('id')}:{annotation.get('updated_at')}"
        return None

    @staticmethod
    def region(sdk_region: Any, *, width: int, height: int, score: float | None = None) -> dict[str, Any]:
        """An SDK ``Region`` as a result dict with the image size (and score) Label Studio expects."""
        result = json.loads(sdk_region.to_json())
        result.update(original_width=width, original_height=height, image_rotation=0)
        if score is not None:
            result["score"] = float(score)
        return result

    def empty_prediction(self) -> dict[str, Any]:
        return {"result": [], "model_version": self.model_version}

    def per_task(
        self, tasks: Sequence[dict[str, Any]], fn: Callable[[dict[str, Any]], T], *, alone: bool | None = None
    ) -> list[T | LabelLoopError]:
        """Apply ``fn`` to each task, keeping input errors per task instead of failing the batch.

        With a single task (``alone``: the request's only task; by default, when ``tasks`` has one)
        the error is raised, so the caller gets a 4xx naming the problem; in a batch the failed task
        gets an empty prediction and the reason is logged.
        """
        out: list[T | LabelLoopError] = []
        alone = len(tasks) == 1 if alone is None else alone
        for task in tasks:
            try:
                out.append(fn(task))
            except LabelLoopError as exc:
                if alone:
                    raise
                log.warning("%s: task %s skipped: %s", self.backend, task.get("id"), exc.message)
                out.append(exc)
        return out

    def image_url(self, task: dict[str, Any], object_name: str | None = None) -> str:
        """The URL of the task's image for the config's ``<Image>`` tag (first one if unnamed)."""
        return self.media_url(task, object_name, "image")

    def media_url(self, task: dict[str, Any], object_name: str | None, kind: str) -> str:
        """The URL in the task's data for the config's ``<Image>`` or ``<Video>`` tag (``kind``)
        named ``object_name`` (the first of that kind if unnamed); cloud URIs go through Label Studio."""
        objects = [o for o in self.label_interface.objects if o.tag.lower() == kind]
        if not objects:
            raise LabelConfigError(f"the label config has no <{kind.title()}> tag; this backend works on {kind}s")
        obj = next((o for o in objects if o.name == object_name), objects[0])
        key = obj.value_name
        data = task.get("data")
        if not isinstance(data, dict) or key not in data:
            raise MediaError(f"task {task.get('id')} has no data.{key} (the <{obj.tag}> tag's value ${key})")
        if not isinstance(data[key], str) or not data[key]:
            raise MediaError(f"task {task.get('id')} data.{key} is {type(data[key]).__name__} {str(data[key])[:80]!r}, "
                             f"not {'an image' if kind == 'image' else 'a video'} URL")
        return storage_url(data[key], task.get("id"))

    def load_task_image(self, task: dict[str, Any], object_name: str | None = None) -> LoadedImage:
        return self.services.media.load_image(self.image_url(task, object_name))
