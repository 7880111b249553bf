"""A loopback HTTP proxy in front of a real Label Studio that fails the requests a test picks.

A backend pointed at it (``LABEL_STUDIO_URL``) talks to the real server through it, so every body
and reply stays Label Studio's own; only the chosen requests get an error instead, as they would
when Label Studio restarts or a load balancer times out mid-job. Nothing else is faked.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

#: (method, path with query) -> an HTTP status to answer instead of forwarding, or None to forward
Fault = Callable[[str, str], "int | None"]
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


class FaultyProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.fault: Fault = lambda method, path: None
        self.failed: list[tuple[str, str]] = []  # the requests answered with an error
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = proxy.fault(self.command, self.path)
                if status is not None:
                    proxy.failed.append((self.command, self.path))
                    self._reply(status, b'{"detail": "failed by the test proxy"}', {"Content-Type": "application/json"})
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP | {"host"}}
                reply = requests.request(self.command, proxy.upstream + self.path, data=body, headers=headers,
                                         timeout=600, allow_redirects=False)
                self._reply(reply.status_code, reply.content,
                            {k: v for k, v in reply.headers.items() if k.lower() not in HOP_BY_HOP})

            def _reply(self, status: int, content: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _any

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
