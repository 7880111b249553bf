"""Jobs through Redis and RQ: the transport only. What a job does and how its outcome is recorded
is :mod:`backends.core.jobs`, the same in the embedded worker thread and in RQ workers; this module
only hands a project's work to RQ workers (``python -m backends.worker``) and re-sends lost work.

The functions RQ runs (:func:`rq_drain`, :func:`rq_help`) are enqueued by import path, so moving
or renaming them strands jobs already queued in Redis by an older version.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from .jobs import drain
from .journal import RUNNING, Journal
from .model import load_model_class

if TYPE_CHECKING:
    from .model import LabelLoopModel
    from .settings import CoreSettings

log = logging.getLogger(__name__)


class RQDispatcher:
    """Hands work to RQ workers (``python -m backends.worker``); a reaper re-sends lost work."""

    def __init__(self, journal: Journal, backend: str, model_path: str, redis_url: str, queue: str,
                 reap_s: float = 5.0) -> None:
        from redis import Redis
        from rq import Queue

        self.journal, self.backend, self.model_path = journal, backend, model_path
        self.queue = Queue(queue, connection=Redis.from_url(redis_url))
        self.reap_s = reap_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._reap, name=f"{self.backend}-rq-reaper", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def notify(self, job_id: int, project: int, attempts: int = 0) -> None:
        self.queue.enqueue(
            rq_drain, self.model_path, project,
            job_id=self._rq_id(job_id, project, attempts), job_timeout=-1, result_ttl=3600,
        )

    def _rq_id(self, job_id: int, project: int, attempts: int) -> str:
        # The attempt count is part of the id: after a worker died, the journal gives the job back
        # with attempts+1, and the RQ job of the dead attempt (still "started" in Redis) is not
        # mistaken for live work.
        return f"labelloop-{self.backend}-{project}-{job_id}-a{attempts}"

    def _reap(self) -> None:
        from rq.job import Job as RQJob
        from rq.job import JobStatus

        while not self._stop.wait(self.reap_s):
            try:
                self.journal.requeue_stale(self.backend)
                # a job waiting behind a running one is drained by that job's worker when it ends;
                # re-sending it would only fork RQ workers that find it blocked, every few seconds
                busy = {(j.project, j.kind) for j in self.journal.list_jobs(self.backend, state=RUNNING, limit=10_000)}
                for job in self.journal.pending_jobs(self.backend):
                    if (job.project, job.kind) in busy:
                        continue
                    rq_id = self._rq_id(job.id, job.project, job.attempts)
                    try:
                        status = RQJob.fetch(rq_id, connection=self.queue.connection).get_status()
                    except Exception:
                        status = None
                    if status not in (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED):
                        self.notify(job.id, job.project, job.attempts)
            except Exception:
                log.exception("%s: RQ reaper error", self.backend)


def ask_for_helpers(settings: CoreSettings, model: LabelLoopModel, board_dir: str, helpers: int) -> int:
    """Enqueue up to ``helpers`` RQ jobs that take chunks of a job's shared work (``core.shared_work``).
    Without Redis there is nobody to ask: the owner does every chunk itself. Returns how many were asked."""
    if not settings.redis_url or helpers <= 0:
        return 0
    from redis import Redis
    from rq import Queue

    path = f"{type(model).__module__}:{type(model).__qualname__}"
    asked = 0
    try:
        queue = Queue(settings.rq_queue, connection=Redis.from_url(settings.redis_url))
        for _ in range(helpers):
            queue.enqueue(rq_help, path, board_dir, job_timeout=-1, result_ttl=600, failure_ttl=3600)
            asked += 1
    except Exception as exc:  # Redis unreachable: the owner does the rest alone, as without Redis
        log.warning("%s: asked %d of %d RQ workers for help (%s); the rest is computed here", model.backend,
                    asked, helpers, exc)
    return asked


def rq_help(model_path: str, board_dir: str) -> int:
    """RQ job: help with a job's shared work. The board's plan names the project and its label config;
    the model computes whatever chunks are left. A board already finished is nothing to do."""
    from pathlib import Path

    from .services import Services
    from .settings import CoreSettings
    from .shared_work import BoardGone, ChunkBoard

    board = ChunkBoard(Path(board_dir))
    plan = board.plan()
    if plan is None:
        return 0
    model_class = load_model_class(model_path)
    services = Services.from_settings(CoreSettings())
    model = model_class(project_id=plan["project"], label_config=plan["label_config"], services=services,
                        extra_params=plan.get("extra_params"))
    try:
        return model.help_with(board)
    except BoardGone:
        return 0


def rq_drain(model_path: str, project: int) -> int:
    """RQ job: drain one project's work for the backend whose model class is ``model_path``."""
    from .services import Services
    from .settings import CoreSettings

    model_class = load_model_class(model_path)
    services = Services.from_settings(CoreSettings())
    return drain(services.journal, model_class.backend, lambda job: model_class.for_job(job, services),
                 project=project)
