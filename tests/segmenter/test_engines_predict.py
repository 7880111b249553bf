"""Every engine through /predict (Flask's test client, the server's own request handling): a
point, a negative click and a box each come back as a mask of the image's size; bad engine
settings are a 503 that names the setting, and the server keeps serving."""

import numpy as np
import pytest
import torch
from label_studio_sdk.converter.brush import decode_rle

from backends.core.app import create_app
from backends.core.settings import CoreSettings
from backends.segmenter import model as segmenter_model
from backends.segmenter.model import SegmenterModel
from tests.segmenter.test_segmenter import CONFIG, click, image_uri

TASK = {"id": 7, "data": {"image": image_uri(7, size=(120, 80))}}


def box(x, y, w, h, label="Cat"):
    return {"type": "rectanglelabels", "to_name": "image", "from_name": "rect", "original_width": 120,
            "original_height": 80, "value": {"x": x, "y": y, "width": w, "height": h, "rectanglelabels": [label]}}


@pytest.fixture
def server(tmp_path, monkeypatch):
    def start(**env):
        for key, value in {"SAM_ALLOW_RANDOM": "1", "SAM_PREFETCH_ON_OPEN": "0", **env}.items():
            monkeypatch.setenv(key, str(value))
        segmenter_model.env_settings.cache_clear()
        settings = CoreSettings(DATA_DIR=tmp_path / "data", WARMUP=False, EMBEDDED_WORKER=False)
        return create_app(SegmenterModel, settings, start_worker=False).test_client(), settings

    yield start
    segmenter_model.env_settings.cache_clear()


def predict(client, result):
    return client.post("/predict", json={"tasks": [TASK], "label_config": CONFIG, "project": "1.1",
                                         "params": {"context": {"result": result}}})


@pytest.mark.parametrize(("engine", "runtime"), [("mobile_sam", "onnx"), ("mobile_sam", "torch"), ("sam2", "torch"),
                                                  ("sam", "torch")])
def test_every_engine_answers_a_point_a_negative_click_and_a_box_with_a_mask_of_the_images_size(server, engine, runtime):
    client, _ = server(SAM_ENGINE=engine, SAM_RUNTIME=runtime)
    for result in ([click(50, 50)], [click(50, 50), click(10, 10, positive=False)], [box(20, 20, 50, 50)]):
        reply = predict(client, result)
        assert reply.status_code == 200, reply.get_json()
        (prediction,) = reply.get_json()["results"]
        brush = next(r for r in prediction["result"] if r["type"] == "brushlabels")
        mask = decode_rle(brush["value"]["rle"]).reshape(80, 120, 4)[:, :, 3]
        assert mask.shape == (80, 120) and brush["value"]["brushlabels"] == ["Cat"]
        assert 0.0 <= prediction["score"] <= 1.0


@pytest.mark.parametrize(("env", "named"), [
    ({"SAM_ENGINE": "sam3"}, "SAM_ENGINE='sam3'"),
    ({"SAM_ENGINE": "sam", "SAM_MODEL_TYPE": "tiny"}, "SAM_MODEL_TYPE='tiny'"),
    ({"SAM_RUNTIME": "tensorrt"}, "SAM_RUNTIME='tensorrt'"),
    ({"SAM_CHECKPOINT": "http://127.0.0.1:9/mobile_sam.pt"}, "SAM_CHECKPOINT: weights 'http://127.0.0.1:9/mobile_sam.pt' "
                                                               "could not be downloaded"),
])
def test_bad_engine_settings_are_a_503_naming_the_setting_and_the_server_keeps_serving(server, env, named):
    client, _ = server(**env)
    for _ in range(2):  # not a one-off: every click says it, none crashes the server
        reply = predict(client, [click(50, 50)])
        assert reply.status_code == 503 and named in reply.get_json()["message"], reply.get_json()
    assert client.get("/health").status_code == 200


def test_a_release_name_already_in_the_model_store_loads_without_a_network(server, tmp_path):
    from ultralytics.models.sam.build import build_mobile_sam

    client, settings = server(SAM_CHECKPOINT="mobile_sam.pt", SAM_ALLOW_RANDOM="0", SAM_RUNTIME="torch")
    stored = settings.model_dir / "downloads" / "mobile_sam.pt"
    stored.parent.mkdir(parents=True)
    torch.manual_seed(3)
    torch.save({"model": build_mobile_sam().state_dict()}, stored)  # as ultralytics' release stores it
    reply = predict(client, [click(50, 50)])
    assert reply.status_code == 200, reply.get_json()
    from backends.segmenter.model import env_settings

    engine = segmenter_model.engine_for(env_settings(), settings)
    assert engine.name == "mobile_sam-vit_t-torch" and str(stored.resolve()) in engine.weights_id
    assert np.isfinite(reply.get_json()["results"][0]["score"])


def test_the_decoders_time_per_click_is_a_metric_named_by_engine(server):
    from prometheus_client.parser import text_string_to_metric_families

    def decodes():
        families = text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))
        return {s.labels["engine"]: s.value for f in families if f.name == "labelloop_sam_decode_seconds"
                for s in f.samples if s.name.endswith("_count")}

    client, _ = server(SAM_ENGINE="mobile_sam", SAM_RUNTIME="onnx")
    before = decodes().get("mobile_sam-vit_t-onnx-random", 0)
    assert predict(client, [click(50, 50)]).status_code == 200
    assert predict(client, [box(20, 20, 50, 50)]).status_code == 200
    assert decodes()["mobile_sam-vit_t-onnx-random"] == before + 2
