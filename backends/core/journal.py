"""Durable journal of webhook events and the jobs they trigger (SQLite).

The journal *is* the job queue: an event is committed here before ``/webhook`` answers, and a job is
a row whose state moves ``pending -> running -> done|failed|cancelled``. Partial unique indexes make
"at most one pending and one running job per (backend, project, kind)" a database invariant, so any
number of gunicorn processes and RQ workers can claim work without another lock. A pending job
collects every event that arrives while it waits (coalescing); a short debounce lets Label Studio's
``START_TRAINING`` + ``ANNOTATION_CREATED`` pair, sent for one submit, land in the same job.

Crash safety: a running job writes a heartbeat; one whose heartbeat is older than the lease is
returned to pending (its events kept) by :meth:`Journal.requeue_stale`, so a killed worker's job is
run again on restart. Every claim is an attempt number: a runner that was only late (paused VM,
swap storm) and whose job went to another worker learns it at its next heartbeat
(:class:`LeaseLost`), and its outcome is not recorded. A job that fails for a reason that may pass
(Label Studio unreachable, a full disk, a crash) is retried with back-off. A job that keeps dying
or failing is failed after ``max_attempts`` (a poison pill must not loop forever); attempts carry
over when its events move to the next job.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    backend TEXT NOT NULL,
    project INTEGER NOT NULL,
    action TEXT NOT NULL,
    dedup_key TEXT,
    payload TEXT NOT NULL,
    received_at REAL NOT NULL,
    job_id INTEGER REFERENCES jobs(id)
);
CREATE UNIQUE INDEX IF NOT EXISTS events_dedup ON events(backend, dedup_key) WHERE dedup_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_job ON events(job_id);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    backend TEXT NOT NULL,
    project INTEGER NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    not_before REAL NOT NULL,
    started_at REAL,
    heartbeat_at REAL,
    finished_at REAL,
    worker TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    progress TEXT,
    result TEXT,
    error TEXT,
    outage TEXT,
    tries TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_one_pending ON jobs(backend, project, kind) WHERE state = 'pending';
CREATE UNIQUE INDEX IF NOT EXISTS jobs_one_running ON jobs(backend, project, kind) WHERE state = 'running';
CREATE TABLE IF NOT EXISTS projects (
    backend TEXT NOT NULL,
    project INTEGER NOT NULL,
    label_config TEXT,
    extra_params TEXT,
    hostname TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (backend, project)
);
"""

_FORK_GUARD = threading.Lock()
#: jobs columns newer than the first journals, added to an old one when it is opened
ADDED_COLUMNS = {"outage": "TEXT", "tries": "TEXT"}

PENDING, RUNNING, DONE, FAILED, CANCELLED = "pending", "running", "done", "failed", "cancelled"
FINAL_STATES = (DONE, FAILED, CANCELLED)
LOCK_TIMEOUT_S = 30.0
#: longest wait between two tries of a job that meets a Label Studio outage: it resumes within this
#: of Label Studio answering again
OUTAGE_POLL_S = 60.0


class LeaseLost(Exception):
    """This runner's claim was handed to another worker (its heartbeat came later than the lease)."""


class JournalBusy(Exception):
    """The journal's write lock was not free within ``LOCK_TIMEOUT_S`` (a stuck process holds it)."""


@dataclass(frozen=True)
class Job:
    id: int
    backend: str
    project: int
    kind: str
    state: str
    created_at: float
    not_before: float
    started_at: float | None
    heartbeat_at: float | None
    finished_at: float | None
    worker: str | None
    attempts: int
    cancel_requested: bool
    progress: dict[str, Any] | None
    result: dict[str, Any] | None
    error: str | None
    # while (and after) Label Studio was unreachable: {"since", "tries", "last_error"[, "ended_at"]}
    outage: dict[str, Any] | None = None
    # every run of the job, oldest first: {"attempt", "worker", "started_at"[, "finished_at", "seconds",
    # "outcome", "error"]}. started_at/finished_at above are the last run's; a retried job's whole
    # story is here (including runs of jobs whose events it took over)
    tries: list[dict[str, Any]] | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        data = dict(row)
        for key in ("progress", "result", "outage", "tries"):
            data[key] = json.loads(data[key]) if data[key] else None
        data["cancel_requested"] = bool(data["cancel_requested"])
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Event:
    id: int
    action: str
    payload: dict[str, Any]
    received_at: float


