"""Per-route body limits and JSON nesting: refused with a 4xx that says why, nothing journaled."""

from __future__ import annotations

import json
import sqlite3

import pytest
import requests

from backends.core.app import create_app
from backends.core.limits import MAX_JSON_DEPTH, MB, nesting_depth
from tests.conftest import sample
from tests.toy_backend import ToyModel


@pytest.fixture
def client(settings):
    return create_app(ToyModel, settings, start_worker=False).test_client()


def events(settings) -> int:
    with sqlite3.connect(settings.journal_path) as db:
        return db.execute("SELECT COUNT(*) FROM events").fetchone()[0]


def padded_webhook(size: int) -> bytes:
    body = sample("webhook-annotation_created")
    body["task"]["data"]["note"] = "x" * size
    return json.dumps(body).encode()


def test_a_50_mb_webhook_is_refused_before_it_is_read_and_never_journaled(client, settings):
    reply = client.post("/webhook", data=padded_webhook(50 * MB), content_type="application/json")
    assert reply.status_code == 413
    assert "over the 8 MB that /webhook accepts (WEBHOOK_MAX_MB)" in reply.get_json()["message"]
    assert events(settings) == 0
    ok = client.post("/webhook", data=padded_webhook(4 * MB), content_type="application/json")  # brush-sized
    assert ok.status_code == 200 and events(settings) == 1


@pytest.mark.parametrize("route, limit_mb, setting", [("/predict", 32, "PREDICT_MAX_MB"), ("/setup", 2, "fixed"),
                                                       ("/jobs", 2, "fixed")])
def test_every_route_has_its_own_limit(client, route, limit_mb, setting):
    reply = client.post(route, data=b"{" + b" " * (limit_mb * MB) + b"}", content_type="application/json")
    assert reply.status_code == 413 and f"{limit_mb} MB that {route} accepts ({setting})" in reply.get_json()["message"]


def test_the_limits_are_settings(settings):
    client = create_app(ToyModel, settings.model_copy(update={"webhook_max_mb": 1}), start_worker=False).test_client()
    reply = client.post("/webhook", data=padded_webhook(2 * MB), content_type="application/json")
    assert reply.status_code == 413 and "1 MB" in reply.get_json()["message"]


@pytest.mark.parametrize("workers", [0, 1])
def test_a_chunked_body_without_length_is_cut_at_the_limit(start_backend, tmp_path, workers):
    """No Content-Length to refuse up front: the stream is cut once it passes the limit, under the
    development server and gunicorn alike."""
    data = tmp_path / "data"
    _, url = start_backend("tests.toy_backend", {"DATA_DIR": data, "WORKERS": workers, "WARMUP": "false"})

    def chunks():
        for _ in range(12):
            yield b" " * MB

    reply = requests.post(f"{url}/webhook", data=chunks(), headers={"Content-Type": "application/json"}, timeout=30)
    assert reply.status_code == 413
    with sqlite3.connect(data / "journal.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 0


@pytest.mark.parametrize("route", ["/webhook", "/predict", "/setup"])
@pytest.mark.parametrize("depth", [100_000, MAX_JSON_DEPTH + 1])
def test_deep_nesting_is_a_400_that_says_so(client, route, depth):
    reply = client.post(route, data=b"[" * depth + b"]" * depth, content_type="application/json")
    assert reply.status_code == 400, reply.get_data(as_text=True)
    assert f"nests deeper than {MAX_JSON_DEPTH} levels" in reply.get_json()["message"]


def test_real_bodies_are_far_from_the_depth_limit():
    for name in ("predict", "predict-interactive", "setup", "webhook-annotation_created", "ui-retrieve-predictions"):
        assert nesting_depth(json.dumps(sample(name)).encode()) <= 10, name


def test_nesting_depth_counts_levels_and_not_brackets_inside_strings():
    assert nesting_depth(b"1") == 0 and nesting_depth(b"[]") == 1
    assert nesting_depth(json.dumps({"a": [1, {"b": []}]}).encode()) == 4
    assert nesting_depth(json.dumps({"label": "[[[{{{", "x": ['"]]]\\[', [2]]}).encode()) == 3
    assert nesting_depth(b"[" * 1000, stop_at=65) == 65
