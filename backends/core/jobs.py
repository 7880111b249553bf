"""Running journaled jobs: the same code in the embedded worker thread and in RQ workers.
This module knows nothing of Redis: handing work to RQ is :mod:`backends.core.rq_jobs`.

Whoever runs work calls :func:`drain`: claim a ready pending job from the journal, run it with a
heartbeat, record the outcome, repeat. Claims are atomic in the journal, so an embedded thread in
each gunicorn process and any number of RQ workers can drain side by side; at most one job per
(backend, project, kind) runs at a time whatever the layout.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .errors import Conflict, LabelLoopError, MediaError, http_status
from .journal import CANCELLED, DONE, FAILED, PENDING, RUNNING, Job, Journal, LeaseLost
from .logs import redact
from .metrics import JOBS_FINISHED

if TYPE_CHECKING:
    from .model import LabelLoopModel

log = logging.getLogger(__name__)


class JobCancelled(Exception):
    """Raised inside a job by :meth:`JobContext.check_cancelled` once cancellation was requested."""


class JobReporter(Protocol):
    """What a job's work may ask of the job running it, whoever runs it: a journaled job
    (:class:`JobContext`) or plain Python (:class:`NoJob`). Training and scoring code take one
    explicitly, never through ``**kwargs``."""

    cancelled: threading.Event

    @property
    def id(self) -> int | None: ...

    def progress(self, **values: Any) -> None: ...

    def check_cancelled(self) -> None: ...


class NoJob:
    """What a job's work reports to when plain Python runs it outside the journal (a notebook, a
    test, the CLI's folder mode): progress goes nowhere and nothing cancels it. Saves every job
    class its own ``if self.job is not None`` around each report."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()  # never set

    @property
    def id(self) -> int | None:
        return None

    def progress(self, **values: Any) -> None:
        pass

    def check_cancelled(self) -> None:
        pass


class JobContext:
    """Given to a running job: progress reporting, cancellation, and the lease heartbeat."""

    def __init__(self, journal: Journal, job: Job) -> None:
        self.journal = journal
        self.job = job
        self.cancelled = threading.Event()
        self.lost = threading.Event()  # the job went to another worker: stop, record nothing
        self._progress: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{job.id}", daemon=True)

    @property
    def id(self) -> int:
        return self.job.id

    def __enter__(self) -> JobContext:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def progress(self, **values: Any) -> None:
        """Report progress (shown by ``GET /jobs``); also refreshes the lease right away."""
        self._progress = {**(self._progress or {}), **values, "updated_at": time.time()}
        self._heartbeat()

    def check_cancelled(self) -> None:
        if self.lost.is_set():
            raise JobCancelled(f"job {self.job.id} went to another worker (this one's heartbeat was late)")
        if self.cancelled.is_set():
            raise JobCancelled(f"job {self.job.id} was cancelled")

    def _heartbeat(self) -> None:
        try:
            if self.journal.heartbeat(self.job.id, self._progress, attempt=self.job.attempts):
                self.cancelled.set()
        except LeaseLost:
            log.warning("job %s: lease lost to another worker; stopping this run", self.job.id)
            self.lost.set()
            self.cancelled.set()

    def _beat(self) -> None:
        interval = max(0.2, self.journal.lease_s / 4)
        while not self._stop.wait(interval):
            try:
                self._heartbeat()
            except Exception:  # a locked database must not kill the job; the next beat retries
                log.exception("heartbeat for job %s failed", self.job.id)


#: How a runner gets the model a job runs with (``LabelLoopModel.for_job`` bound to the services).
ModelFactory = Callable[[Job], "LabelLoopModel"]


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def may_pass(exc: BaseException) -> bool:
    """Whether a failed job is worth retrying: Label Studio down or overloaded (5xx, 429, no
    connection), a full model store (507), a crash; not a refused token or a bad request (4xx)."""
    if isinstance(exc, LabelLoopError):
        return exc.status >= 500
    status = http_status(exc)
    return True if status is None else status >= 500 or status == 429


def label_studio_unreachable(exc: BaseException) -> bool:
    """Whether a failure is an outage rather than a refusal: no connection, a timeout, or a
    gateway's 502-504 (Label Studio, or the proxy before it, is down), or images that could not
    be fetched for such a reason. Such a job waits for Label Studio instead of using up its tries."""
    import httpx
    import requests

    if isinstance(exc, MediaError):
        return exc.transient
    if isinstance(exc, LabelLoopError):
        return exc.status in (502, 503, 504)
    if isinstance(exc, (httpx.TransportError, requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)):
        return True
    return http_status(exc) in (502, 503, 504)


