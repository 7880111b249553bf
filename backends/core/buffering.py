"""Whole requests before threads: slow clients wait in one selector, not in the request threads.

A request thread that reads a request itself is held for as long as the client takes to send it:
30 connections sending a header byte every 5 s (a per-read idle timeout never trips) held every
thread of the development server and of gunicorn's ``gthread`` workers, and ``/health`` (which
Label Studio gives 1 s) timed out. Here one thread per process reads every connection's request,
non-blocking, and hands it to the request threads only once it is complete: headers within
``REQUEST_TIMEOUT_S``, then a body of up to ``BUFFERED_BODY_MAX`` within a deadline that grows
with its size. A client that misses its deadline gets a 408 and is closed; holding one costs a
few KB of buffer, never a thread. Larger bodies (weight uploads, which need auth) are handed over
once their headers are in, and the app refuses an oversized one from its Content-Length alone.

``PrereadSocket`` is the socket the request threads see: reads come from the buffer first. Both
servers close a connection after each reply, so the buffer always holds a whole request.
"""

from __future__ import annotations

import io
import json
import logging
import queue
import re
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

#: bodies up to this size are buffered before a thread sees them (the largest JSON route, /predict)
BUFFERED_BODY_MAX = 32 * 1024 * 1024
#: headers larger than this get a 431
MAX_HEADER_BYTES = 64 * 1024
#: a body's deadline: this much time once its headers are in, plus its size at this slowest rate
BODY_GRACE_S = 10.0
BODY_MIN_RATE = 256 * 1024  # bytes per second
#: connections waiting for their request at once, per process; more are refused with 503
MAX_PENDING = 1024
#: bytes held for unfinished requests at once, per process: past it, the connection that would
#: add more is refused with 503 (many slow 32 MB bodies must not add up to the machine's memory)
MAX_BUFFERED_TOTAL = 256 * 1024 * 1024
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_EXPECT = re.compile(rb"\r\nexpect:[ \t]*100-continue[ \t]*(?=\r\n)", re.IGNORECASE)

Ready = Callable[[socket.socket, Any, bytes], None]


@dataclass
class _Pending:
    sock: socket.socket
    address: Any
    deadline: float
    buffer: bytearray = field(default_factory=bytearray)
    complete_at: int | None = None  # buffer length at which the request is whole
    chunked: bool = False


