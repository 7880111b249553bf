"""Slow clients wait outside the request threads, under the development server and gunicorn."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import requests

from tests.conftest import sample

SLOW = 16  # 8 were enough to starve the development server's 8 threads, 16 gunicorn's


def trickle(host: str, port: int, stop: threading.Event, replies: list[bytes], body: bool = False) -> None:
    """A client sending its request a byte every 0.5 s (never idle long enough for a per-read timeout)."""
    sock = socket.create_connection((host, port), timeout=30)
    head = b"POST /setup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    if body:  # whole headers at once, then a body that never finishes
        sock.sendall(head + b"Content-Length: 4000\r\n\r\n")
        head = b"{" + b" " * 3998
    try:
        for byte in head:
            if stop.is_set():
                break
            sock.sendall(bytes([byte]))
            time.sleep(0.5)
    except OSError:  # closed by the server with its 408: what we wait for
        pass
    try:
        replies.append(sock.recv(4096))
    except OSError:
        replies.append(b"")
    sock.close()


@pytest.mark.parametrize("workers", [0, 1])
def test_slow_clients_do_not_hold_the_threads(start_backend, tmp_path, workers):
    _, url = start_backend("tests.toy_backend", {"DATA_DIR": tmp_path / "d", "WORKERS": workers, "THREADS": 2,
                                                 "REQUEST_TIMEOUT_S": 4, "WARMUP": "false"})
    host, port = url.rsplit("/", 1)[1].split(":")
    stop, replies = threading.Event(), []
    clients = [threading.Thread(target=trickle, args=(host, int(port), stop, replies, i % 2 == 1)) for i in range(SLOW)]
    for client in clients:
        client.start()
    time.sleep(1.5)  # every slow client is connected and sending
    latencies = []
    for _ in range(20):
        started = time.perf_counter()
        assert requests.get(f"{url}/health", timeout=3).status_code == 200
        assert requests.post(f"{url}/setup", json=sample("setup"), timeout=3).status_code == 200
        latencies.append(time.perf_counter() - started)
    assert max(latencies) < 2.0, latencies  # they waited behind no slow client (it was 10 s timeouts)
    for client in clients:
        client.join(timeout=20)
    stop.set()
    late_headers = [r for r in replies[: SLOW] if r.startswith(b"HTTP/1.1 408")]
    assert late_headers, replies  # the header tricklers were cut off at REQUEST_TIMEOUT_S
    assert b"did not arrive in time" in late_headers[0]


@pytest.mark.parametrize("workers", [0, 1])
def test_expect_100_continue_and_a_body_in_pieces(start_backend, tmp_path, workers):
    _, url = start_backend("tests.toy_backend", {"DATA_DIR": tmp_path / "d", "WORKERS": workers, "WARMUP": "false"})
    host, port = url.rsplit("/", 1)[1].split(":")
    body = json.dumps(sample("setup")).encode()
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(b"POST /setup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body))
    assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue")  # curl waits for this before an upload
    for i in range(0, len(body), 7):
        sock.sendall(body[i:i + 7])
        time.sleep(0.01)
    reply = b""
    while chunk := sock.recv(4096):
        reply += chunk
    assert reply.split(b"\r\n", 1)[0] == b"HTTP/1.1 200 OK" and b'"model_version"' in reply, reply[:300]


def test_unfinished_requests_share_one_memory_budget(monkeypatch):
    """Many slow large bodies cannot add up: past the budget the connection adding more gets 503,
    and a finished request gives its share back."""
    from backends.core import buffering

    monkeypatch.setattr(buffering, "MAX_BUFFERED_TOTAL", 64 * 1024)
    handed: list[bytes] = []
    reader = buffering.RequestReader(lambda sock, address, data: (handed.append(data), sock.close()), timeout_s=10)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def connect() -> socket.socket:
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        reader.add(*listener.accept())
        return client

    head = b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 50000\r\n\r\n"
    first, second = connect(), connect()
    first.sendall(head + b"x" * 40_000)  # unfinished: 40 KB held
    time.sleep(0.3)
    second.sendall(head + b"y" * 40_000)  # would hold 80 KB: over the budget
    assert second.recv(4096).startswith(b"HTTP/1.1 503")
    first.sendall(b"x" * 10_000)  # finished: handed over, its 50 KB given back
    deadline = time.time() + 5
    while not handed and time.time() < deadline:
        time.sleep(0.05)
    assert handed and handed[0].endswith(b"x" * 50_000)
    third = connect()
    third.sendall(head + b"z" * 50_000)
    deadline = time.time() + 5
    while len(handed) < 2 and time.time() < deadline:
        time.sleep(0.05)
    assert len(handed) == 2 and reader._buffered_total == 0
    listener.close()
