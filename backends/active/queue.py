"""Writing the queue into Label Studio (open-source edition): predictions with a score, the
project's sampling, and Data Manager tabs.

Label Studio serves tasks lowest ``prediction.score`` first under "Uncertainty sampling", counting
only predictions whose ``model_version`` equals the project's ``model_version``
(``projects/functions/next_task.py``). So a scoring run writes one prediction per unlabeled task
under its own version string, then points the project at that version. Predictions of earlier
queue versions this backend wrote are deleted once the new ones are in (one request per version),
so the editor does not pile them up; nobody else's predictions are touched.

Only "this task is gone" (400/404 from Label Studio) skips a task; any other error (Label Studio
down, a refused token) fails the job, which the job queue retries when it may pass, rather than
counting every task as skipped and reporting success.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from label_studio_sdk import PredictionRequest

from backends.core.errors import http_status
from backends.core.labelstudio import LabelStudioClient

log = logging.getLogger(__name__)
QUEUE_TAB = "Active learning queue"
DISAGREE_TAB = "Model disagrees"
BULK = 200
#: A queue re-scored under the same task model is updated in place when few scores moved (scores
#: are per task: an import adds some, moves none). When many moved, it goes to a new version
#: ``<version>~2``, ``~3``...: bulk-imported, then switched to, then the old one deleted, which is
#: ``N / BULK`` requests where updating in place would be one PATCH per task, and labelers never
#: see a half-updated order.
GENERATION_MARK = "~"
#: Queue scores keep neighbours apart: 6 decimals would merge close values (and rank-based ones
#: beyond a million tasks).
SCORE_DECIMALS = 9


@dataclass
class QueueEntry:
    task_id: int
    score: float
    result: list[dict[str, Any]]


@dataclass
class _Work:
    """What writing a queue under one version takes, given the predictions already there."""

    creates: list[QueueEntry] = field(default_factory=list)
    updates: list[tuple[int, float]] = field(default_factory=list)  # (prediction id, new score)
    duplicates: list[int] = field(default_factory=list)  # prediction ids
    unchanged: int = 0


def generation(base: str, n: int) -> str:
    """The ``n``-th queue written for one (strategy, task model): ``base``, then ``base~2``, ..."""
    return base if n <= 1 else f"{base}{GENERATION_MARK}{n}"


def latest_generation(base: str, versions: Iterable[str]) -> int:
    """The highest generation of ``base`` among ``versions`` (1 when there is none)."""
    prefix = base + GENERATION_MARK
    return max([1] + [int(v[len(prefix):]) for v in versions if v.startswith(prefix) and v[len(prefix):].isdigit()])


def bulk_requests(n: int) -> int:
    """Bulk prediction imports needed for ``n`` new predictions."""
    return -(-n // BULK)


def own_predictions(task: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    """The task's predictions written by an active backend (their version starts with ``prefix``)."""
    return [p for p in task.get("predictions") or []
            if isinstance(p, dict) and str(p.get("model_version") or "").startswith(prefix)]


class QueueWriter:
    def __init__(self, ls: LabelStudioClient, project: int, version: str, prefix: str) -> None:
        self.ls, self.project, self.version, self.prefix = ls, project, version, prefix

    def write(self, entries: list[QueueEntry], tasks: dict[int, dict[str, Any]],
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

    def requests_needed(self, entries: list[QueueEntry], tasks: dict[int, dict[str, Any]]) -> int:
        """How many Label Studio requests :meth:`write` would send for ``entries`` under this version."""
        work = self._plan(entries, tasks)
        return len(work.duplicates) + len(work.updates) + bulk_requests(len(work.creates))

    def _plan(self, entries: list[QueueEntry], tasks: dict[int, dict[str, Any]]) -> "_Work":
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

    def _create(self, entries: list[QueueEntry]) -> int:
        requests = [PredictionRequest(task=e.task_id, result=e.result, score=e.score, model_version=self.version)
                    for e in entries]
        try:
            self.ls.sdk.projects.import_predictions(self.project, request=requests)
            return len(entries)
        except Exception as exc:  # one deleted task fails the whole bulk call: retry one by one
            if not task_gone(exc):
                raise
            log.info("active: bulk prediction import refused (%s); writing one by one", _short(exc))
        created = 0
        for request in requests:
            try:
                self.ls.sdk.predictions.create(task=request.task, result=request.result, score=request.score,
                                               model_version=self.version)
                created += 1
            except Exception as exc:
                if not task_gone(exc):
                    raise
                log.warning("active: task %s skipped (deleted meanwhile): %s", request.task, _short(exc))
        return created

    def _update(self, prediction_id: int, score: float) -> bool:
        try:
            self.ls.sdk.predictions.update(prediction_id, score=score)
            return True
        except Exception as exc:
            if not task_gone(exc):
                raise
            log.warning("active: prediction %s not updated (deleted meanwhile): %s", prediction_id, _short(exc))
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

    def serve_by_score(self) -> None:
        """Uncertainty sampling over this version's predictions (the API accepts it; the OSS UI
        offers only sequential and random)."""
        self.ls.sdk.projects.update(self.project, sampling="Uncertainty sampling", model_version=self.version)

    def ensure_tab(self, title: str, *, ordering: list[str], filters: dict[str, Any]) -> int:
        """Create or update the Data Manager tab called ``title``; returns its id. An existing tab keeps
        what a user set on it (hidden columns, widths): Label Studio stores ``data`` as sent, so only
        our three fields are replaced in it."""
        data = {"title": title, "ordering": ordering, "filters": filters}
        for view in self.ls.sdk.views.list(project=self.project):
            view_data = getattr(view, "data", None) or {}
            if not isinstance(view_data, dict):
                view_data = view_data.model_dump() if hasattr(view_data, "model_dump") else {}
            if view_data.get("title") == title:
                self.ls.sdk.views.update(str(view.id), data={**view_data, **data}, project=self.project)
                return int(view.id)
        return int(self.ls.sdk.views.create(data=data, project=self.project).id)


def unlabeled_filter() -> dict[str, Any]:
    return {"conjunction": "and", "items": [
        {"filter": "filter:tasks:total_annotations", "operator": "equal", "type": "Number", "value": 0}]}


def task_ids_filter(task_ids: list[int]) -> dict[str, Any]:
    """Exactly these tasks; none at all for an empty list (a filter without items shows every task)."""
    return {"conjunction": "or", "items": [
        {"filter": "filter:tasks:id", "operator": "equal", "type": "Number", "value": int(t)}
        for t in (task_ids or [-1])]}


def task_gone(exc: Exception) -> bool:
    """Label Studio's answer for a task or prediction deleted meanwhile: 404, or 400 from a bulk
    import naming a task that no longer exists."""
    return http_status(exc) in (400, 404)


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) < 300 else text[:300] + "..."
