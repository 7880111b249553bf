"""What `make up` does to a Label Studio, run against the harness's (an "existing" Label Studio)."""

import pytest

from backends.stack.__main__ import LabelStudioRest
from backends.stack.demo import DEMO_TITLE, demo_images, ensure_demo_project
from tests.detector.conftest import OFFLINE_ENV

pytestmark = pytest.mark.labelstudio


def test_demo_images_are_real_photos():
    images = demo_images()
    assert {"astronaut.png", "chelsea.png", "bus.jpg", "zidane.jpg"} <= set(images) and len(images) >= 7


def test_demo_project_is_idempotent_and_shows_predictions(label_studio, start_backend, tmp_path):
    env = {**OFFLINE_ENV, "DATA_DIR": tmp_path / "data", "LABEL_STUDIO_URL": label_studio.url,
           "LABEL_STUDIO_API_KEY": label_studio.token, "DETECTOR_SCORE_THRESHOLD": 0, "DETECTOR_MAX_DET": 10,
           "DETECTOR_PREDICT_IMGSZ": 320}
    _, url = start_backend("backends.detector", env)
    _, seg_url = start_backend("backends.segmenter", {**env, "SAM_ALLOW_RANDOM": 1, "SAM_PREFETCH_ON_OPEN": 0,
                                                      "WARMUP": 0})
    _, active_url = start_backend("backends.active", {**env, "WARMUP": 0})
    backends = {"detector": url, "segmenter": seg_url, "active": active_url}
    rest = LabelStudioRest(label_studio.url, label_studio.personal_access_token())  # users may bring a PAT
    project = ensure_demo_project(rest, backends)
    assert ensure_demo_project(rest, backends) == project, "a second `make up` reuses the project"
    assert len(label_studio.task_ids(project)) == len(demo_images())
    connected = label_studio.api("GET", f"/api/ml?project={project}")
    assert sorted(m["title"] for m in connected) == ["active", "detector", "segmenter"]
    assert all(m["state"] != "ER" for m in connected), connected
    task = label_studio.api("GET", f"/api/projects/{project}/next")  # what opening the labeling stream does
    versions = {p["model_version"] for p in task["predictions"]}
    assert "detector-base-yolo11n" in versions, task["predictions"]
    assert label_studio.api("GET", f"/api/projects/{project}")["title"] == DEMO_TITLE
