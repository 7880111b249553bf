"""REDIS_URL set: jobs run on `python -m backends.worker` processes, with the same job code."""

import contextlib
import os
import shutil
import signal
import subprocess
import sys

import pytest
import requests

from backends.stack.processes import ManagedProcess, free_port
from tests.conftest import RECT_CONFIG, png_bytes
from tests.core.test_labelstudio_e2e import BOX, jobs, toy_env
from tests.harness import missing_system_dependency, wait_until

pytestmark = pytest.mark.labelstudio


@pytest.fixture
def redis_url(tmp_path):
    binary = shutil.which("redis-server")
    if binary is None:
        missing_system_dependency("redis-server is not installed (make test installs it with apt where available)")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    import redis

    wait_until(lambda: _ping(redis, url), 10, "redis-server")
    yield url
    proc.terminate()
    proc.wait(10)


def _ping(redis, url):
    try:
        return redis.Redis.from_url(url).ping()
    except redis.ConnectionError:
        return False


def start_worker(env, log):
    proc = ManagedProcess("worker", [sys.executable, "-m", "backends.worker"],
                          {**os.environ, "PYTHONUNBUFFERED": "1", "RQ_PRELOAD": "tests.toy_backend",
                           **{k: str(v) for k, v in env.items()}}, log, None)
    return proc.start()


def test_rq_worker_runs_jobs_and_recovers_from_a_killed_worker(label_studio, start_backend, tmp_path, redis_url):
    env = toy_env(label_studio, tmp_path / "toy", REDIS_URL=redis_url, TOY_FIT_SECONDS=30, JOB_LEASE_S=2)
    server, url = start_backend("tests.toy_backend", env)
    worker = start_worker(env, tmp_path / "worker1.log")
    try:
        project = label_studio.create_project(RECT_CONFIG, title="rq mode")
        tasks = label_studio.upload_images(project, {"a.png": png_bytes(64, 48)})
        label_studio.connect_backend(project, url, "toy")
        label_studio.annotate(tasks[0], [BOX])
        (running,) = wait_until(lambda: [j for j in jobs(url, project) if j["state"] == "running"], 60, "a running job")
        assert f":{server.pid}:" not in running["worker"], "the job must run on the RQ worker, not the server"
        worker.kill()
        # RQ's work horse runs in its own session: kill it too, as a machine crash would.
        horse = int(running["worker"].split(":")[1])
        with contextlib.suppress(ProcessLookupError):
            os.kill(horse, signal.SIGKILL)
        worker = start_worker({**env, "TOY_FIT_SECONDS": 0}, tmp_path / "worker2.log")
        (done,) = wait_until(lambda: [j for j in jobs(url, project) if j["state"] == "done"], 60, "the resumed job")
        assert done["id"] == running["id"] and done["attempts"] == 2
        assert requests.get(f"{url}/versions?project={project}", timeout=5).json()["current"] == "toy-v1"
    finally:
        worker.stop()
        print(worker.log_tail())
