"""Property-based fuzzing of the protocol routes of every backend (issue: Hardening, item 1).

Bodies are Label Studio's real requests (tests/samples), mutated by hypothesis: a value replaced by
random JSON, a key dropped, a list emptied, the whole body replaced by random JSON or by bytes that
are not JSON; label configs are random trees of Label Studio tags. The contract: never a 5xx, never
a hang, every error is a JSON object with a message, and every valid body (a real one, unmutated,
with a config the backend serves) gets a 2xx. Inputs are random on every run, CI's included.

Images in the samples live on a Label Studio that is not running here, and some bodies carry a tiny
``data:`` image instead, so predict paths run up to the model on real pixels without the SAM encoder
(which only runs for a loadable image behind a click).
"""

from __future__ import annotations

import base64
import copy
import json
import time
from collections import Counter
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from backends.core.app import create_app
from backends.core.settings import CoreSettings
from backends.stack.demo import DEMO_CONFIG
from tests.conftest import RECT_CONFIG, png_bytes, sample
from tests.detector.conftest import OFFLINE_ENV
from tests.toy_backend import ToyModel

SAMPLES = {
    "/predict": ["predict", "predict-interactive"],
    "/setup": ["setup"],
    "/webhook": ["webhook-annotation_created", "webhook-annotation_updated", "webhook-annotations_deleted",
                 "webhook-project_updated", "webhook-start_training", "webhook-tasks_created"],
    "/versions": [],  # Label Studio only GETs it; POST bodies come from VERSION_BODIES
}
VERSION_BODIES = [{"project": 1, "current": "detector-v1"}, {"project": "1.1700000000", "path": "/etc/passwd"},
                  {"project": 1, "path": "../../weights.pt"}, {"project": 1}]
VALID_CONFIGS = [RECT_CONFIG, DEMO_CONFIG,
                 '<View><Image name="image" value="$image"/><Choices name="c" toName="image">'
                 '<Choice value="Cat"/><Choice value="Dog"/></Choices></View>',
                 '<View><Image name="image" value="$image"/><PolygonLabels name="p" toName="image">'
                 '<Label value="Cat"/></PolygonLabels></View>']
TINY_IMAGE = "data:image/png;base64," + base64.b64encode(png_bytes(24, 16)).decode()
SLOWEST_ALLOWED_S = 20.0  # a "hang": far above any single request here (a YOLO inference is ~0.1 s)

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63), st.floats(allow_nan=True),
                         st.text(max_size=30))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)), max_leaves=12)

TAGS = ["View", "Image", "RectangleLabels", "PolygonLabels", "KeyPointLabels", "BrushLabels", "Choices",
        "Label", "Choice", "Header", "Text", "Rating"]


@st.composite
def label_configs(draw: Any, depth: int = 0) -> str:
    tag = draw(st.sampled_from(TAGS if depth else ["View", *TAGS]))
    attrs = draw(st.dictionaries(st.sampled_from(["name", "toName", "value", "smart", "model_path",
                                                  "model_score_threshold", "predicted_values", "model_index"]),
                                 st.one_of(st.sampled_from(["image", "label", "$image", "true", "0.5", "../x.pt",
                                                            "Cat", "-1", ""]), st.text(max_size=8)), max_size=4))
    children = draw(st.lists(label_configs(depth + 1), max_size=3)) if depth < 3 else []
    body = "".join(f' {k}="{v.replace(chr(34), "")}"' for k, v in attrs.items())
    return f"<{tag}{body}>{''.join(children)}</{tag}>"


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, prefix + (i,))
    return found


def _set(node: Any, path: tuple, value: Any, delete: bool = False) -> Any:
    if not path:
        return value
    parent = node
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return node


SEGMENT_CONFIG = ('<View><Image name="image" value="$image"/><BrushLabels name="brush" toName="image">'
                  '<Label value="Cat"/></BrushLabels><KeyPointLabels name="kp" toName="image" smart="true">'
                  '<Label value="Cat"/></KeyPointLabels></View>')
#: per backend, configs it serves: a valid body carrying one of them must get a 2xx
SERVED_CONFIGS = {"toy": [RECT_CONFIG], "detector": [RECT_CONFIG, DEMO_CONFIG, VALID_CONFIGS[3]], "segmenter": [SEGMENT_CONFIG],
                  "active": [VALID_CONFIGS[2]]}


def valid_body(route: str, name: str, config: str) -> bytes:
    """Real body ``name``, unmutated, with a ``config`` the backend serves and (predict) an image
    that loads: it must get through to the model and back with a 2xx."""
    body = copy.deepcopy(sample(name))
    if route in ("/predict", "/setup"):
        body["label_config" if route == "/predict" else "schema"] = config
    if route == "/predict":  # no click in it: the segmenter answers without its 20 s CPU encoder
        for task in body["tasks"]:
            task["data"] = {"image": TINY_IMAGE}
    return json.dumps(body).encode()


def valid_samples(route: str) -> list[str]:
    return ["predict"] if route == "/predict" else SAMPLES[route]


def every_valid_body(route: str, backend: str) -> list[bytes]:
    """Each real body of ``route`` with each config ``backend`` serves: all are sent, whatever the
    random draw, so a run can never pass without the 2xx path having been taken."""
    return [valid_body(route, name, config) for name in valid_samples(route) for config in SERVED_CONFIGS[backend]]


