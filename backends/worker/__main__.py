"""``python -m backends.worker``: an RQ worker for Label Loop's background jobs.

Run any number, on any machine that reaches ``REDIS_URL`` and shares ``DATA_DIR`` / ``MODEL_DIR``
(the journal and the model store) with the servers. Each job names the backend's model class, so one
worker serves every backend. ``RQ_PRELOAD`` (comma-separated modules) is imported once before the
worker forks, so jobs do not pay for importing torch and ultralytics each time.

``python -m backends.worker --health`` is the images' healthcheck: it exits 0 only if a worker of
this machine (hostname) and a live process is registered in Redis on ``RQ_QUEUE`` with a heartbeat
younger than ``2 x WORKER_TTL_S``. A ping of Redis would say nothing about the worker; a worker
whose loop hangs stops its heartbeat (every <= 45 s idle, every 30 s while a job runs) and turns
unhealthy within two minutes.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import socket
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from backends.core.logs import setup_logging
from backends.core.settings import CoreSettings

if TYPE_CHECKING:
    from redis import Redis

DEFAULT_PRELOAD = "backends.detector.model"
WORKER_TTL_S = 60  # RQ's registration expiry; the worker heartbeats within it (RQ's default 420 s)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m backends.worker")
    parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    parser.add_argument("--health", action="store_true", help="exit 0 if a worker here is alive (healthcheck)")
    args = parser.parse_args(argv)
    settings = CoreSettings()
    setup_logging(settings.log_level)
    if not settings.redis_url:
        sys.exit("REDIS_URL is not set: without Redis the backends run their jobs in-process")
    if args.health:
        sys.exit(_report_health(settings.redis_url, settings.rq_queue))
    for module in filter(None, os.environ.get("RQ_PRELOAD", DEFAULT_PRELOAD).split(",")):
        try:
            importlib.import_module(module.strip())
        except ImportError as exc:
            logging.getLogger(__name__).warning("RQ_PRELOAD: %s not importable: %s", module, exc)

    from redis import Redis
    from rq import Queue, Worker

    connection = Redis.from_url(settings.redis_url)
    worker = Worker([Queue(settings.rq_queue, connection=connection)], connection=connection, worker_ttl=WORKER_TTL_S)
    worker.work(burst=args.burst, with_scheduler=False, logging_level=settings.log_level.upper())


def _report_health(redis_url: str, queue: str) -> int:
    from redis import Redis

    # a timeout for the check only: the worker's own connection blocks on BLPOP for 45 s
    problem = health_problem(Redis.from_url(redis_url, socket_timeout=5), queue)
    print(problem or "worker alive")
    return 1 if problem else 0


def health_problem(connection: Redis, queue: str) -> str | None:
    """None if a worker of this host, whose process is alive, listens on ``queue`` with a fresh
    heartbeat; else what is wrong, for the healthcheck's log."""
    from rq import Worker

    here = [w for w in Worker.all(connection=connection) if w.hostname == socket.gethostname() and _alive(w.pid)]
    listening = [w for w in here if queue in w.queue_names()]
    if not listening:
        return f"no live worker of {socket.gethostname()} is registered on queue {queue!r}"
    ages = [(datetime.now(UTC) - _utc(w.last_heartbeat)).total_seconds() for w in listening if w.last_heartbeat]
    if not ages or min(ages) > 2 * WORKER_TTL_S:
        return f"the worker's last heartbeat is {min(ages, default=float('inf')):.0f} s old (a hung worker)"
    return None


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


if __name__ == "__main__":
    main()
