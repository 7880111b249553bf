"""The development server (``WORKERS=0``, what ``make up`` runs): Werkzeug's, with a fixed pool of
request threads instead of a new thread per request.

PyTorch keeps per-thread state (thread pools, library handles) that a finished thread leaves
behind (pytorch/pytorch#64412): on an H100, the segmenter under Werkzeug's thread-per-request
server grew by ~0.14 MiB of RSS per request, linearly over 3,000 requests. Long-lived threads, as
gunicorn's ``gthread`` workers have, bound that state by the pool size; the pool also caps how many
model calls run at once, as ``THREADS`` does under gunicorn.
"""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from werkzeug.serving import BaseWSGIServer


class PooledWSGIServer(BaseWSGIServer):
    """Werkzeug closes the connection after each reply (``Connection: close``), so an idle client
    never holds a pool thread (tested)."""

    multithread = True

    def __init__(self, host: str, port: int, app: Any, threads: int) -> None:
        super().__init__(host, port, app)
        self.pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="request")

    def process_request(self, request: socket.socket, client_address: Any) -> None:  # type: ignore[override]
        self.pool.submit(self._handle, request, client_address)

    def _handle(self, request: socket.socket, client_address: Any) -> None:
        # what socketserver.ThreadingMixIn does in its per-request thread
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        self.pool.shutdown(wait=False, cancel_futures=True)


def serve_pooled(host: str, port: int, app: Any, threads: int) -> None:
    server = PooledWSGIServer(host, port, app, threads)
    server.log_startup()
    try:
        server.serve_forever()
    finally:
        server.server_close()
