"""The prelabel job: the serving version's pre-labels for a project's tasks, written into Label
Studio in bulk, so tasks show them without being opened.

Label Studio's own "Retrieve predictions" sends the selection to ``/predict`` in one request and
times out on large ones (label-studio #6330, #6422, #9098); this job is the background path:
1. list the project's tasks (``tasks`` given: those; else every unlabeled one), skipping those
   that already carry the version, so a restarted job goes on where it stopped, and at most
   ``prelabel_max_tasks`` of them (the lowest ids first: the order Label Studio lists them in);
2. the same pre-labels as ``/predict`` (``DetectorModel.task_regions``), in batches of
   ``PREDICT_BATCH``, written in bulk imports of ``BULK`` by the writer the active queue uses
   (``core.predictions.PredictionWriter``);
   seconds per stage (list, predict with its image loads, write) in the result's ``timings``;
   progress (done, total, tasks/s, ETA) in ``GET /jobs/<id>`` and ``/metrics``, cancellable
   between batches; a task whose image does not load, or deleted meanwhile, is skipped and counted;
3. the project's ``model_version`` (which predictions the labeling stream shows) set to the
   version, unless it names another backend's (the active queue's ``active-...``, a user's upload):
   then it is left, and the result says so.

Runs after each published version (``prelabel=publish``, the default) and on
``POST /jobs {"project": N, "kind": "prelabel", "tasks": [ids]}``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from backends.core.errors import LabelLoopError, http_status, raise_if_outage
from backends.core.jobs import JobCancelled, NoJob
from backends.core.labelstudio import is_labeled
from backends.core.predictions import BULK, PredictionWriter, TaskPrediction
from backends.core.timings import Timings

from .video import Pacing

if TYPE_CHECKING:
    from backends.core.jobs import JobReporter
    from backends.core.journal import Event

    from .model import DetectorModel

log = logging.getLogger(__name__)
VERSION_PREFIX = "detector-"
#: tasks per inference call of the job: progress and cancellation between them (the model itself
#: runs them in its own inference groups, see ``DetectorModel.inference_group``)
PREDICT_BATCH = 16


class Prelabeler:
    """One prelabel run over a project; ``events`` are the job's (none: every unlabeled task).
    Plain Python over a ``DetectorModel``: a notebook can run it with ``job=None``."""

    def __init__(self, detector: DetectorModel, job: JobReporter | None, events: Sequence[Event] = ()) -> None:
        self.detector, self.job, self.events = detector, job if job is not None else NoJob(), list(events)
        self.ls = detector.services.ls
        self.timings = Timings()  # listing, predicting (image loads included), writing: in the result
        self._logged_at = 0.0  # when progress last reached the log: once every PROGRESS_LOG_S

    def run(self) -> dict[str, Any]:
        started = time.time()
        version = self.detector.serving_version()
        asked = asked_tasks(self.events)
        with self.timings("list"):
            listed = self._listed(asked)
        todo = [t for t in listed if not carries(t, version)]
        capped = todo[self.detector.settings.prelabel_max_tasks:]
        todo = todo[:self.detector.settings.prelabel_max_tasks]
        counts, superseded = self._write(version, todo, started)
        already = len(listed) - len(todo) - len(capped)
        carried = already + counts["created"] + counts["updated"] + counts["unchanged"]
        missing = sorted(asked - {int(t["id"]) for t in listed}) if asked else []  # deleted, or never there
        summary = {"version": version, "listed": len(listed), "already": already, "capped": len(capped), **counts,
                   "missing": missing, "superseded_by": superseded,
                   "project_model_version": self._point_project(version, carried) if not superseded else None,
                   "seconds": round(time.time() - started, 2), "timings": dict(self.timings)}
        if superseded:  # a rollback or an upload mid-run: the rest is the new version's, in a job of its own
            self.detector.services.journal.record(self.detector.backend, self.detector.project, "VERSION_CHANGED",
                                                  {"version": superseded}, kind="prelabel")
        log.info("detector project %s: pre-labeled %d task(s) with %s (%d skipped, %d already had it)%s",
                 self.detector.project_id, counts["created"] + counts["updated"], version,
                 counts["skipped"] + counts["unloadable"], already,
                 f"; stopped: {superseded} serves now" if superseded else "")
        return summary

    def _listed(self, asked: set[int] | None) -> list[dict[str, Any]]:
        """The tasks asked for (read over their id range only), else every unlabeled task."""
        if asked is None:
            return [t for t in self.ls.iter_tasks(self.detector.project) if not is_labeled(t)]
        if not asked:
            return []
        return [t for t in self.ls.iter_tasks(self.detector.project, after=min(asked) - 1, until=max(asked))
                if int(t["id"]) in asked]

    def _write(self, version: str, todo: list[dict[str, Any]], started: float) -> tuple[dict[str, int], str | None]:
        """Predict ``PREDICT_BATCH`` tasks at a time (progress and cancellation between them), write
        in bulk imports of ``BULK``: a crash loses at most the predictions not yet written, a
        cancel none. Returns the counts, and the version that took over if the serving one changed
        mid-run (its predictions are not written under the old name)."""
        writer = PredictionWriter(self.ls, self.detector.project, version, VERSION_PREFIX)
        counts = {"created": 0, "updated": 0, "unchanged": 0, "skipped": 0, "duplicates": 0, "unloadable": 0}
        pending: list[TaskPrediction] = []
        try:
            for start in range(0, len(todo), PREDICT_BATCH):
                self.job.check_cancelled()
                batch = todo[start:start + PREDICT_BATCH]
                self._predict_batch(writer, version, batch, pending, counts)
                self._progress(len(todo), start + len(batch), started)
        except _Superseded as taken_over:
            self._flush(writer, pending, counts)
            return counts, taken_over.version
        except JobCancelled:
            self._flush(writer, pending, counts)  # what was predicted is kept
            raise
        self._flush(writer, pending, counts)
        return counts, None

    def _predict_batch(self, writer: PredictionWriter, version: str, batch: list[dict[str, Any]],
                       pending: list[TaskPrediction], counts: dict[str, int]) -> None:
        """Predict ``batch`` into ``pending``, written (and emptied) once it holds ``BULK``.
        Raises ``_Superseded`` when another version serves now."""
        with self.timings("predict"):
            # no time limit on a video here (the reason long ones come to this job); its frames are progress
            serving, regions = self.detector.task_regions(batch, alone=False, pacing=Pacing(report=self._frames))
        if serving != version:
            raise _Superseded(serving)
        errors = [r for r in regions if isinstance(r, LabelLoopError)]
        raise_if_outage(errors, len(batch), "a batch")
        pending.extend(TaskPrediction(int(task["id"]), score_of(found), found)
                       for task, found in zip(batch, regions) if isinstance(found, list))
        counts["unloadable"] += len(errors)
        if len(pending) >= BULK:
            self._flush(writer, pending, counts)
            pending.clear()

    def _flush(self, writer: PredictionWriter, entries: list[TaskPrediction], counts: dict[str, int]) -> None:
        """Write ``entries`` against their tasks read again just now: a labeler who opened one
        meanwhile had Label Studio ask ``/predict`` and store its answer (the writer then counts it
        ``unchanged`` instead of writing a second, identical prediction), and a task deleted
        meanwhile is ``skipped``."""
        if not entries:
            return
        with self.timings("write"):
            ids = [e.task_id for e in entries]
            now = {int(t["id"]): t for t in self.ls.iter_tasks(self.detector.project, after=min(ids) - 1,
                                                                until=max(ids))}
            for key, value in writer.write(entries, now).items():
                counts[key] += value

    def _point_project(self, version: str, carried: int) -> dict[str, Any]:
        """Make the editor show ``version``'s predictions: Label Studio's labeling stream shows a
        task's predictions of the project's ``model_version`` only. Another backend's choice there
        (the active queue's version, whose predictions carry this detector's regions too, or a
        user's uploaded predictions) is left as it is; so is a version no task ``carried`` (Label
        Studio refuses one it has no prediction of)."""
        current = self.ls.get_project(self.detector.project).get("model_version") or ""
        if carried <= 0:
            return {"value": current, "changed": False, "note": f"no task carries {version} yet: left as it is"}
        if not self._ours(current):
            return {"value": current, "changed": False,
                    "note": f"the project shows predictions of {current!r} (another backend's): left as it is"}
        if current != version:
            try:
                self.ls.sdk.projects.update(self.detector.project, model_version=version)
            except Exception as exc:
                if http_status(exc) != 400:
                    raise
                # every task carrying it was deleted (or its predictions) since it was written
                return {"value": current, "changed": False, "note": f"Label Studio refused {version}: {exc}"[:300]}
        return {"value": version, "changed": current != version}

    def _ours(self, model_version: str) -> bool:
        """Empty, a detector version, or the title of a connected ML backend that reports a detector
        version: Label Studio puts a backend's title there when it is connected."""
        if not model_version or model_version.startswith(VERSION_PREFIX):
            return True
        backends = self.ls.sdk.ml.list(project=self.detector.project_id)
        return any(b.title == model_version and str(b.model_version or "").startswith(VERSION_PREFIX) for b in backends)

    def _frames(self, done: int, total: int) -> None:
        """A video's tracking progress (about once a second): in ``GET /jobs/<id>``, cancellable."""
        self.job.progress(video_frames_done=done, video_frames_total=total)
        self.job.check_cancelled()

    def _progress(self, total: int, done: int, started: float) -> None:
        now = time.time()
        rate = done / max(now - started, 1e-6)
        eta = round((total - done) / rate, 1) if rate else None
        self.job.progress(stage="pre-labeling", done=done, total=total, tasks_per_s=round(rate, 2), eta_s=eta)
        if now - self._logged_at >= PROGRESS_LOG_S or done >= total:  # an operator tailing the log sees it move
            self._logged_at = now
            log.info("detector project %s: pre-labeling %d/%d task(s), %.2f/s, ETA %s s", self.detector.project_id,
                     done, total, rate, eta)


#: seconds between two progress lines in the log (GET /jobs/<id> and /metrics get every batch)
PROGRESS_LOG_S = 30.0


class _Superseded(Exception):
    """Another version serves now: the rest of the run is its own job's."""

    def __init__(self, version: str) -> None:
        super().__init__(version)
        self.version = version


def asked_tasks(events: Sequence[Any]) -> set[int] | None:
    """The task ids the job's requests named; None when one of them (or a publish) asked for all."""
    if not events:
        return None
    asked: set[int] = set()
    for event in events:
        tasks = event.payload.get("tasks")
        if tasks is None:
            return None
        asked.update(int(t) for t in tasks)
    return asked


def carries(task: dict[str, Any], version: str) -> bool:
    return any(isinstance(p, dict) and p.get("model_version") == version for p in task.get("predictions") or [])


def score_of(regions: list[dict[str, Any]]) -> float:
    """The prediction's score: its regions' mean (as ``/predict`` gives it), 0 with none."""
    scores = [r["score"] for r in regions if "score" in r]
    return round(sum(scores) / len(scores), 4) if scores else 0.0
