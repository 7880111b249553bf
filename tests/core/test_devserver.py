import socket
import threading

import pytest
import requests

from backends.core import devserver
from backends.core.devserver import PooledWSGIServer


def thread_name_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [threading.current_thread().name.encode()]


@pytest.fixture
def serve():
    servers = []

    def start(threads):
        server = PooledWSGIServer("127.0.0.1", 0, thread_name_app, threads)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server, f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_requests_run_on_a_fixed_pool_of_threads(serve):
    # Werkzeug's own threaded server starts a thread per request; PyTorch state per thread piles up
    _, url = serve(threads=2)
    names = {requests.get(url, timeout=10).text for _ in range(20)}
    assert 1 <= len(names) <= 2 and all(name.startswith("request-") for name in names)


def test_clients_that_keep_their_session_do_not_hold_the_pool(serve):
    _, url = serve(threads=2)
    sessions = [requests.Session() for _ in range(3)]
    try:
        for session in sessions:
            assert session.get(url, timeout=10).status_code == 200
        assert requests.get(url, timeout=10).status_code == 200
    finally:
        for session in sessions:
            session.close()


def test_silent_connections_are_dropped_instead_of_holding_every_thread(serve, monkeypatch):
    monkeypatch.setattr(devserver, "IDLE_TIMEOUT_S", 0.5)
    server, url = serve(threads=2)
    silent = [socket.create_connection(("127.0.0.1", server.server_port)) for _ in range(2)]
    try:
        assert requests.get(url, timeout=10).status_code == 200
    finally:
        for sock in silent:
            sock.close()


def test_a_port_in_use_is_werkzeugs_clear_exit_not_a_traceback():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(SystemExit):
            PooledWSGIServer("127.0.0.1", taken.getsockname()[1], thread_name_app, 2)
