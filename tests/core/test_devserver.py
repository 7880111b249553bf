import threading

import requests

from backends.core.devserver import PooledWSGIServer


def thread_name_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [threading.current_thread().name.encode()]


def start(threads):
    server = PooledWSGIServer("127.0.0.1", 0, thread_name_app, threads)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


def test_requests_run_on_a_fixed_pool_of_threads():
    # Werkzeug's own threaded server starts a thread per request; PyTorch state per thread piles up
    server, url = start(threads=2)
    try:
        names = {requests.get(url, timeout=10).text for _ in range(20)}
    finally:
        server.shutdown()
        server.server_close()
    assert 1 <= len(names) <= 2 and all(name.startswith("request") for name in names)


def test_idle_keep_alive_clients_do_not_hold_the_pool():
    server, url = start(threads=2)
    sessions = [requests.Session() for _ in range(3)]
    try:
        for session in sessions:  # three clients that keep their connection, more than the threads
            assert session.get(url, timeout=10).status_code == 200
        assert requests.get(url, timeout=10).status_code == 200
    finally:
        for session in sessions:
            session.close()
        server.shutdown()
        server.server_close()