class RequestReader:
    """Reads requests on one thread and calls ``ready(sock, address, request_bytes)`` for each
    complete one (on that thread: ``ready`` must only queue it). ``dropped()`` is called for a
    connection closed before it was handed over."""

    def __init__(self, ready: Ready, *, timeout_s: float, dropped: Callable[[], None] | None = None) -> None:
        self._ready, self._dropped, self._timeout_s = ready, dropped or (lambda: None), timeout_s
        self._selector = selectors.DefaultSelector()
        self._incoming: queue.SimpleQueue[tuple[socket.socket, Any]] = queue.SimpleQueue()
        self._wake_out, self._wake_in = socket.socketpair()
        self._wake_out.setblocking(False)
        self._selector.register(self._wake_out, selectors.EVENT_READ, None)
        self._pending: dict[int, _Pending] = {}
        self._buffered_total = 0
        threading.Thread(target=self._run, name="request-reader", daemon=True).start()

    def add(self, sock: socket.socket, address: Any) -> None:
        """Take an accepted connection (from any thread)."""
        self._incoming.put((sock, address))
        try:
            self._wake_in.send(b"\0")
        except BlockingIOError:  # the wake-up pipe is full: the reader is awake anyway
            pass

    # -- the reader thread ----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                for key, _ in self._selector.select(timeout=0.25):
                    if key.data is None:
                        self._take_incoming()
                    else:
                        self._read(key.data)
                self._expire(time.monotonic())
            except Exception:  # the reader must outlive any one connection's surprise
                log.exception("request reader: unexpected error")

    def _take_incoming(self) -> None:
        try:
            while self._wake_out.recv(4096):
                pass
        except BlockingIOError:
            pass
        while not self._incoming.empty():
            sock, address = self._incoming.get()
            if len(self._pending) >= MAX_PENDING:
                self._refuse(sock, 503, "too many connections are still sending their request")
                self._dropped()
                continue
            sock.setblocking(False)
            pending = _Pending(sock, address, time.monotonic() + self._timeout_s)
            self._pending[sock.fileno()] = pending
            self._selector.register(sock, selectors.EVENT_READ, pending)

    def _read(self, pending: _Pending) -> None:
        try:
            data = pending.sock.recv(256 * 1024)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away before sending its request
            self._forget(pending)
            pending.sock.close()
            self._dropped()
            return
        if self._buffered_total + len(data) > MAX_BUFFERED_TOTAL:
            self._close_with(pending, 503, "the server holds too many unfinished requests; retry shortly")
            return
        pending.buffer += data
        self._buffered_total += len(data)
        if pending.complete_at is None and not pending.chunked and not self._headers_done(pending):
            return
        if self._whole(pending):
            self._forget(pending)
            self._hand_over(pending)

    def _headers_done(self, pending: _Pending) -> bool:
        """Parse the headers once they are in; False while they are still coming."""
        end = pending.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(pending.buffer) > MAX_HEADER_BYTES:
                self._close_with(pending, 431, "request headers are too large")
            return False
        headers = _header_fields(bytes(pending.buffer[:end]))
        if headers.get("expect", "").lower() == "100-continue":
            _send_quietly(pending.sock, _CONTINUE)  # the client waits for it before sending the body
            before = len(pending.buffer)
            pending.buffer[: end + 4] = _EXPECT.sub(b"", bytes(pending.buffer[: end + 4]))  # answered: not twice
            self._buffered_total -= before - len(pending.buffer)
            end = pending.buffer.find(b"\r\n\r\n")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            pending.chunked = True
        else:
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                length = 0  # the server answers the malformed header itself
            # a body too large to buffer goes to a thread as it is; the app refuses it by size
            pending.complete_at = end + 4 + (length if 0 <= length <= BUFFERED_BODY_MAX else 0)
            pending.deadline = time.monotonic() + BODY_GRACE_S + max(length, 0) / BODY_MIN_RATE
        if pending.chunked:
            pending.deadline = time.monotonic() + BODY_GRACE_S + BUFFERED_BODY_MAX / BODY_MIN_RATE
        return True

    @staticmethod
    def _whole(pending: _Pending) -> bool:
        if pending.chunked:  # the last chunk (no trailers, as every client here sends), or too much to buffer
            return pending.buffer.endswith(b"\r\n0\r\n\r\n") or len(pending.buffer) > BUFFERED_BODY_MAX
        return pending.complete_at is not None and len(pending.buffer) >= pending.complete_at

    def _hand_over(self, pending: _Pending) -> None:
        try:
            self._ready(pending.sock, pending.address, bytes(pending.buffer))
        except Exception:
            log.exception("request reader: handing a request over failed")
            pending.sock.close()
            self._dropped()

    def _expire(self, now: float) -> None:
        for pending in [p for p in self._pending.values() if p.deadline <= now]:
            what = "headers" if pending.complete_at is None and not pending.chunked else "body"
            self._close_with(pending, 408, f"the request's {what} did not arrive in time")

    def _close_with(self, pending: _Pending, status: int, message: str) -> None:
        self._forget(pending)
        self._refuse(pending.sock, status, message)
        self._dropped()

    def _forget(self, pending: _Pending) -> None:
        if self._pending.pop(pending.sock.fileno(), None) is not None:
            self._buffered_total -= len(pending.buffer)
        try:
            self._selector.unregister(pending.sock)
        except (KeyError, ValueError):
            pass

    @staticmethod
    def _refuse(sock: socket.socket, status: int, message: str) -> None:
        reason = {408: "Request Timeout", 431: "Request Header Fields Too Large", 503: "Service Unavailable"}[status]
        body = json.dumps({"error": reason.lower().replace(" ", "_"), "message": message}).encode()
        head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n").encode()
        _send_quietly(sock, head + body)
        sock.close()


def _header_fields(head: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, sep, value = line.partition(":")
        if sep:
            fields[name.strip().lower()] = value.strip()
    return fields


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.setblocking(True)
        sock.settimeout(1.0)
        sock.sendall(data)
    except OSError:
        pass
    finally:
        try:
            sock.setblocking(False)
        except OSError:
            pass


class PrereadSocket:
    """A connected socket whose first bytes were already read: reads drain ``data`` first, then
    come from the socket; everything else is the socket's."""

    def __init__(self, sock: socket.socket, data: bytes) -> None:
        self._sock = sock
        self._data = memoryview(data)

    def recv(self, size: int, flags: int = 0) -> bytes:
        if self._data:
            taken, self._data = self._data[:size], self._data[size:]
            return bytes(taken)
        return self._sock.recv(size, flags)

    def recv_into(self, buffer: Any, size: int = 0, flags: int = 0) -> int:
        if self._data:
            size = min(size or len(buffer), len(self._data))
            buffer[:size] = self._data[:size]
            self._data = self._data[size:]
            return size
        return self._sock.recv_into(buffer, size, flags)

    def makefile(self, mode: str = "r", buffering: int | None = None, **kwargs: Any) -> Any:
        if "r" not in mode:
            # the mode is forwarded as the caller gave it; typeshed's overloads accept only literal modes
            sock_makefile: Callable[..., Any] = self._sock.makefile
            return sock_makefile(mode, -1 if buffering is None else buffering, **kwargs)
        return io.BufferedReader(_Reader(self), buffer_size=max(buffering or 0, io.DEFAULT_BUFFER_SIZE))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _Reader(io.RawIOBase):
    def __init__(self, sock: PrereadSocket) -> None:
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._sock.recv_into(buffer)
