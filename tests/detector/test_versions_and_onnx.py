"""Your own weights as a version (POST /versions), and the ONNX runtime."""

import io
import shutil

import numpy as np
import pytest

from backends.core.app import create_app
from backends.core.errors import LabelConfigError, LabelLoopError
from backends.detector import model as detector_model
from backends.detector.model import DetectorModel
from tests.detector.conftest import data_uri, one_class_checkpoint, scene

CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image" '
          'model_score_threshold="0"><Label value="Widget"/><Label value="Gadget"/></RectangleLabels></View>')


def detector(services, **extra):
    return DetectorModel(project_id=3, label_config=CONFIG, services=services, extra_params=extra)


def test_register_weights_by_path_then_predict_with_their_names(services, detector_env):
    path = one_class_checkpoint("detect", detector_env, {0: "widget", 1: "gadget"})
    version = detector(services).import_version(path=str(path))
    assert version.name == "detector-v1" and version.metadata["names"] == ["widget", "gadget"]
    prediction = detector(services).predict([{"id": 1, "data": {"image": data_uri(scene(1)[0])}}])[0]
    assert prediction["model_version"] == "detector-v1" and prediction["result"]
    assert {r["value"]["rectanglelabels"][0] for r in prediction["result"]} <= {"Widget", "Gadget"}


def test_a_version_serves_the_box_control_it_learned_and_a_second_one_keeps_the_base_weights(services, detector_env):
    two = CONFIG.replace("</View>", '<RectangleLabels name="people" toName="image" model_score_threshold="0">'
                                    '<Label value="Person"/></RectangleLabels></View>')
    path = one_class_checkpoint("detect", detector_env, {0: "widget", 1: "gadget"})
    DetectorModel(project_id=3, label_config=two, services=services).import_version(path=str(path))
    model = DetectorModel(project_id=3, label_config=two, services=services)
    served = {plan.control.from_name: plan.version for plan in model.plans()}
    assert served == {"box": "detector-v1", "people": None}  # "Person" is not a class of the version
    prediction = model.predict([{"id": 1, "data": {"image": data_uri(scene(1)[0])}}])[0]
    assert prediction["model_version"] == "detector-v1"


def test_register_refuses_outside_paths_and_non_detect_models(services, detector_env, tmp_path):
    outside = tmp_path / "elsewhere.pt"
    shutil.copy(one_class_checkpoint("detect", detector_env, {0: "widget"}), outside)
    with pytest.raises(LabelConfigError, match="outside the model store"):
        detector(services).import_version(path=str(outside))
    classifier = one_class_checkpoint("classify", detector_env, {0: "widget"})
    with pytest.raises(LabelLoopError, match="classify model"):
        detector(services).import_version(path=str(classifier))
    assert detector(services).registry.list() == []


def test_upload_weights_through_the_api(services, detector_env, tmp_path):
    path = one_class_checkpoint("detect", detector_env, {0: "widget", 1: "gadget"})
    opted_in = services.settings.model_copy(update={"allow_unauthenticated_uploads": True})
    client = create_app(DetectorModel, opted_in, start_worker=False).test_client()
    response = client.post("/versions", data={"project": "3", "file": (io.BytesIO(path.read_bytes()), "mine.pt")},
                           content_type="multipart/form-data")
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["imported_from"] == "mine.pt"
    assert client.get("/versions?project=3").get_json()["current"] == "detector-v1"
    bad = client.post("/versions", data={"project": "3", "file": (io.BytesIO(b"not a model"), "x.pt")},
                      content_type="multipart/form-data")
    assert bad.status_code == 422 and "could not be loaded" in bad.get_json()["message"]


