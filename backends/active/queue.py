"""The active queue in Label Studio (open-source edition): predictions with a score, the project's
sampling, and Data Manager tabs.

Label Studio serves tasks lowest ``prediction.score`` first under "Uncertainty sampling", counting
only predictions whose ``model_version`` equals the project's ``model_version``
(``projects/functions/next_task.py``). So a scoring run writes one prediction per unlabeled task
under its own version string (``core.predictions.PredictionWriter``: bulk, retried, counted), then
points the project at that version. Predictions of earlier queue versions this backend wrote are
deleted once the new ones are in (one request per version), so the editor does not pile them up;
nobody else's predictions are touched.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from backends.core.predictions import PredictionWriter

QUEUE_TAB = "Active learning queue"
DISAGREE_TAB = "Model disagrees"
#: A queue re-scored under the same task model is updated in place when few scores moved (scores
#: are per task: an import adds some, moves none). When many moved, it goes to a new version
#: ``<version>~2``, ``~3``...: bulk-imported, then switched to, then the old one deleted, which is
#: ``N / BULK`` requests where updating in place would be one PATCH per task, and labelers never
#: see a half-updated order.
GENERATION_MARK = "~"


def generation(base: str, n: int) -> str:
    """The ``n``-th queue written for one (strategy, task model): ``base``, then ``base~2``, ..."""
    return base if n <= 1 else f"{base}{GENERATION_MARK}{n}"


def latest_generation(base: str, versions: Iterable[str]) -> int:
    """The highest generation of ``base`` among ``versions`` (1 when there is none)."""
    prefix = base + GENERATION_MARK
    return max([1] + [int(v[len(prefix):]) for v in versions if v.startswith(prefix) and v[len(prefix):].isdigit()])


class QueueWriter(PredictionWriter):
    """The queue's predictions, and what makes Label Studio serve by them."""

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
