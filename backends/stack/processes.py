"""Starting and stopping the stack's processes: Label Studio and backend servers.

Used by ``make up`` (``python -m backends.stack``) and by the test harness, so tests start the
stack exactly the way users do.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from backends.core.devices import omp_threads_before_ultralytics

ROOT = Path(__file__).resolve().parents[2]
LABEL_STUDIO_BIN = ROOT / "tools" / "label-studio" / ".venv" / "bin" / "label-studio"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered:\n{tail}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


@dataclass
class ManagedProcess:
    """A child process with its log file; ``stop()`` is idempotent, ``kill()`` is SIGKILL."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    health_url: str | None  # None: no HTTP (a worker); started = still alive after a moment
    cwd: Path = ROOT  # the working directory (the images run from a read-only one)
    proc: subprocess.Popen | None = field(default=None, init=False)

    def start(self, timeout: float = 60) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd, start_new_session=True
        )
        if self.health_url:
            wait_http(self.health_url, timeout, self.proc, self.log_path)
        else:
            time.sleep(1.0)
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def kill(self) -> None:
        """SIGKILL the whole process group: what a crash looks like."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, n: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""


#: Label Studio feature flags the stacks we ship set (make up, the tests, docker-compose.yml).
#: 4620: a bulk prediction import recounts only the tasks it touched instead of every task of the
#: project after each call, which made writing a queue quadratic: 122 s of writes at 8,000 tasks
#: fell to 10 s (bench/queue_scale.py). That path skips Label Studio's own check of each
#: prediction against the label config; ours are built from the label config by the backends.
LABEL_STUDIO_FLAGS = {"fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short": "true"}


def label_studio_process(data_dir: Path, port: int, username: str, password: str, token: str,
                         host: str = "127.0.0.1") -> ManagedProcess:
    """Label Studio 1.23 with the settings a loopback/compose backend needs (see docs/connecting.md, step 2)."""
    env = {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "LABEL_STUDIO_USERNAME": username,
        "LABEL_STUDIO_PASSWORD": password,
        "LABEL_STUDIO_USER_TOKEN": token,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        "COLLECT_ANALYTICS": "false",
        "LATEST_VERSION_CHECK": "false",
        # Backends on loopback / private networks are refused unless both are off.
        "ML_BLOCK_LOCAL_IP": "false",
        "SSRF_PROTECTION_ENABLED": "false",
        "LOCAL_FILES_SERVING_ENABLED": "true",
        "PYTHONUNBUFFERED": "1",
        **LABEL_STUDIO_FLAGS,
    }
    for key in ("VIRTUAL_ENV", "PYTHONPATH", "DJANGO_SETTINGS_MODULE"):
        env.pop(key, None)
    argv = [str(LABEL_STUDIO_BIN), "start", "--no-browser", "--internal-host", host, "--port", str(port),
            "--data-dir", str(data_dir)]
    return ManagedProcess("label-studio", argv, env, data_dir / "label-studio.log", f"http://{host}:{port}/health")


def backend_process(module: str, port: int, env: dict[str, str], log_path: Path, host: str = "127.0.0.1") -> ManagedProcess:
    argv = [sys.executable, "-m", module, "--host", host, "--port", str(port)]
    inherited = dict(os.environ)
    if omp_threads_before_ultralytics() is None:
        # ultralytics set OMP_NUM_THREADS=1 in this process (a benchmark or a test that imported
        # it): the backend would take it for the user's and compute on one core
        inherited.pop("OMP_NUM_THREADS", None)
    full_env = {**inherited, "PYTHONUNBUFFERED": "1", **env}
    return ManagedProcess(module, argv, full_env, log_path, f"http://{host}:{port}/health")
