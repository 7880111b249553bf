"""Writing predictions into Label Studio in bulk: one prediction per task under one model version.

Shared by the active backend's queue (``backends.active.queue``) and the detector's whole-project
pre-labels (``backends.detector.prelabel``), so both size, retry and count their writes alike:
- new predictions go in bulk imports of ``BULK`` (``POST /api/projects/{id}/import/predictions``):
  one request per 200 where creating them one by one was 200; with Label Studio's flag
  ``fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short`` each import costs the
  same however many predictions the project holds (``bench/queue_scale.py``);
- a task that already carries a prediction of the version is updated only if its score moved, and
  extra predictions of the version on one task (a retried bulk import) are deleted;
- only "this task is gone" (400/404 from Label Studio) skips a task; any other error (Label Studio
  down, a refused token) fails the job, which the job queue retries when it may pass, rather than
  counting every task as skipped and reporting success.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from label_studio_sdk import PredictionRequest

from .errors import http_status

if TYPE_CHECKING:
    from .labelstudio import LabelStudioClient

log = logging.getLogger(__name__)
BULK = 200
#: a bulk import may take this many times the slowest one so far before it is given up on
BULK_TIMEOUT_FACTOR = 4
#: Scores keep neighbours apart: 6 decimals would merge close values (and rank-based ones beyond
#: a million tasks).
SCORE_DECIMALS = 9
#: the slowest bulk import measured in this process, per (Label Studio URL, project)
_SLOWEST_BULK_S: dict[tuple[str, int], float] = {}
_SLOWEST_LOCK = threading.Lock()


@dataclass
class TaskPrediction:
    """One task's prediction to write: its regions (Label Studio's ``result``) and score."""

    task_id: int
    score: float
    result: list[dict[str, Any]]


@dataclass
class _Work:
    """What writing predictions under one version takes, given the predictions already there."""

    creates: list[TaskPrediction] = field(default_factory=list)
    updates: list[tuple[int, float]] = field(default_factory=list)  # (prediction id, new score)
    duplicates: list[int] = field(default_factory=list)  # prediction ids
    unchanged: int = 0


def bulk_requests(n: int) -> int:
    """Bulk prediction imports needed for ``n`` new predictions."""
    return -(-n // BULK)


def own_predictions(task: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    """The task's predictions whose version starts with ``prefix`` (a backend's own)."""
    return [p for p in task.get("predictions") or []
            if isinstance(p, dict) and str(p.get("model_version") or "").startswith(prefix)]


class PredictionWriter:
    """Predictions of one model ``version`` in one project; ``prefix`` marks the versions its writer
    owns (``active-``, ``detector-``): only those are ever read back as its own or deleted."""

    def __init__(self, ls: LabelStudioClient, project: int, version: str, prefix: str) -> None:
        self.ls, self.project, self.version, self.prefix = ls, project, version, prefix

    def _bulk_timeout(self) -> float:
        """The wait for one bulk import. Label Studio without its linear-import flag recounts the
        whole project after each one, so each call is slower than the last (measured at 32,000
        tasks: 2.3 s at the first call, past 30 s by the 60th): the wait follows the slowest call so
        far rather than a fixed client timeout that a growing project outruns. "So far" is this
        process's, per Label Studio and project, not this writer's: the next job's first import
        (a re-score, a retry) is as slow as the last one was (measured: a re-score's first call cut
        at 30 s when the calls before it took 30 s)."""
        return max(self.ls.timeout, BULK_TIMEOUT_FACTOR * _SLOWEST_BULK_S.get(self._key, 0.0))

    @property
    def _key(self) -> tuple[str, int]:
        return (self.ls.url, self.project)

    def _measured(self, seconds: float) -> None:
        with _SLOWEST_LOCK:
            _SLOWEST_BULK_S[self._key] = max(_SLOWEST_BULK_S.get(self._key, 0.0), seconds)

    def write(self, entries: list[TaskPrediction], tasks: dict[int, dict[str, Any]],
              progress: Callable[[int], None] | None = None) -> dict[str, int]:
        """Create or update one prediction per entry; returns counts (created, updated, unchanged,
        skipped: tasks that disappeared meanwhile, duplicates: extra predictions of this version
        removed, e.g. from a retried bulk import, since Label Studio orders by any of them)."""
        work = self._plan(entries, tasks)
        counts = {"created": 0, "updated": 0, "unchanged": work.unchanged, "skipped": 0, "duplicates": 0}
        for prediction_id in work.duplicates:
            counts["duplicates"] += self._delete(prediction_id)
        for prediction_id, score in work.updates:
            counts["updated" if self._update(prediction_id, score) else "skipped"] += 1
        for start in range(0, len(work.creates), BULK):
            chunk = work.creates[start:start + BULK]
            created = self._create(chunk)
            counts["created"] += created
            counts["skipped"] += len(chunk) - created
            if progress:
                progress(start + len(chunk))
        return counts

    def requests_needed(self, entries: list[TaskPrediction], tasks: dict[int, dict[str, Any]]) -> int:
        """How many Label Studio requests :meth:`write` would send for ``entries`` under this version."""
        work = self._plan(entries, tasks)
        return len(work.duplicates) + len(work.updates) + bulk_requests(len(work.creates))

    def _plan(self, entries: list[TaskPrediction], tasks: dict[int, dict[str, Any]]) -> _Work:
        work = _Work()
        for entry in entries:
            current = [p for p in own_predictions(tasks.get(entry.task_id, {}), self.prefix)
                       if p.get("model_version") == self.version and p.get("id") is not None]
            work.duplicates.extend(extra["id"] for extra in current[1:])
            if not current:
                work.creates.append(entry)
            elif abs(float(current[0].get("score") or 0) - entry.score) > 0.5 * 10 ** -SCORE_DECIMALS:
                work.updates.append((current[0]["id"], entry.score))
            else:
                work.unchanged += 1
        return work

    def _create(self, entries: list[TaskPrediction]) -> int:
        requests = [PredictionRequest(task=e.task_id, result=e.result, score=e.score, model_version=self.version)
                    for e in entries]
        started = time.monotonic()
        try:
            self.ls.sdk.projects.import_predictions(self.project, request=requests,
                                                    request_options={"timeout": self._bulk_timeout()})
            self._measured(time.monotonic() - started)
            return len(entries)
        except Exception as exc:  # one deleted task fails the whole bulk call: retry one by one
            if not task_gone(exc):
                raise
            log.info("bulk prediction import refused (%s); writing one by one", _short(exc))
        created = 0
        for request in requests:
            try:
                self.ls.sdk.predictions.create(task=request.task, result=request.result, score=request.score,
                                               model_version=self.version)
                created += 1
            except Exception as exc:
                if not task_gone(exc):
                    raise
                log.warning("task %s skipped (deleted meanwhile): %s", request.task, _short(exc))
        return created

    def _update(self, prediction_id: int, score: float) -> bool:
        try:
            self.ls.sdk.predictions.update(prediction_id, score=score)
            return True
        except Exception as exc:
            if not task_gone(exc):
                raise
            log.warning("prediction %s not updated (deleted meanwhile): %s", prediction_id, _short(exc))
            return False

    def _delete(self, prediction_id: int) -> int:
        try:
            self.ls.sdk.predictions.delete(prediction_id)
            return 1
        except Exception as exc:
            if not task_gone(exc):
                raise
            return 0

    def delete_versions(self, versions: Iterable[str], at_most: int = 0) -> dict[str, int]:
        """Delete every prediction of each of ``versions`` (this backend's older queues) in the
        project, one request per version; never the current one. Returns the count per version.
        ``at_most``: predictions a version may hold (one per task), which sizes each request's wait."""
        return {v: self.ls.delete_model_version(self.project, v, at_most=at_most)
                for v in versions if v and v != self.version}


def task_gone(exc: Exception) -> bool:
    """Label Studio's answer for a task or prediction deleted meanwhile: 404, or 400 from a bulk
    import naming a task that no longer exists."""
    return http_status(exc) in (400, 404)


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) < 300 else text[:300] + "..."
