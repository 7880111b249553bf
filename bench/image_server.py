"""One loopback HTTP server for the benchmarks' images, as Label Studio serves ``/data/upload`` files.

Each benchmark says what a path answers (``body_for(path) -> bytes | None``; None is a 404) and
keeps its own images; the serving, threads and quiet logs are here once.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable
from typing import Any

BodyFor = Callable[[str], "bytes | None"]


def serve(body_for: BodyFor, content_type: str = "application/octet-stream") -> tuple[str, http.server.ThreadingHTTPServer]:
    """Start a threaded server on a free loopback port; returns its base URL and the server (to
    ``shutdown()``; its thread is a daemon, so a benchmark that forgets does not hang at exit)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = body_for(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: Any) -> None:  # a line per image would drown the figures
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, name="bench-images", daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", server
