"""``python -m backends.<name> [--host H] [--port N] [--workers W]``: serve a backend.

``--workers 0`` (the default) runs Werkzeug's development server with ``--threads`` request threads
(see ``devserver``), handy under a debugger;
``--workers W`` (W >= 1) runs the same app under gunicorn with W processes of ``--threads`` threads,
which is what production and the Docker images use.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

from .app import create_app
from .model import LabelLoopModel


def serve(model_class: type[LabelLoopModel], argv: Sequence[str] | None = None, default_port: int = 9090) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m backends.{model_class.backend}")
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", default_port)))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", 0)),
                        help="gunicorn worker processes (0: development server)")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("THREADS", 8)))
    args = parser.parse_args(argv)
    if args.workers <= 0:
        from .devserver import serve_pooled
        from .settings import CoreSettings

        serve_pooled(args.host, args.port, create_app(model_class), args.threads, CoreSettings().request_timeout_s)
        return
    _gunicorn(model_class, args)


def _gunicorn(model_class: type[LabelLoopModel], args: argparse.Namespace) -> None:
    from gunicorn.app.base import BaseApplication

    class Server(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{args.host}:{args.port}")
            self.cfg.set("workers", args.workers)
            self.cfg.set("threads", args.threads)
            # gthread whose connections reach a thread only once their request is whole
            self.cfg.set("worker_class", "backends.core.gthread_buffered.BufferingThreadWorker")
            self.cfg.set("keepalive", 0)  # one request per connection: the buffer holds all of it
            # /predict may run a model for a while on CPU; Label Studio itself waits 100 s.
            self.cfg.set("timeout", 120)
            self.cfg.set("graceful_timeout", 30)

        def load(self) -> Any:
            # Each worker builds its own app after the fork: own SQLite connections, own job thread.
            return create_app(model_class)

    Server().run()
