"""QueueWriter: only a task deleted meanwhile is skipped; anything else fails the job (and the job
queue retries it), instead of counting every task as skipped and reporting success."""

import socket

import pytest

from backends.active.queue import QueueEntry, QueueWriter, generation, latest_generation, task_gone
from backends.active.scoring import is_labeled
from backends.core.labelstudio import LabelStudioClient


class ApiError(Exception):
    def __init__(self, status_code):
        self.status_code = status_code


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_label_studio_down_fails_the_write():
    ls = LabelStudioClient(f"http://127.0.0.1:{closed_port()}", "a-token", timeout=2)
    writer = QueueWriter(ls, 1, "active-margin@active-v1", "active-")
    with pytest.raises(Exception) as raised:
        writer.write([QueueEntry(1, 0.0, []), QueueEntry(2, 1.0, [])], {})
    assert not task_gone(raised.value)
    with pytest.raises(Exception):
        writer.delete_versions(["active-margin@active-v0"])


def test_only_400_and_404_mean_the_task_is_gone():
    assert task_gone(ApiError(404)) and task_gone(ApiError(400))
    assert not any(task_gone(e) for e in (ApiError(401), ApiError(500), ConnectionError("refused")))


def test_deleting_an_empty_version_is_refused_it_would_delete_every_prediction():
    with pytest.raises(ValueError):
        LabelStudioClient("http://127.0.0.1:1", "t").delete_model_version(1, "")
    writer = QueueWriter(LabelStudioClient("http://127.0.0.1:1", "t"), 1, "active-margin@active-v1", "active-")
    assert writer.delete_versions(["", "active-margin@active-v1"]) == {}, "neither empty nor the current version"


def test_a_skipped_task_is_still_unlabeled():
    assert not is_labeled({"annotations": [{"was_cancelled": True}]})
    assert is_labeled({"annotations": [{"was_cancelled": True}, {"was_cancelled": False}]})
    assert not is_labeled({"annotations": []}) and not is_labeled({})


def test_an_empty_disagreement_list_shows_no_task_not_every_task():
    from backends.active.queue import task_ids_filter
    assert [item["value"] for item in task_ids_filter([])["items"]] == [-1]
    assert [item["value"] for item in task_ids_filter([3, 5])["items"]] == [3, 5]


def test_requests_needed_counts_what_writing_in_place_would_send():
    writer = QueueWriter(LabelStudioClient("http://127.0.0.1:1", "t"), 1, "active-margin@v1", "active-")
    mine = lambda pid, score: {"id": pid, "model_version": "active-margin@v1", "score": score}  # noqa: E731
    tasks = {1: {"predictions": [mine(10, 0.0)]},                  # unchanged
             2: {"predictions": [mine(11, 0.3), mine(12, 0.3)]},  # score moved, and a duplicate
             3: {"predictions": [{"id": 13, "model_version": "other", "score": 0.9}]}}  # not ours: create
    entries = [QueueEntry(1, 0.0, []), QueueEntry(2, 0.5, []), QueueEntry(3, 1.0, []),
               *(QueueEntry(100 + i, 1.0, []) for i in range(250))]  # new tasks: two bulk imports
    assert writer.requests_needed(entries, tasks) == 1 + 1 + 2  # one PATCH, one DELETE, two bulk imports
    assert writer.requests_needed(entries[:1], tasks) == 0


def test_queue_generations():
    base = "active-margin@active-v3"
    assert generation(base, 1) == base and generation(base, 2) == base + "~2"
    assert latest_generation(base, []) == 1 and latest_generation(base, [base]) == 1
    others = ["active-margin@active-v3~7x", "active-margin@active-v31~9", "active-hybrid@active-v3~5"]
    assert latest_generation(base, [base, base + "~2", base + "~10", *others]) == 10


def test_a_big_delete_waits_for_label_studio_to_finish_it():
    """Label Studio answers a model-version delete once every prediction is gone (34 s for 8,800):
    the client's usual timeout must not cut it (the retry then found nothing and counted 0)."""
    import http.server
    import json
    import threading
    import time

    from backends.core import labelstudio

    class SlowDelete(http.server.BaseHTTPRequestHandler):
        def do_DELETE(self):
            time.sleep(1.5)  # longer than the client's timeout of 1 s
            body = json.dumps({"deleted_predictions": 300}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowDelete)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ls = LabelStudioClient(f"http://127.0.0.1:{server.server_port}", "a-token", timeout=1)
        with pytest.raises(Exception, match="(?i)timed out"):
            ls.delete_model_version(1, "active-margin@active-v0")  # the usual timeout: cut short
        assert 300 * labelstudio.DELETE_S_PER_PREDICTION >= 1
        writer = QueueWriter(ls, 1, "active-margin@active-v1", "active-")
        assert writer.delete_versions(["active-margin@active-v0"], at_most=300) == {"active-margin@active-v0": 300}
    finally:
        server.shutdown()
