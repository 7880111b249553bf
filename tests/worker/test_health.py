"""``python -m backends.worker --health``, the worker image's healthcheck: it must prove a worker is
alive, which a ping of Redis (the check it replaces) did not."""

from __future__ import annotations

import os
import subprocess
import sys

from backends.stack.processes import ROOT
from tests.core.test_rq_mode import redis_url, start_worker  # noqa: F401 - pytest fixtures
from tests.harness import wait_until


def health(url: str, queue: str = "label-loop") -> subprocess.CompletedProcess:
    env = {**os.environ, "REDIS_URL": url, "RQ_QUEUE": queue}
    return subprocess.run([sys.executable, "-m", "backends.worker", "--health"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_health_is_ok_only_while_a_worker_is_alive_on_the_queue(redis_url, tmp_path):  # noqa: F811 - fixture
    before = health(redis_url)
    assert before.returncode == 1 and "no live worker" in before.stdout  # Redis answers, no worker yet

    worker = start_worker({"REDIS_URL": redis_url, "DATA_DIR": tmp_path / "data"}, tmp_path / "worker.log")
    try:
        wait_until(lambda: health(redis_url).returncode == 0, 60, "the worker to register")
        assert health(redis_url, queue="another").returncode == 1  # alive, but not on that queue
        worker.kill()  # SIGKILL: RQ has no chance to unregister, its key outlives it
        after = health(redis_url)
        assert after.returncode == 1 and "no live worker" in after.stdout, after.stdout
    finally:
        worker.stop()
