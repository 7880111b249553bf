"""A weights file is a pickle: none of the ways one reaches the detector may run code from it."""

from __future__ import annotations

import base64
import io
import os

import pytest
import torch
from pydantic import SecretStr

from backends.core.app import create_app
from backends.core.errors import LabelLoopError
from backends.detector.model import DetectorModel
from backends.detector.safe_weights import UnsafeWeightsError, check_weights_file
from tests.detector.conftest import data_uri, one_class_checkpoint, scene

CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image" '
          'model_score_threshold="0"><Label value="Widget"/></RectangleLabels></View>')
AUTH = {"Authorization": "Basic " + base64.b64encode(b"ls:s3cret-pass").decode()}


class Payload:
    """What an attacker uploads: unpickling it runs a shell command that leaves a marker file."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class CustomLayer(torch.nn.Module):
    """A layer of a custom architecture: not torch.nn's nor ultralytics'."""


def poisoned_checkpoint(directory, marker):
    """A checkpoint that loads as a YOLO model under weights_only=False and runs the payload doing so."""
    good = torch.load(one_class_checkpoint("detect", directory, {0: "widget"}), weights_only=False)
    path = directory / "poisoned.pt"
    torch.save(good | {"payload": Payload(marker)}, path)
    return path


def test_an_uploaded_poisoned_checkpoint_is_refused_without_running(services, detector_env, tmp_path):
    marker = tmp_path / "owned"
    path = poisoned_checkpoint(detector_env, marker)
    secured = services.settings.model_copy(update={"basic_auth_user": "ls", "basic_auth_pass": SecretStr("s3cret-pass")})
    client = create_app(DetectorModel, secured, start_worker=False).test_client()
    reply = client.post("/versions", data={"project": "3", "file": (io.BytesIO(path.read_bytes()), "mine.pt")},
                        content_type="multipart/form-data", headers=AUTH)
    assert reply.status_code == 422
    assert "posix.system" in reply.get_json()["message"] and "mine.pt refused" in reply.get_json()["message"]
    assert not marker.exists(), "the pickle's command ran"
    assert client.get("/versions?project=3", headers=AUTH).get_json()["versions"] == []


def test_a_poisoned_model_path_or_registered_path_is_refused_without_running(services, detector_env, tmp_path):
    marker = tmp_path / "owned"
    path = poisoned_checkpoint(detector_env, marker)
    with pytest.raises(UnsafeWeightsError, match="posix.system"):
        DetectorModel(project_id=3, label_config=CONFIG, services=services).import_version(path=str(path))
    config = CONFIG.replace('name="box"', f'name="box" model_path="{path}"')
    model = DetectorModel(project_id=3, label_config=config, services=services)
    with pytest.raises(LabelLoopError, match="posix.system"):
        model.predict([{"id": 1, "data": {"image": data_uri(scene(1)[0])}}])
    assert not marker.exists(), "the pickle's command ran"


def test_ultralytics_own_loads_are_weights_only_once_the_detector_is_configured(services, detector_env, tmp_path):
    """Defence in depth: even a load that skips our check (ultralytics' torch_load passes
    weights_only=False) cannot run the payload."""
    from ultralytics.utils.patches import torch_load

    DetectorModel(project_id=3, label_config=CONFIG, services=services)  # configures ultralytics
    marker = tmp_path / "owned"
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        torch_load(poisoned_checkpoint(detector_env, marker))
    assert not marker.exists()


def test_uploads_need_auth_or_an_explicit_opt_in(services, detector_env):
    path = one_class_checkpoint("detect", detector_env, {0: "widget"})

    def upload(settings, **headers):
        client = create_app(DetectorModel, settings, start_worker=False).test_client()
        return client.post("/versions", data={"project": "3", "file": (io.BytesIO(path.read_bytes()), "w.pt")},
                           content_type="multipart/form-data", headers=headers)

    refused = upload(services.settings)
    assert refused.status_code == 403 and "BASIC_AUTH_USER" in refused.get_json()["message"]
    assert upload(services.settings.model_copy(update={"allow_unauthenticated_uploads": True})).status_code == 201


def test_a_custom_class_is_refused_until_the_operator_allows_it(detector_env, monkeypatch):
    path = detector_env / "custom.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": CustomLayer()}, path)
    with pytest.raises(UnsafeWeightsError, match="CustomLayer"):
        check_weights_file(path)
    check_weights_file(path, [f"{__name__}.CustomLayer"])
    with pytest.raises(LabelLoopError, match="not a class"):
        check_weights_file(path, ["os.system"])


def test_a_file_that_is_not_a_checkpoint_is_refused_by_name(tmp_path):
    (tmp_path / "legacy.pt").write_bytes(b"\x80\x02}q\x00.")  # a bare pickle, not a torch.save zip
    with pytest.raises(UnsafeWeightsError, match="legacy.pt could not be loaded: not a torch.save checkpoint"):
        check_weights_file(tmp_path / "legacy.pt")


def test_a_trained_classifier_keeps_its_preprocessing_and_a_function_in_it_is_refused(detector_env, tmp_path):
    """ultralytics' classify trainer pickles its val transforms into every checkpoint it writes."""
    import torchvision.transforms as T
    from ultralytics.data.augment import classify_transforms

    checkpoint = torch.load(one_class_checkpoint("classify", detector_env, {0: "cat", 1: "dog"}), weights_only=False)
    checkpoint["model"].transforms = classify_transforms(32)
    torch.save(checkpoint, tmp_path / "classifier.pt")
    check_weights_file(tmp_path / "classifier.pt")
    checkpoint["model"].transforms = T.Compose([T.Lambda(print)])  # the allow-list holds classes, not callables
    torch.save(checkpoint, tmp_path / "lambda.pt")
    with pytest.raises(UnsafeWeightsError, match="refused"):
        check_weights_file(tmp_path / "lambda.pt")