def test_onnx_runtime_matches_torch_and_exports_once(services, detector_env, monkeypatch):
    import onnxruntime
    import torch

    path = one_class_checkpoint("detect", detector_env, {0: "widget", 1: "gadget"})
    detector(services).import_version(path=str(path))
    monkeypatch.setenv("DETECTOR_RUNTIME", "onnx")
    detector_model.env_settings.cache_clear()
    model = detector(services)
    task = {"id": 1, "data": {"image": data_uri(scene(2, size=(640, 640))[0])}}
    prediction = model.predict([task])[0]
    assert prediction["result"] and prediction["model_version"] == "detector-v1"
    onnx_files = list(model.registry.current().path.glob("*.onnx"))
    assert len(onnx_files) == 1
    stamp = onnx_files[0].stat().st_mtime_ns
    model.predict([task])
    assert onnx_files[0].stat().st_mtime_ns == stamp, "exported once per version"

    # Same network outputs within tolerance on the same input.
    torch_model = detector_model.load_model(str(model.registry.current().path / "weights.pt")).model.model.eval()
    x = torch.rand(1, 3, 640, 640, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = torch_model(x)[0].numpy()
    session = onnxruntime.InferenceSession(str(onnx_files[0]), providers=["CPUExecutionProvider"])
    actual = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert actual.shape == expected.shape
    assert np.allclose(actual, expected, rtol=1e-3, atol=1e-3), float(np.abs(actual - expected).max())


@pytest.mark.parametrize("runtime, serves_onnx", [("auto", True), ("torch", False)])
def test_on_a_cpu_the_default_runtime_serves_the_onnx_export_one_image_per_call(services, detector_env, monkeypatch,
                                                                              runtime, serves_onnx):
    """Measured on 2 cores (bench/detector.py --parts m): ONNX Runtime is ~2.5x faster than PyTorch
    and one image per call beats a batch, so that is what ``auto`` does on a CPU."""
    path = one_class_checkpoint("detect", detector_env, {0: "widget", 1: "gadget"})
    detector(services).import_version(path=str(path))
    monkeypatch.setenv("DETECTOR_RUNTIME", runtime)
    detector_model.env_settings.cache_clear()
    model = detector(services)
    weights = str(model.registry.current().path / "weights.pt")
    served = detector_model.load_model(model.serving_weights(weights))
    assert served.spec.endswith(".onnx") is serves_onnx
    sizes: list[int] = []
    predict = served.model.predict
    monkeypatch.setattr(served.model, "predict", lambda images, **kw: sizes.append(len(images)) or predict(images, **kw))
    tasks = [{"id": i, "data": {"image": data_uri(scene(i)[0])}} for i in range(3)]
    assert [p["model_version"] for p in model.predict(tasks)] == ["detector-v1"] * 3
    assert sizes == [1, 1, 1]
    monkeypatch.setenv("DETECTOR_PREDICT_BATCH", "2")
    detector_model.env_settings.cache_clear()
    sizes.clear()
    detector(services).predict(tasks)
    assert sizes == [2, 1]


def test_weights_that_cannot_be_exported_are_served_by_pytorch_under_auto(services, detector_env, caplog):
    """A read-only weights folder, say: the export's lock file cannot be made (simulated with a
    directory in its place, which fails even for root)."""
    path = one_class_checkpoint("detect", detector_env, {0: "widget", 1: "gadget"})
    (detector_env / f"{path.stem}.imgsz640.onnx.lock").mkdir()
    detector_model.env_settings.cache_clear()
    model = detector(services)
    assert model.serving_weights(str(path)) == str(path)
    assert "ONNX export failed" in caplog.text
    caplog.clear()
    assert model.serving_weights(str(path)) == str(path) and not caplog.text  # remembered: no second try


@pytest.mark.parametrize("when, queued", [("publish", 1), ("request", 0)])
def test_a_new_version_queues_a_whole_project_prelabel_only_where_the_project_asks(services, detector_env, when,
                                                                                     queued):
    path = one_class_checkpoint("detect", detector_env, {0: "widget"})
    detector(services, prelabel=when).import_version(path=str(path))
    counts = services.journal.count_jobs("detector")
    assert sum(counts.values()) == queued, counts
    if queued:
        (job,) = services.journal.pending_jobs("detector")
        assert job.kind == "prelabel"
