"""The embedded job worker as a child process of the server (``JOB_RUNNER=process``, the default).

Why a process: a job (ultralytics training, a scoring pass) is GIL-heavy Python and imports torch's
compiler stack; in a thread of the server it stalled webhook acknowledgements and ``/predict``
(measured: ack p99 285-400 ms with 8 senders while a job started, against Label Studio's 1 s
webhook timeout). The server process now only journals, serves and watches; the child drains the
same journal with the same runner (``jobs.EmbeddedDispatcher``), so nothing about a job's life
changes: claims, leases, retries and ``GET /jobs`` are the journal's.

Invariants:
- One job process per backend and data directory, whatever the number of gunicorn workers: the
  server process that holds ``DATA_DIR/job-process-<backend>.lock`` runs it; the others retry the
  lock and take over if its holder dies.
- The child dies with its server (``PR_SET_DEATHSIG``), so a killed server never leaves training
  running beside its restarted self; its job's lease then expires and the next worker resumes it,
  as when the in-process thread died with the server.
- The child runs at a lower CPU priority (``JOB_NICENESS``): serving goes first on a small machine.
- The child starts with the first job, not with the server: a backend that only serves (pre-labels,
  smart clicks) never pays a second torch import and its memory. The lock holder starts it when
  this process journals a job or when the journal holds one for the backend (journaled by another
  gunicorn worker, or left by a server that was killed), looking every ``poll_s``.
- A child that exits or is killed is started again (after 1 s, doubling to 30 s while it keeps
  dying at start); the journal keeps every event it had not finished.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .journal import PENDING, RUNNING

if TYPE_CHECKING:
    from .journal import Journal
    from .settings import CoreSettings

log = logging.getLogger(__name__)

PR_SET_DEATHSIG = 1
PARENT_ENV = "LABELLOOP_JOB_PROCESS_PARENT"  # the server's pid, which the child checks it still has
#: the job process's niceness: on a machine of a few cores a fine-tune's torch threads take every
#: core, and the server's acknowledgements and /predict would wait for a time slice behind them
#: (measured on 2 cores: ack p99 78 ms at niceness 0); serving goes first, training takes the rest
JOB_NICENESS = 10
RESTART_S = (1.0, 30.0)  # first and longest wait before starting a child that died again
STABLE_S = 60.0  # a child that lived this long died of something else than its start: wait 1 s again


def settings_env(settings: CoreSettings) -> dict[str, str]:
    """``settings`` as the environment variables that rebuild them in the child (secrets included,
    never logged): the server may have been given settings that its environment does not hold."""
    env: dict[str, str] = {}
    for name, field in type(settings).model_fields.items():
        value = getattr(settings, name)
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, list):
            value = ",".join(map(str, value))
        env[field.alias or name.upper()] = str(value)
    return env


class ProcessDispatcher:
    """Runs the job worker in a child process and keeps it running (see the module docstring)."""

    def __init__(self, backend: str, model_path: str, settings: CoreSettings, journal: Journal,
                 poll_s: float = 5.0) -> None:
        self.backend, self.model_path, self.settings, self.poll_s = backend, model_path, settings, poll_s
        self.journal = journal
        self.child: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._wanted = threading.Event()  # a job was journaled here: start the child now
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            # Popen in this long-lived thread: PR_SET_DEATHSIG fires when the *thread* that started the
            # child ends, so starting it from the short-lived warm-up thread would kill it at once.
            self._thread = threading.Thread(target=self._supervise, name=f"{self.backend}-job-process", daemon=True)
            self._thread.start()

    def notify(self, job_id: int, project: int, attempts: int = 0) -> None:
        """Wake the child now rather than at its next poll (only this process's own child): a byte
        on its stdin, which waits in the pipe while the child is still starting (a signal sent then
        would kill it). Never blocks: a full pipe already holds a wake-up."""
        self._wanted.set()
        child = self.child
        if child is not None and child.stdin is not None and child.poll() is None:
            try:
                child.stdin.write(b"\n")
            except (BlockingIOError, BrokenPipeError, ValueError, OSError):  # full, or it just ended
                pass

    def stop(self) -> None:
        self._stop.set()
        self._wanted.set()
        if self.child is not None and self.child.poll() is None:
            self.child.terminate()

    def _supervise(self) -> None:
        lock = self._hold_lock()
        if lock is None or not self._wait_for_work():
            return
        wait = RESTART_S[0]
        while not self._stop.is_set():
            started = time.monotonic()
            code = self._run_child()
            if self._stop.is_set():
                return
            wait = RESTART_S[0] if time.monotonic() - started > STABLE_S else min(wait * 2, RESTART_S[1])
            log.warning("%s: job process exited with %s; starting it again in %.0f s (the journal keeps its jobs)",
                        self.backend, code, wait)
            self._stop.wait(wait)

    def _wait_for_work(self) -> bool:
        """Block until there is a job for the child (False: the dispatcher stopped first)."""
        while not self._stop.is_set():
            if self._wanted.is_set() or self._journal_has_work():
                return not self._stop.is_set()
            self._wanted.wait(self.poll_s)
        return False

    def _journal_has_work(self) -> bool:
        try:
            counts = self.journal.count_jobs(self.backend)
        except Exception as exc:  # a busy or broken journal: look again at the next poll
            log.warning("%s: could not read the job journal (%s); looking again in %.0f s", self.backend, exc,
                        self.poll_s)
            return False
        return bool(counts.get(PENDING) or counts.get(RUNNING))  # running: a killed server's, to resume

    def _hold_lock(self) -> IO[bytes] | None:
        """Block until this process holds the backend's job-process lock (or the dispatcher stops)."""
        path = Path(self.settings.data_dir) / f"job-process-{self.backend}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("ab")
        while not self._stop.is_set():
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return handle  # kept open for the process's life: closing it would release the lock
            except BlockingIOError:
                self._stop.wait(self.poll_s)
        handle.close()
        return None

    def _run_child(self) -> int:
        env = {**os.environ, **settings_env(self.settings), PARENT_ENV: str(os.getpid()),
               # the model class is imported by path: the child must see what this process sees
               "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.child = subprocess.Popen([sys.executable, "-m", "backends.core.job_process", self.model_path], env=env,
                                      stdin=subprocess.PIPE, bufsize=0)
        assert self.child.stdin is not None
        os.set_blocking(self.child.stdin.fileno(), False)
        log.info("%s: job process %s started", self.backend, self.child.pid)
        return self.child.wait()


def _die_with_parent() -> bool:
    """In the child: be killed when the server thread that started us ends. False when the server
    is already gone (it died before the ``prctl``, and we were handed to init)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_DEATHSIG, signal.SIGKILL, 0, 0, 0)
    return str(os.getppid()) == os.environ.get(PARENT_ENV)


def _wake_on_input(runner: Any) -> None:
    """Each byte the server writes on our stdin is a job journaled; its end is the server gone."""
    stdin = os.fdopen(sys.stdin.fileno(), "rb", buffering=0, closefd=False)
    while stdin.read(4096):  # unbuffered: returns what has arrived, b"" at the end
        runner.notify(0, 0)
    runner.stop()


def main(model_path: str) -> int:
    """The child: drain the journal for the backend until the server (its parent) is gone."""
    from .jobs import EmbeddedDispatcher
    from .logs import setup_logging
    from .model import load_model_class
    from .services import Services
    from .settings import CoreSettings

    if not _die_with_parent():
        return 0
    os.nice(JOB_NICENESS)
    settings = CoreSettings()
    setup_logging(settings.log_level)
    model_class = load_model_class(model_path)
    services = Services.from_settings(settings)
    runner = EmbeddedDispatcher(services.journal, model_class.backend, lambda job: model_class.for_job(job, services))
    parent = os.getppid()
    # Event.set takes a lock the interrupted main thread may hold: set it from a thread of its own
    threading.Thread(target=_wake_on_input, args=(runner,), name="wake", daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=runner.stop).start())
    runner.run(alive=lambda: os.getppid() == parent)
    return 0


def _main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m backends.core.job_process module:ModelClass")
    return main(args[0])


if __name__ == "__main__":
    sys.exit(_main())
