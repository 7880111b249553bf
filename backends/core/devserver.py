"""The development server (``WORKERS=0``, what ``make up`` runs): Werkzeug's, with a fixed pool of
request threads instead of a new thread per request.

PyTorch keeps per-thread state (thread pools, library handles) that a finished thread leaves
behind (pytorch/pytorch#64412). On an H100, the segmenter under Werkzeug's thread-per-request
server grew by ~0.14 MiB of RSS per new image, linearly over 3,000 images; long-lived threads, as
gunicorn's ``gthread`` workers have, bound that state by the pool size. The pool also caps how many
model calls run at once, as ``THREADS`` does under gunicorn.
"""

from __future__ import annotations

import queue
import socket
import threading
from typing import Any

from werkzeug.serving import BaseWSGIServer

from .buffering import PrereadSocket, RequestReader

#: seconds a connection may stay silent while its thread writes the reply (the request itself is
#: read before a thread sees it, within REQUEST_TIMEOUT_S: buffering.py)
IDLE_TIMEOUT_S = 30.0


class PooledWSGIServer(BaseWSGIServer):
    """Werkzeug closes the connection after each reply (``Connection: close``), so a client that
    keeps its session holds no thread; a silent one is dropped after ``IDLE_TIMEOUT_S``."""

    multithread = True

    def __init__(self, host: str, port: int, app: Any, threads: int, request_timeout_s: float = 10.0) -> None:
        # the queue first: a failed bind calls server_close() from inside the base __init__
        self._requests: queue.Queue[tuple[Any, Any]] = queue.Queue()
        super().__init__(host, port, app)
        # connections wait for their whole request there, not in a request thread (buffering.py)
        self._reader = RequestReader(lambda sock, address, data: self._requests.put((PrereadSocket(sock, data), address)),
                                     timeout_s=request_timeout_s)
        for i in range(max(1, threads)):
            # daemon threads, as Werkzeug's own: Ctrl-C does not wait for a running model call
            threading.Thread(target=self._serve_requests, name=f"request-{i}", daemon=True).start()

    def process_request(self, request: socket.socket, client_address: Any) -> None:  # type: ignore[override]
        self._reader.add(request, client_address)

    def _serve_requests(self) -> None:
        while True:
            request, client_address = self._requests.get()
            # what socketserver.ThreadingMixIn does in its per-request thread
            try:
                request.settimeout(IDLE_TIMEOUT_S)  # per socket operation: a long model call is not cut
                self.finish_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
            finally:
                self.shutdown_request(request)


def serve_pooled(host: str, port: int, app: Any, threads: int, request_timeout_s: float = 10.0) -> None:
    server = PooledWSGIServer(host, port, app, threads, request_timeout_s)
    server.log_startup()
    try:
        server.serve_forever()
    finally:
        server.server_close()
