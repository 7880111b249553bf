"""gunicorn's ``gthread`` worker with whole requests buffered before a thread sees them.

The stock worker hands a connection to a thread as soon as its first byte arrives, and the thread
then blocks reading the rest: a client trickling its headers holds a thread (see ``buffering``).
Here accepted connections go to a ``RequestReader`` instead; a complete request comes back
through gunicorn's own method queue (the worker's loop is single-threaded) and is served as a
connection whose data is already there. Keep-alive is off (``cli`` sets ``keepalive = 0``), so a
connection carries one request and the buffer always holds all of it.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

from gunicorn.workers.gthread import TConn, ThreadWorker

from .buffering import PrereadSocket, RequestReader


class BufferingThreadWorker(ThreadWorker):
    def init_process(self) -> None:
        from .settings import CoreSettings

        self.reader = RequestReader(self._buffered, timeout_s=CoreSettings().request_timeout_s,
                                    dropped=lambda: self.method_queue.defer(self._forget_one))
        super().init_process()

    def accept(self, listener: Any) -> None:
        try:
            client, address = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        self.reader.add(client, (address, listener.getsockname()))

    def _buffered(self, client: socket.socket, where: Any, data: bytes) -> None:
        """On the reader's thread: queue the request for the worker's loop."""
        self.method_queue.defer(self._serve_buffered, client, where, data)

    def _serve_buffered(self, client: socket.socket, where: Any, data: bytes) -> None:
        address, server = where
        conn = TConn(self.cfg, PrereadSocket(client, data), address, server)
        conn.data_ready = True  # do not wait for readability: the request is in the buffer
        self.enqueue_req(conn)

    def _forget_one(self) -> None:
        self.nr_conns -= 1