@dataclass(frozen=True)
class Recorded:
    """What :meth:`Journal.record` did with one event."""

    event_id: int | None  # None: a duplicate of an event already journaled
    job_id: int
    new_job: bool


@dataclass(frozen=True)
class ProjectSetup:
    label_config: str | None
    extra_params: dict[str, Any]
    hostname: str | None


class Journal:
    """Thread-safe handle on the journal database; one SQLite connection per thread."""

    def __init__(
        self,
        path: Path,
        *,
        debounce_s: float = 1.0,
        max_delay_s: float = 30.0,
        lease_s: float = 60.0,
        max_attempts: int = 3,
        retry_s: float = 30.0,
        keep_s: float = 30 * 86400.0,
        synchronous: str = "FULL",
        outage_s: float = 86400.0,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.debounce_s = debounce_s
        self.max_delay_s = max(max_delay_s, debounce_s)
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self.retry_s = retry_s
        self.keep_s = keep_s
        self.outage_s = outage_s
        self._pruned_at = 0.0
        self._synchronous = synchronous
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._lock_pid: int | None = None
        self._lock_file = -1
        self._conn().executescript(SCHEMA)  # executescript manages its own transaction
        self._migrate()

    def _migrate(self) -> None:
        """Columns added after a journal was created (a journal outlives upgrades)."""
        if not set(ADDED_COLUMNS) - self._job_columns(self._conn()):
            return
        with self._tx() as db:  # under the write lock: gunicorn workers starting together add them once
            present = self._job_columns(db)
            for column in [c for c in ADDED_COLUMNS if c not in present]:
                db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {ADDED_COLUMNS[column]}")

    @staticmethod
    def _job_columns(db: sqlite3.Connection) -> set[str]:
        return {row[1] for row in db.execute("PRAGMA table_info(jobs)")}

    # -- connection plumbing -------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        # A forked child (gunicorn, RQ work horse) must not reuse its parent's connection.
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed event survives power loss, not only a process crash.
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    class _Tx:
        def __init__(self, conn: sqlite3.Connection, lock: threading.Lock, lock_fd: int) -> None:
            self.conn, self.lock, self.lock_fd = conn, lock, lock_fd

        def __enter__(self) -> sqlite3.Connection:
            # Writers queue on a thread lock and a flock() instead of SQLite's busy handler, whose
            # back-off sleeps (up to 100 ms each) ruin webhook tail latency; the flock() is polled
            # every 2 ms at most, under a deadline. Gunicorn workers share the file lock.
            if not self.lock.acquire(timeout=LOCK_TIMEOUT_S):
                raise JournalBusy(f"journal write lock busy for {LOCK_TIMEOUT_S:.0f} s")
            try:
                _flock(self.lock_fd)
                # IMMEDIATE takes SQLite's write lock up front: no deadlock-prone lock upgrades.
                self.conn.execute("BEGIN IMMEDIATE")
            except BaseException:
                fcntl.flock(self.lock_fd, fcntl.LOCK_UN)
                self.lock.release()
                raise
            return self.conn

        def __exit__(self, exc_type: object, *_: object) -> None:
            try:
                if exc_type:
                    self.conn.execute("ROLLBACK")
                else:
                    try:
                        self.conn.execute("COMMIT")
                    except sqlite3.Error:
                        # e.g. disk full: an open transaction would hold SQLite's write lock and
                        # make every later BEGIN of this connection fail
                        if self.conn.in_transaction:
                            self.conn.execute("ROLLBACK")
                        raise
            finally:
                fcntl.flock(self.lock_fd, fcntl.LOCK_UN)
                self.lock.release()

    def _lock_fd(self) -> int:
        # flock() belongs to an open file description: each process (gunicorn worker, RQ work
        # horse after fork) opens its own, once, and its threads share it behind _write_lock.
        if self._lock_pid != os.getpid():
            with _FORK_GUARD:
                if self._lock_pid != os.getpid():
                    self._write_lock = threading.Lock()
                    self._lock_file = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
                    self._lock_pid = os.getpid()
        return self._lock_file

    def _tx(self) -> Journal._Tx:
        fd = self._lock_fd()
        return Journal._Tx(self._conn(), self._write_lock, fd)

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        return self._conn().execute(sql, args).fetchall()

    # -- events ----------------------------------------------------------------------------------
    def record(
        self,
        backend: str,
        project: int,
        action: str,
        payload: dict[str, Any],
        *,
        kind: str,
        dedup_key: str | None = None,
        now: float | None = None,
    ) -> Recorded:
        """Journal one event and attach it to the pending job of its (backend, project, kind)."""
        now = time.time() if now is None else now
        with self._tx() as db:
            pending = db.execute(
                "SELECT id, created_at FROM jobs WHERE backend=? AND project=? AND kind=? AND state=?",
                (backend, project, kind, PENDING),
            ).fetchone()
            if dedup_key is not None:
                dup = db.execute(
                    "SELECT e.id, e.job_id, j.state FROM events e JOIN jobs j ON j.id=e.job_id"
                    " WHERE e.backend=? AND e.dedup_key=?", (backend, dedup_key)
                ).fetchone()
                if dup is not None and dup["state"] not in (FAILED, CANCELLED):
                    return Recorded(None, dup["job_id"], False)
                if dup is not None:  # re-sent after its job failed: journaled again, for a new job
                    db.execute("UPDATE events SET dedup_key=NULL WHERE id=?", (dup["id"],))
            if pending is None:
                job_id = _inserted_id(db.execute(
                    "INSERT INTO jobs(backend, project, kind, state, created_at, not_before)"
                    " VALUES (?,?,?,?,?,?)",
                    (backend, project, kind, PENDING, now, now + self.debounce_s),
                ))
                new_job = True
            else:
                job_id, new_job = pending["id"], False
                # Debounce, but never postpone a job past max_delay_s after its first event.
                not_before = min(now + self.debounce_s, pending["created_at"] + self.max_delay_s)
                db.execute("UPDATE jobs SET not_before=MAX(not_before, ?) WHERE id=?", (not_before, job_id))
            event_id = db.execute(
                "INSERT INTO events(backend, project, action, dedup_key, payload, received_at, job_id)"
                " VALUES (?,?,?,?,?,?,?)",
                (backend, project, action, dedup_key, json.dumps(payload), now, job_id),
            ).lastrowid
        return Recorded(event_id, job_id, new_job)

    def events_for(self, job_id: int) -> list[Event]:
        rows = self._query("SELECT id, action, payload, received_at FROM events WHERE job_id=? ORDER BY id", (job_id,))
        return [Event(r["id"], r["action"], json.loads(r["payload"]), r["received_at"]) for r in rows]

    def count_events(self, backend: str | None = None) -> int:
        if backend is None:
            return self._query("SELECT COUNT(*) FROM events")[0][0]
        return self._query("SELECT COUNT(*) FROM events WHERE backend=?", (backend,))[0][0]

    # -- jobs ------------------------------------------------------------------------------------
    def get_job(self, job_id: int) -> Job | None:
        rows = self._query("SELECT * FROM jobs WHERE id=?", (job_id,))
        return Job.from_row(rows[0]) if rows else None

    def list_jobs(self, backend: str, project: int | None = None, limit: int = 50,
                  state: str | None = None) -> list[Job]:
        sql = "SELECT * FROM jobs WHERE backend=?"
        args: list[str | int] = [backend]
        if project is not None:
            sql, args = sql + " AND project=?", args + [project]
        if state is not None:
            sql, args = sql + " AND state=?", args + [state]
        rows = self._query(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))
        return [Job.from_row(r) for r in rows]

    def count_jobs(self, backend: str) -> dict[str, int]:
        rows = self._query("SELECT state, COUNT(*) AS n FROM jobs WHERE backend=? GROUP BY state", (backend,))
        return {r["state"]: r["n"] for r in rows}

    def next_ready_at(self, backend: str) -> float | None:
        rows = self._query("SELECT MIN(not_before) FROM jobs WHERE backend=? AND state=?", (backend, PENDING))
        return rows[0][0]

    def pending_jobs(self, backend: str) -> list[Job]:
        rows = self._query("SELECT * FROM jobs WHERE backend=? AND state=? ORDER BY not_before", (backend, PENDING))
        return [Job.from_row(r) for r in rows]

    def claim(
        self, backend: str, worker: str, *, project: int | None = None, now: float | None = None,
        job_id: int | None = None,
    ) -> Job | None:
        """Atomically move one ready pending job to running; None if nothing is ready. With ``job_id``:
        that pending job, debounce or not (someone asked for it to run now), still never beside a
        running job of its (backend, project, kind)."""
        now = time.time() if now is None else now
        ready, ready_arg = ("j.not_before<=?", now) if job_id is None else ("j.id=?", job_id)
        sql = (
            f"SELECT j.* FROM jobs j WHERE j.backend=? AND j.state=? AND {ready}"
            " AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.backend=j.backend AND r.project=j.project"
            " AND r.kind=j.kind AND r.state=?)"
        )
        args: list[Any] = [backend, PENDING, ready_arg, RUNNING]
        if project is not None:
            sql, args = sql + " AND j.project=?", args + [project]
        with self._tx() as db:
            row = db.execute(sql + " ORDER BY j.not_before LIMIT 1", args).fetchone()
            if row is None:
                return None
            tries = _tries(row) + [{"attempt": row["attempts"] + 1, "worker": worker, "started_at": now}]
            db.execute(
                "UPDATE jobs SET state=?, started_at=?, heartbeat_at=?, worker=?, attempts=attempts+1, tries=?"
                " WHERE id=?",
                (RUNNING, now, now, worker, json.dumps(tries), row["id"]),
            )
        return self.get_job(row["id"])

    def heartbeat(self, job_id: int, progress: dict[str, Any] | None = None, *, attempt: int | None = None) -> bool:
        """Refresh a running job's lease; returns True if cancellation was requested. With ``attempt``
        (the claim's), raises :class:`LeaseLost` when the job is no longer this runner's."""
        owned, args = "id=? AND state=?", [job_id, RUNNING]
        if attempt is not None:
            owned, args = owned + " AND attempts=?", args + [attempt]
        with self._tx() as db:
            if progress is None:
                updated = db.execute(f"UPDATE jobs SET heartbeat_at=? WHERE {owned}", (time.time(), *args))
            else:
                updated = db.execute(f"UPDATE jobs SET heartbeat_at=?, progress=? WHERE {owned}",
                                     (time.time(), json.dumps(progress), *args))
            if attempt is not None and updated.rowcount == 0:
                raise LeaseLost(f"job {job_id} attempt {attempt} is no longer running here")
            row = db.execute("SELECT cancel_requested FROM jobs WHERE id=?", (job_id,)).fetchone()
        return bool(row and row["cancel_requested"])

    def finish(self, job_id: int, state: str, *, attempt: int | None = None, result: dict[str, Any] | None = None,
               error: str | None = None, retry: bool = False, outage: bool = False) -> str | None:
        """Record a running job's outcome; returns the state it ended in, or None when the job was not
        this runner's any more (``attempt`` given). A failure with ``retry`` and attempts left goes back
        to pending after ``retry_s`` x 2^(attempts-1), or hands its events to the job already pending.

        A failure with ``outage`` (Label Studio unreachable) is not an attempt: the job goes back to
        pending, trying again at most every ``OUTAGE_POLL_S``, for ``outage_s`` from the first such
        failure; ``outage`` on the job records it, and stays once the job is done."""
        assert state in FINAL_STATES, state
        now = time.time()
        owned, args = "id=? AND state=?", [job_id, RUNNING]
        if attempt is not None:
            owned, args = owned + " AND attempts=?", args + [attempt]
        with self._tx() as db:
            job = db.execute(f"SELECT * FROM jobs WHERE {owned}", args).fetchone()
            if job is None:
                return None
            _end_try(db, job, now, "outage" if state == FAILED and outage else state, error)
            job = db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
            if state == FAILED and outage:
                waited = self._wait_out_outage(db, job, now, error)
                if waited is not None:
                    return waited
                error = f"{error} (Label Studio unreachable for longer than {self.outage_s:.0f} s: given up)"
                retry = False
            if state == FAILED and retry and job["attempts"] < self.max_attempts:
                pending = self._pending(db, job)
                if pending is None:
                    db.execute("UPDATE jobs SET state=?, worker=NULL, not_before=?, error=? WHERE id=?",
                               (PENDING, now + self.retry_s * 2 ** (job["attempts"] - 1), error, job_id))
                    return PENDING
                self._hand_over(db, job, pending, now, f"{error}; events moved to job {pending['id']}")
                return FAILED
            if state == DONE and job["outage"]:
                ended = json.loads(job["outage"]) | {"ended_at": now}
                db.execute("UPDATE jobs SET outage=? WHERE id=?", (json.dumps(ended), job_id))
            db.execute("UPDATE jobs SET state=?, finished_at=?, result=?, error=? WHERE id=?",
                       (state, now, json.dumps(result) if result is not None else None, error, job_id))
        return state

    def _wait_out_outage(self, db: sqlite3.Connection, job: sqlite3.Row, now: float, error: str | None) -> str | None:
        """Put a job that met an outage back to pending (its try uncounted); None once the outage
        has lasted ``outage_s``: the job then fails like any other failure."""
        record = json.loads(job["outage"]) if job["outage"] else {"since": now, "tries": 0}
        record.update(tries=record["tries"] + 1, last_error=error)
        if now - record["since"] >= self.outage_s:
            db.execute("UPDATE jobs SET outage=? WHERE id=?", (json.dumps(record), job["id"]))
            return None
        delay = min(self.retry_s * 2 ** (record["tries"] - 1), OUTAGE_POLL_S)
        note = (f"{error} (Label Studio unreachable since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(record['since']))}"
                f", try {record['tries']}; trying again every {OUTAGE_POLL_S:.0f} s at most)")
        pending = self._pending(db, job)
        db.execute("UPDATE jobs SET attempts=attempts-1, outage=? WHERE id=?", (json.dumps(record), job["id"]))
        if pending is not None:  # a newer request waits already: it takes the events, and the outage
            db.execute("UPDATE jobs SET outage=? WHERE id=?", (json.dumps(record), pending["id"]))
            self._hand_over(db, db.execute("SELECT * FROM jobs WHERE id=?", (job["id"],)).fetchone(), pending, now,
                            f"{note}; events moved to job {pending['id']}")
            return FAILED
        db.execute("UPDATE jobs SET state=?, worker=NULL, not_before=?, error=? WHERE id=?",
                   (PENDING, now + delay, note, job["id"]))
        return PENDING

    @staticmethod
    def _pending(db: sqlite3.Connection, job: sqlite3.Row) -> sqlite3.Row | None:
        return db.execute("SELECT id FROM jobs WHERE backend=? AND project=? AND kind=? AND state=?",
                          (job["backend"], job["project"], job["kind"], PENDING)).fetchone()

    @staticmethod
    def _hand_over(db: sqlite3.Connection, job: sqlite3.Row, pending: sqlite3.Row, now: float, error: str) -> None:
        """Move a dead or failed job's events to the pending job; its attempts go along, so a job that
        keeps killing its worker stops after ``max_attempts`` even while new events keep arriving."""
        db.execute("UPDATE events SET job_id=? WHERE job_id=?", (pending["id"], job["id"]))
        db.execute("UPDATE jobs SET attempts=MAX(attempts, ?) WHERE id=?", (job["attempts"], pending["id"]))
        taken = db.execute("SELECT tries FROM jobs WHERE id=?", (pending["id"],)).fetchone()
        db.execute("UPDATE jobs SET tries=? WHERE id=?", (json.dumps(_tries(job) + _tries(taken)), pending["id"]))
        db.execute("UPDATE jobs SET state=?, finished_at=?, error=? WHERE id=?", (FAILED, now, error, job["id"]))

    def request_cancel(self, job_id: int) -> Job | None:
        """Running jobs see the flag at their next heartbeat; pending ones are cancelled at once."""
        with self._tx() as db:
            db.execute("UPDATE jobs SET cancel_requested=1 WHERE id=? AND state=?", (job_id, RUNNING))
            db.execute(
                "UPDATE jobs SET state=?, finished_at=?, cancel_requested=1 WHERE id=? AND state=?",
                (CANCELLED, time.time(), job_id, PENDING),
            )
        return self.get_job(job_id)

    def prune(self, *, now: float | None = None) -> int:
        """Delete jobs that ended more than ``keep_s`` ago, with their events (webhook bodies carry
        whole tasks: the journal must not grow forever). Returns the jobs deleted."""
        cutoff = (time.time() if now is None else now) - self.keep_s
        final = ",".join("?" * len(FINAL_STATES))
        with self._tx() as db:
            old = f"SELECT id FROM jobs WHERE state IN ({final}) AND finished_at < ?"
            db.execute(f"DELETE FROM events WHERE job_id IN ({old})", (*FINAL_STATES, cutoff))
            return db.execute(f"DELETE FROM jobs WHERE id IN ({old})", (*FINAL_STATES, cutoff)).rowcount

    def requeue_stale(self, backend: str, *, now: float | None = None) -> list[int]:
        """Give the jobs of dead workers (heartbeat older than the lease) back to the queue; once an
        hour per process, also :meth:`prune` what ended long ago."""
        now = time.time() if now is None else now
        if time.monotonic() - self._pruned_at > 3600:
            self._pruned_at = time.monotonic()
            self.prune()
        requeued: list[int] = []
        with self._tx() as db:
            stale = db.execute(
                "SELECT * FROM jobs WHERE backend=? AND state=? AND heartbeat_at<?",
                (backend, RUNNING, now - self.lease_s),
            ).fetchall()
            for job in stale:
                # its run ended when its heartbeats did
                _end_try(db, job, job["heartbeat_at"], "lost", f"no heartbeat for {self.lease_s:.0f} s: the worker died")
                job = db.execute("SELECT * FROM jobs WHERE id=?", (job["id"],)).fetchone()
                if job["cancel_requested"]:  # cancelled, then its worker died: nothing to run again
                    db.execute("UPDATE jobs SET state=?, finished_at=?, error=? WHERE id=?",
                               (CANCELLED, now, "cancelled; its worker died before stopping", job["id"]))
                    continue
                if job["attempts"] >= self.max_attempts:
                    db.execute(
                        "UPDATE jobs SET state=?, finished_at=?, error=? WHERE id=?",
                        (FAILED, now, f"worker died {job['attempts']} times running this job", job["id"]),
                    )
                    continue
                pending = self._pending(db, job)
                if pending is not None:
                    # A newer pending job already waits: hand it the dead job's events.
                    self._hand_over(db, job, pending, now, f"worker died; events moved to job {pending['id']}")
                    requeued.append(pending["id"])
                else:
                    db.execute("UPDATE jobs SET state=?, worker=NULL WHERE id=?", (PENDING, job["id"]))
                    requeued.append(job["id"])
        return requeued

    # -- per-project setup (what /setup told us) -------------------------------------------------
    def save_setup(self, backend: str, project: int, label_config: str | None,
                   extra_params: dict[str, Any] | None, hostname: str | None) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO projects(backend, project, label_config, extra_params, hostname, updated_at)"
                " VALUES (?,?,?,?,?,?) ON CONFLICT(backend, project) DO UPDATE SET"
                " label_config=excluded.label_config, extra_params=excluded.extra_params,"
                " hostname=excluded.hostname, updated_at=excluded.updated_at",
                (backend, project, label_config, json.dumps(extra_params or {}), hostname, time.time()),
            )

    def get_setup(self, backend: str, project: int) -> ProjectSetup | None:
        rows = self._query(
            "SELECT label_config, extra_params, hostname FROM projects WHERE backend=? AND project=?",
            (backend, project),
        )
        if not rows:
            return None
        row = rows[0]
        return ProjectSetup(row["label_config"], json.loads(row["extra_params"] or "{}"), row["hostname"])

    def projects(self, backend: str) -> Iterator[int]:
        for row in self._query("SELECT project FROM projects WHERE backend=?", (backend,)):
            yield row["project"]


