"""The detector with a real Label Studio: pre-labels, submit -> fit -> new version -> new predictions."""

import pytest
import requests

from tests.detector.conftest import OFFLINE_ENV, one_class_checkpoint, scene
from tests.harness import wait_until

pytestmark = pytest.mark.labelstudio

CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
          '<Label value="Cat"/><Label value="Dog"/></RectangleLabels></View>')


def box(x, y, w, h, W=160, H=120, label="Cat"):
    return {"from_name": "label", "to_name": "image", "type": "rectanglelabels", "original_width": W,
            "original_height": H, "value": {"x": 100 * x / W, "y": 100 * y / H, "width": 100 * w / W,
                                            "height": 100 * h / H, "rotation": 0, "rectanglelabels": [label]}}


def jobs(url, project):
    return requests.get(f"{url}/jobs?project={project}", timeout=5).json()["jobs"]


def idle(url, project):
    listed = jobs(url, project)
    return listed if listed and all(j["state"] not in ("pending", "running") for j in listed) else None


@pytest.fixture
def detector(label_studio, start_backend, tmp_path):
    # Base weights: a local .pt whose classes are the project's, so random-init boxes all map.
    base = one_class_checkpoint("detect", tmp_path / "weights", {0: "cat", 1: "dog"})
    env = {**OFFLINE_ENV, "DETECTOR_BASE_WEIGHTS": base, "DATA_DIR": tmp_path / "det", "LABEL_STUDIO_URL": label_studio.url,
           "LABEL_STUDIO_API_KEY": label_studio.token, "TRAIN_DEBOUNCE_S": 2, "DETECTOR_EPOCHS": 2,
           "DETECTOR_IMGSZ": 160, "DETECTOR_BATCH": 4, "DETECTOR_SCORE_THRESHOLD": 0, "DETECTOR_MAX_DET": 5,
           "DETECTOR_PUBLISH": "always"}
    return start_backend("backends.detector", env)[1]


def test_prelabels_then_training_on_submit(label_studio, detector, tmp_path):
    project = label_studio.create_project(CONFIG, title="detector")
    scenes = {f"s{i}.png": scene(i) for i in range(6)}
    tasks = label_studio.upload_images(project, {name: png for name, (png, _) in scenes.items()})
    # a task whose image is gone (as if deleted from storage while training runs)
    label_studio.api("POST", f"/api/projects/{project}/import", json=[{"image": "/data/upload/999/gone.png"}])
    gone = label_studio.task_ids(project)[-1]
    label_studio.connect_backend(project, detector, "detector")

    label_studio.retrieve_predictions(project, tasks[:1])
    (before,) = label_studio.predictions(tasks[0])
    assert before["model_version"] == "detector-base-detect-2" and before["result"]
    assert {r["type"] for r in before["result"]} == {"rectanglelabels"}

    boxes = list(scenes.values())
    label_studio.annotate(tasks[1], [box(*b) for b in boxes[1][1]])
    label_studio.annotate(tasks[2], [])  # a negative: nothing to detect
    label_studio.annotate(tasks[3], [box(*boxes[3][1][0]), box(200, 10, 30, 30)])  # second box outside the image
    label_studio.annotate(gone, [box(10, 10, 30, 30)])
    finished = wait_until(lambda: idle(detector, project), 300, "training to finish", interval=1)
    assert all(j["state"] == "done" for j in finished), finished

    versions = requests.get(f"{detector}/versions?project={project}", timeout=5).json()
    current = next(v for v in versions["details"] if v["name"] == versions["current"])
    assert current["n_annotations"] == 4 and current["names"] == ["Cat", "Dog"]
    assert set(current["metrics"]) >= {"map50", "map50_95", "precision", "recall", "f1", "per_class"}
    assert current["report"]["n_negatives"] == 1 and current["report"]["dropped_outside"] == 1
    assert str(gone) in current["report"]["skipped_tasks"]
    assert set(current["timings"]) >= {"fetch", "dataset", "train", "evaluate", "export", "corrections", "total"}
    # corrections per val image, for the new version, the base it replaces and labeling by hand
    corrections = current["corrections"][current["from_name"]]
    kept = {tasks[1]: len(boxes[1][1]), tasks[2]: 0, tasks[3]: 1}  # annotated boxes inside the image
    assert corrections["by_hand"]["draws"] == sum(kept[t] for t in current["val_task_ids"])
    assert corrections["before"]["weights"] and "error" not in corrections["before"], corrections  # base's classes map
    for made_by in ("version", "before", "by_hand"):
        assert corrections[made_by]["images"] == current["n_val"], corrections
    # on a CPU the version is served by ONNX Runtime: exported by the job, before it serves
    (exported,) = (tmp_path / "det").rglob(f"{versions['current']}/weights.imgsz640.onnx")

    label_studio.retrieve_predictions(project, tasks[4:5])
    (after,) = label_studio.predictions(tasks[4])
    assert after["model_version"] == versions["current"]
    metrics = requests.get(f"{detector}/metrics", timeout=5).text
    assert f'version="{versions["current"]}"' in metrics
    assert f'labelloop_model_metric{{backend="detector",metric="map50",project="{project}"' in metrics