@st.composite
def bodies(draw: Any, route: str, backend: str) -> tuple[bytes, bool]:
    """A body for ``route`` and whether it is valid (then it must get a 2xx)."""
    kind = draw(st.sampled_from(["mutate", "mutate", "mutate", "config", "random", "garbage", "tiny-image", "valid"]))
    if kind == "valid" and route != "/versions":
        name, config = draw(st.sampled_from(valid_samples(route))), draw(st.sampled_from(SERVED_CONFIGS[backend]))
        return valid_body(route, name, config), True
    if kind == "garbage":
        return draw(st.binary(max_size=200)), False
    if kind == "random":
        return json.dumps(draw(json_values)).encode(), False
    if route == "/versions":
        body = copy.deepcopy(draw(st.sampled_from(VERSION_BODIES)))
    else:
        body = copy.deepcopy(sample(draw(st.sampled_from(SAMPLES[route]))))
    if kind == "config" and route in ("/predict", "/setup"):
        config = draw(st.one_of(st.sampled_from(VALID_CONFIGS), label_configs(), st.text(max_size=40)))
        body["label_config" if route == "/predict" else "schema"] = config
    elif kind == "tiny-image" and route == "/predict":
        body["label_config"] = RECT_CONFIG
        for task in body.get("tasks", []):
            task["data"] = {"image": TINY_IMAGE}
            if draw(st.booleans()):
                task.pop("predictions", None)
    for _ in range(draw(st.integers(0 if kind in ("config", "tiny-image") else 1, 3))):
        paths = _paths(body)
        path = draw(st.sampled_from(paths))
        if path and draw(st.booleans()) and isinstance(_get(body, path[:-1]), (dict, list)):
            body = _set(body, path, None, delete=True)
        else:
            body = _set(body, path, draw(json_values))
    return json.dumps(body, allow_nan=True).encode(), False


def _get(node: Any, path: tuple) -> Any:
    for key in path:
        node = node[key]
    return node


def check(client: Any, route: str, data: bytes, method: str = "POST", seen: Counter | None = None,
          valid: bool = False) -> None:
    started = time.perf_counter()
    response = client.open(route, method=method, data=data, content_type="application/json")
    elapsed = time.perf_counter() - started
    if seen is not None:
        seen[response.status_code // 100] += 1
    assert elapsed < SLOWEST_ALLOWED_S, f"{route} took {elapsed:.1f} s"
    if valid:
        assert response.status_code < 300, f"valid body refused: {route} -> {response.status_code}: " \
                                           f"{response.get_data(as_text=True)[:300]}"
    assert response.status_code < 500, f"{route} -> {response.status_code}: {response.get_data(as_text=True)[:500]}"
    if response.status_code >= 400:
        payload = response.get_json(silent=True)
        assert isinstance(payload, dict) and isinstance(payload.get("message"), str) and payload["message"], \
            f"{route} -> {response.status_code} without a JSON message: {response.get_data(as_text=True)[:300]}"


def make_client(model_class: type, tmp_path_factory: pytest.TempPathFactory) -> Any:
    settings = CoreSettings(DATA_DIR=tmp_path_factory.mktemp("fuzz"), TRAIN_DEBOUNCE_S=60, EMBEDDED_WORKER=False,
                            WARMUP=False, LABEL_STUDIO_URL="http://127.0.0.1:9", LABEL_STUDIO_API_KEY=None,
                            MEDIA_TIMEOUT_S=2)
    return create_app(model_class, settings, start_worker=False).test_client()


def backends() -> list[tuple[str, Any, int]]:
    from backends.active.model import ActiveModel
    from backends.detector.model import DetectorModel
    from backends.segmenter.model import SegmenterModel

    # (name, model class, examples per route): 4 routes x (250 + 150 + 100 + 100) = 2,400 cases
    return [("toy", ToyModel, 250), ("detector", DetectorModel, 150), ("segmenter", SegmenterModel, 100),
            ("active", ActiveModel, 100)]


@pytest.fixture(autouse=True)
def offline_models(monkeypatch):
    for key, value in {**OFFLINE_ENV, "SAM_ALLOW_RANDOM": "1", "DETECTOR_PREDICT_IMGSZ": "64",
                       "ACTIVE_BACKBONE": "small_cnn", "ACTIVE_IMGSZ": "32"}.items():
        monkeypatch.setenv(key, value)


@pytest.mark.parametrize("route", list(SAMPLES))
@pytest.mark.parametrize("name,model_class,examples", backends(), ids=[b[0] for b in backends()])
def test_no_5xx_no_hang_json_errors(name, model_class, examples, route, tmp_path_factory):
    client = make_client(model_class, tmp_path_factory)
    seen: Counter = Counter()

    # Random: every run explores new inputs (a failure prints the blob that reproduces it).
    @hsettings(max_examples=examples, deadline=None, derandomize=False, database=None, print_blob=True,
               suppress_health_check=list(HealthCheck))
    @given(body=bodies(route, name), query=st.text(max_size=12), get=st.booleans())
    def run(body: tuple[bytes, bool], query: str, get: bool) -> None:
        data, valid = body
        if route == "/versions" and get:
            project = query or "1"
            check(client, "/versions?" + urlencode({"project": project}), b"", method="GET", seen=seen,
                  valid=project.isascii() and project.isdigit() and len(project) < 9)
        else:
            check(client, route, data, seen=seen, valid=valid)

    run()
    print(f"{name} {route}: {dict(seen)} (status class: count)")
    # Every valid body gets a 2xx, also those the draw did not pick (checked one by one), so the code
    # behind the input checks was reached as well as the checks; and the random bodies met the checks.
    if route == "/versions":
        check(client, "/versions?project=1", b"", method="GET", seen=seen, valid=True)
    for data in every_valid_body(route, name):
        check(client, route, data, seen=seen, valid=True)
    assert seen[2] and seen[4], f"{name} {route}: {dict(seen)}"