def run_job(journal: Journal, job: Job, make_model: ModelFactory) -> str:
    """Run one claimed job to a final state; never raises (a job's failure is data, not a crash)."""
    backend = job.backend
    started = time.time()
    log.info("%s: job %s (%s, project %s) started", backend, job.id, job.kind, job.project)
    state, result, error, retry, outage = FAILED, None, None, False, False
    with JobContext(journal, job) as ctx:
        try:
            events = journal.events_for(job.id)
            model = make_model(job)
            result = model.run_job(job.kind, events, ctx)
            state = DONE
        except JobCancelled as exc:
            state, error = CANCELLED, str(exc)
        except LabelLoopError as exc:
            error, retry, outage = exc.message, may_pass(exc), label_studio_unreachable(exc)
            log.warning("%s: job %s failed: %s", backend, job.id, exc.message)
        except Exception as exc:
            error, retry, outage = f"{type(exc).__name__}: {exc}", may_pass(exc), label_studio_unreachable(exc)
            log.error("%s: job %s crashed:\n%s", backend, job.id, traceback.format_exc())
    # A job's error is served by GET /jobs: an upstream reply quoted in it may echo credentials.
    ended = journal.finish(job.id, state, attempt=job.attempts, result=result if isinstance(result, dict) else None,
                           error=redact(error) if error else None, retry=retry, outage=outage)
    if ended is None:
        log.warning("%s: job %s ran on after its lease was lost; its outcome (%s) is not recorded", backend, job.id,
                    state)
        return state
    JOBS_FINISHED.labels(backend, job.kind, "retried" if ended == PENDING else ended).inc()
    log.info("%s: job %s %s in %.1f s%s", backend, job.id, ended, time.time() - started,
             " (retried later)" if ended == "pending" else "")
    return ended


def drain(journal: Journal, backend: str, make_model: ModelFactory, *, project: int | None = None,
          wait_for_debounce: bool = True, stop: threading.Event | None = None) -> int:
    """Run ready jobs until none is left; waits out the debounce of pending jobs. Returns jobs run."""
    ran = 0
    me = worker_id()
    while not (stop and stop.is_set()):
        journal.requeue_stale(backend)
        job = journal.claim(backend, me, project=project)
        if job is not None:
            run_job(journal, job, make_model)
            ran += 1
            continue
        pending = [j for j in journal.pending_jobs(backend) if project is None or j.project == project]
        if not wait_for_debounce or not pending:
            return ran
        ready_in = min(j.not_before for j in pending) - time.time()
        if ready_in <= 0:
            return ran  # ready but blocked by a job running elsewhere: that worker will drain it
        (stop.wait if stop else time.sleep)(min(ready_in, 1.0))
    return ran


def run_now(journal: Journal, backend: str, project: int, kind: str, action: str, make_model: ModelFactory,
            payload: dict[str, Any] | None = None) -> Job:
    """Run a (backend, project, kind) job in this process, now, through the journal: a command-line
    run then takes the same slot as the server's workers (neither starts beside the other, which would
    have two writers replacing the same queue), shows in ``GET /jobs``, and absorbs a pending job
    that asked for the same work. Returns the job as it ended; raises :class:`Conflict` when one runs."""
    journal.requeue_stale(backend)  # a killed server's job must not hold the slot forever
    recorded = journal.record(backend, project, action, {**(payload or {}), "project": project}, kind=kind)
    job = journal.claim(backend, worker_id(), project=project, job_id=recorded.job_id)
    if job is None:
        running = [j for j in journal.list_jobs(backend, project, state=RUNNING) if j.kind == kind]
        holder = f"job {running[0].id} on {running[0].worker}" if running else "another job"
        raise Conflict(f"{holder} is already running the {kind} job of project {project}; this request was "
                   f"queued as job {recorded.job_id}, which the server's workers run after it")
    run_job(journal, job, make_model)
    ended = journal.get_job(job.id)
    assert ended is not None
    return ended


class EmbeddedDispatcher:
    """A worker loop over the journal: a thread of the server (``JOB_RUNNER=thread``), or the main loop
    of the job process (``job_process``, the default without Redis)."""

    def __init__(self, journal: Journal, backend: str, make_model: ModelFactory, poll_s: float = 1.0) -> None:
        self.journal, self.backend, self.make_model, self.poll_s = journal, backend, make_model, poll_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self.run, name=f"{self.backend}-jobs", daemon=True)
            self._thread.start()

    def notify(self, job_id: int, project: int, attempts: int = 0) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def run(self, alive: Callable[[], bool] = lambda: True) -> None:
        """Drain ready jobs until stopped (or ``alive()`` turns false), sleeping until the next one is
        due or a notify comes. Runs in this class's thread, or as the job process's main loop."""
        while not self._stop.is_set() and alive():
            try:
                drain(self.journal, self.backend, self.make_model, wait_for_debounce=False, stop=self._stop)
                next_at = self.journal.next_ready_at(self.backend)
            except Exception:
                log.exception("%s: job loop error; retrying", self.backend)
                next_at = None
            timeout = self.poll_s if next_at is None else max(0.01, min(self.poll_s, next_at - time.time()))
            self._wake.wait(timeout)
            self._wake.clear()