def test_empty_project_training_is_a_clean_skip(label_studio, detector):
    project = label_studio.create_project(CONFIG, title="empty")
    label_studio.upload_images(project, {"a.png": scene(1)[0]})
    ml = label_studio.connect_backend(project, detector, "detector")
    label_studio.api("POST", f"/api/ml/{ml}/train", json={})
    (job,) = wait_until(lambda: idle(detector, project), 60, "the training job")
    assert job["state"] == "done" and "min_annotations" in job["result"]["skipped"]
    versions = requests.get(f"{detector}/versions?project={project}", timeout=5).json()
    assert versions["versions"] == [] and versions["current"] == "detector-base-detect-2"


def test_training_data_from_other_projects(label_studio, detector):
    other = label_studio.create_project(CONFIG, title="other data")
    other_tasks = label_studio.upload_images(other, {f"o{i}.png": scene(10 + i)[0] for i in range(2)})
    for i, task in enumerate(other_tasks):
        label_studio.annotate(task, [box(*scene(10 + i)[1][0])])
    project = label_studio.create_project(CONFIG, title="main data")
    (task,) = label_studio.upload_images(project, {"m.png": scene(20)[0]})
    label_studio.connect_backend(project, detector, "detector", extra_params={"train_projects": [other], "epochs": 1})
    label_studio.annotate(task, [box(*scene(20)[1][0])])
    finished = wait_until(lambda: idle(detector, project), 300, "training to finish", interval=1)
    assert finished[0]["state"] == "done", finished
    versions = requests.get(f"{detector}/versions?project={project}", timeout=5).json()
    current = versions["details"][-1]
    assert current["n_annotations"] == 3 and current["hyperparameters"]["epochs"] == 1


def test_cancel_running_training_keeps_checkpoint_unpublished(label_studio, start_backend, tmp_path):
    base = one_class_checkpoint("detect", tmp_path / "weights", {0: "cat", 1: "dog"})
    env = {**OFFLINE_ENV, "DETECTOR_BASE_WEIGHTS": base, "DATA_DIR": tmp_path / "det", "LABEL_STUDIO_URL": label_studio.url,
           "LABEL_STUDIO_API_KEY": label_studio.token, "TRAIN_DEBOUNCE_S": 0.5, "DETECTOR_EPOCHS": 200,
           "DETECTOR_IMGSZ": 160, "DETECTOR_BATCH": 2, "DETECTOR_PATIENCE": 0}
    _, url = start_backend("backends.detector", env)
    project = label_studio.create_project(CONFIG, title="cancel")
    tasks = label_studio.upload_images(project, {f"c{i}.png": scene(i)[0] for i in range(3)})
    label_studio.connect_backend(project, url, "detector")
    for i, task in enumerate(tasks):
        label_studio.annotate(task, [box(*scene(i)[1][0])])
    training = wait_until(lambda: [j for j in jobs(url, project) if (j.get("progress") or {}).get("epoch")], 120,
                          "an epoch to finish", interval=0.5)
    cancelled = requests.post(f"{url}/jobs/{training[0]['id']}/cancel", timeout=5).json()
    assert cancelled["cancel_requested"]
    (final,) = wait_until(lambda: [j for j in jobs(url, project) if j["id"] == training[0]["id"]
                                   and j["state"] == "cancelled"], 60, "the job to stop")
    assert "cancelled at epoch" in final["error"]
    checkpoints = list((tmp_path / "det" / "models" / "detector" / f"project-{project}" / "checkpoints").glob("*.pt"))
    assert len(checkpoints) == 1
    assert requests.get(f"{url}/versions?project={project}", timeout=5).json()["versions"] == []
