"""PredictionWriter: only a task deleted meanwhile is skipped; anything else fails the job (and the
job queue retries it), instead of counting every task as skipped and reporting success."""

import http.server
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
import requests

from backends.core.labelstudio import LabelStudioClient
from backends.core.predictions import BULK, PredictionWriter, TaskPrediction, task_gone


class ApiError(Exception):
    def __init__(self, status_code):
        self.status_code = status_code


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_label_studio_down_fails_the_write():
    ls = LabelStudioClient(f"http://127.0.0.1:{closed_port()}", "a-token", timeout=2)
    writer = PredictionWriter(ls, 1, "active-margin@active-v1", "active-")
    with pytest.raises(httpx.ConnectError) as raised:  # the SDK's transport
        writer.write([TaskPrediction(1, 0.0, []), TaskPrediction(2, 1.0, [])], {})
    assert not task_gone(raised.value)
    with pytest.raises(requests.ConnectionError):  # deletes go through requests (their own timeout)
        writer.delete_versions(["active-margin@active-v0"])


def test_only_400_and_404_mean_the_task_is_gone():
    assert task_gone(ApiError(404)) and task_gone(ApiError(400))
    assert not any(task_gone(e) for e in (ApiError(401), ApiError(500), ConnectionError("refused")))


def test_deleting_an_empty_version_is_refused_it_would_delete_every_prediction():
    with pytest.raises(ValueError):
        LabelStudioClient("http://127.0.0.1:1", "t").delete_model_version(1, "")
    writer = PredictionWriter(LabelStudioClient("http://127.0.0.1:1", "t"), 1, "active-margin@active-v1", "active-")
    assert writer.delete_versions(["", "active-margin@active-v1"]) == {}, "neither empty nor the current version"


def test_requests_needed_counts_what_writing_in_place_would_send():
    writer = PredictionWriter(LabelStudioClient("http://127.0.0.1:1", "t"), 1, "active-margin@v1", "active-")
    mine = lambda pid, score: {"id": pid, "model_version": "active-margin@v1", "score": score}  # noqa: E731
    tasks = {1: {"predictions": [mine(10, 0.0)]},                  # unchanged
             2: {"predictions": [mine(11, 0.3), mine(12, 0.3)]},  # score moved, and a duplicate
             3: {"predictions": [{"id": 13, "model_version": "other", "score": 0.9}]}}  # not ours: create
    entries = [TaskPrediction(1, 0.0, []), TaskPrediction(2, 0.5, []), TaskPrediction(3, 1.0, []),
               *(TaskPrediction(100 + i, 1.0, []) for i in range(250))]  # new tasks: two bulk imports
    assert writer.requests_needed(entries, tasks) == 1 + 1 + 2  # one PATCH, one DELETE, two bulk imports
    assert writer.requests_needed(entries[:1], tasks) == 0


@contextmanager
def slow_label_studio(method: str, status: int, reply: dict, wait_s: Callable[[int], float]) -> Iterator[str]:
    """A stand-in for a busy Label Studio: every ``method`` request (the n-th, from 1) is answered
    ``status`` and ``reply`` after ``wait_s(n)`` seconds. Yields its URL."""
    calls = 0

    class Slow(http.server.BaseHTTPRequestHandler):
        def _answer(self):
            nonlocal calls
            calls += 1
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            time.sleep(wait_s(calls))
            body = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    setattr(Slow, f"do_{method}", Slow._answer)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


def test_a_big_delete_waits_for_label_studio_to_finish_it():
    """Label Studio answers a model-version delete once every prediction is gone (34 s for 8,800):
    the client's usual timeout must not cut it (the retry then found nothing and counted 0)."""
    from backends.core import labelstudio

    # each delete takes longer than the client's timeout of 1 s
    with slow_label_studio("DELETE", 200, {"deleted_predictions": 300}, lambda n: 1.5) as url:
        ls = LabelStudioClient(url, "a-token", timeout=1)
        with pytest.raises(Exception, match="(?i)timed out"):
            ls.delete_model_version(1, "active-margin@active-v0")  # the usual timeout: cut short
        assert 300 * labelstudio.DELETE_S_PER_PREDICTION >= 1
        writer = PredictionWriter(ls, 1, "active-margin@active-v1", "active-")
        assert writer.delete_versions(["active-margin@active-v0"], at_most=300) == {"active-margin@active-v0": 300}


def test_bulk_imports_that_slow_down_as_the_project_grows_are_waited_for():
    """Label Studio without its linear-import flag recounts the project after each bulk import, so
    each call is slower than the last (past 30 s by the 60th call at 32,000 tasks, and the scoring
    job failed on a timeout). Here each import takes 0.35 s longer than the one before, against a
    1 s client timeout: the writer's wait follows the calls it measured, so none is cut short."""
    calls: list[int] = []

    def slower_each_time(n: int) -> float:
        calls.append(n)
        return 0.35 * n

    with slow_label_studio("POST", 201, {"created": 1}, slower_each_time) as url:
        writer = PredictionWriter(LabelStudioClient(url, "a-token", timeout=1), 1, "active-margin@active-v1", "active-")
        entries = [TaskPrediction(i, i / 1000, []) for i in range(4 * BULK)]  # 4 imports: 0.35, 0.7, 1.05, 1.4 s
        assert writer.write(entries, {})["created"] == 4 * BULK
        assert len(calls) == 4, "no import was cut short and sent again"
        # the next job's writer (a re-score) starts from what was measured, not from the client's 1 s
        again = PredictionWriter(LabelStudioClient(url, "a-token", timeout=1), 1, "active-margin@active-v2", "active-")
        assert again.write(entries[:BULK], {})["created"] == BULK and len(calls) == 5
