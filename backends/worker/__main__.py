"""``python -m backends.worker``: an RQ worker for Label Loop's background jobs.

Run any number, on any machine that reaches ``REDIS_URL`` and shares ``DATA_DIR`` / ``MODEL_DIR``
(the journal and the model store) with the servers. Each job names the backend's model class, so one
worker serves every backend. ``RQ_PRELOAD`` (comma-separated modules) is imported once before the
worker forks, so jobs do not pay for importing torch and ultralytics each time.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from backends.core.logs import setup_logging
from backends.core.settings import CoreSettings

DEFAULT_PRELOAD = "backends.detector.model"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m backends.worker")
    parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    args = parser.parse_args(argv)
    settings = CoreSettings()
    setup_logging(settings.log_level)
    if not settings.redis_url:
        sys.exit("REDIS_URL is not set: without Redis the backends run their jobs in-process")
    for module in filter(None, os.environ.get("RQ_PRELOAD", DEFAULT_PRELOAD).split(",")):
        try:
            importlib.import_module(module.strip())
        except ImportError as exc:
            logging.getLogger(__name__).warning("RQ_PRELOAD: %s not importable: %s", module, exc)

    from redis import Redis
    from rq import Queue, Worker

    connection = Redis.from_url(settings.redis_url)
    worker = Worker([Queue(settings.rq_queue, connection=connection)], connection=connection)
    worker.work(burst=args.burst, with_scheduler=False, logging_level=settings.log_level.upper())


if __name__ == "__main__":
    main()