def _inserted_id(cursor: sqlite3.Cursor) -> int:
    """The rowid an INSERT made: sqlite3 always sets it after a successful single-row INSERT."""
    assert cursor.lastrowid is not None, "an INSERT that succeeded sets lastrowid"
    return cursor.lastrowid


def _flock(fd: int, timeout_s: float = LOCK_TIMEOUT_S) -> None:
    """flock() with a deadline: a process stuck holding the lock must not hang every /webhook."""
    deadline = time.monotonic() + timeout_s
    delay = 0.0005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise JournalBusy(f"journal file lock busy for {timeout_s:.0f} s") from None
            time.sleep(delay)
            delay = min(delay * 2, 0.002)


def _tries(job: sqlite3.Row) -> list[dict[str, Any]]:
    return json.loads(job["tries"]) if job["tries"] else []


def _end_try(db: sqlite3.Connection, job: sqlite3.Row, at: float, outcome: str, error: str | None) -> None:
    """Close the job's open run (the last of ``tries``) as ``outcome`` at ``at``."""
    tries = _tries(job)
    if not tries or "finished_at" in tries[-1]:
        return
    tries[-1].update(finished_at=at, seconds=round(at - tries[-1]["started_at"], 3), outcome=outcome, error=error)
    db.execute("UPDATE jobs SET tries=? WHERE id=?", (json.dumps(tries), job["id"]))
