"""The loop as a team walks it in Label Studio's screens: training on submit turned on in Settings >
Model, a box drawn and submitted in the editor, the new version pre-labeling the next task; the
model card's Start Training; the Data Manager's Retrieve Predictions on 50 tasks; "Label All Tasks"
served in the active backend's order."""

from __future__ import annotations

import pytest
import requests

from tests.active.test_active_e2e import shape_png
from tests.browser import ui
from tests.browser.test_model_settings import CLASSIFY_CONFIG
from tests.detector.conftest import scene
from tests.harness import ARTIFACTS, wait_until

pytestmark = pytest.mark.labelstudio

BOX_CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
              '<Label value="person"/><Label value="bus"/></RectangleLabels></View>')
TINY_TRAINING = '{"epochs": 1, "imgsz": 64, "batch": 2, "val_ratio": 0.5}'


def jobs(url: str, project: int) -> list[dict]:
    return requests.get(f"{url}/jobs?project={project}", timeout=5).json()["jobs"]


def scenes(n: int, offset: int = 0) -> dict[str, bytes]:
    return {f"scene{i}.png": scene(i)[0] for i in range(offset, offset + n)}


def test_submit_in_the_editor_trains_a_version_that_prelabels_the_next_task(label_studio, served, page):
    detector = served["detector"].url
    project = label_studio.create_project(BOX_CONFIG, title="loop train on submit")
    first, second = label_studio.upload_images(project, scenes(2))
    assert ui.connect_model(page, label_studio.url, project, "detector", detector,
                            extra_params=TINY_TRAINING)["body"]["_status"] == 201
    ui.turn_on_training_on_submit(page, label_studio.url, project)
    assert label_studio.api("GET", f"/api/projects/{project}")["start_training_on_annotation_update"] is True

    ui.open_task(page, label_studio.url, project, first)
    annotation = ui.draw_box_and_submit(page, "person")
    assert annotation["result"][0]["value"]["rectanglelabels"] == ["person"]
    done = wait_until(lambda: [j for j in jobs(detector, project) if j["state"] == "done"
                               and (j["result"] or {}).get("version")], 300, "training on submit", 1)
    assert done[0]["result"]["version"] == "detector-v1" and done[0]["result"]["serving"] is True

    # The labeler moves on: opening the next task asks the backend, which now serves v1.
    ui.open_task(page, label_studio.url, project, second)
    (prediction,) = wait_until(lambda: label_studio.predictions(second), 60, "the next task's pre-label")
    assert prediction["model_version"] == "detector-v1" and prediction["result"]
    page.wait_for_function(f"() => {ui.REGION_COUNT} === {len(prediction['result'])}")  # drawn in the editor
    page.screenshot(path=str(ARTIFACTS / "browser-next-task-prelabeled-by-v1.png"))


def test_start_training_on_the_model_card_starts_a_job(label_studio, served, page):
    detector = served["detector"].url
    project = label_studio.create_project(BOX_CONFIG, title="loop start training")
    assert ui.connect_model(page, label_studio.url, project, "detector", detector)["body"]["_status"] == 201
    assert jobs(detector, project) == []
    sent = ui.start_training(page, label_studio.url, project)
    assert sent.status == 200 and sent.url.endswith("/train")  # POST /api/ml/<id>/train -> START_TRAINING
    (job,) = wait_until(lambda: [j for j in jobs(detector, project) if j["state"] == "done"], 60, "the job")
    assert job["kind"] == "train" and "0 annotated tasks" in job["result"]["skipped"]


def test_retrieve_predictions_for_50_selected_tasks_fills_the_table(label_studio, served, page):
    project = label_studio.create_project(BOX_CONFIG, title="loop retrieve 50")
    label_studio.upload_images(project, scenes(50, offset=100))
    assert ui.connect_model(page, label_studio.url, project, "detector",
                            served["detector"].url)["body"]["_status"] == 201
    answered = ui.retrieve_predictions_for_all(page, label_studio.url, project, 50)
    assert answered.status == 200, answered.text()
    page.reload()
    page.get_by_text("Predictions: 50", exact=True).wait_for()  # the Data Manager's footer
    page.screenshot(path=str(ARTIFACTS / "browser-retrieved-50.png"))
    versions = {p["model_version"] for t in label_studio.task_ids(project) for p in label_studio.predictions(t)}
    assert versions == {"detector-base-yolo11n"}


def test_label_all_tasks_serves_the_active_queues_first_task(label_studio, served, page):
    active = served["active"].url
    project = label_studio.create_project(CLASSIFY_CONFIG, title="loop active queue")
    tasks = label_studio.upload_images(project, {f"shape{i}.png": shape_png(i)[0] for i in range(12)})
    assert ui.connect_model(page, label_studio.url, project, "active", active,
                            extra_params='{"strategy": "random"}')["body"]["_status"] == 201
    label_studio.annotate(tasks[0], [{"from_name": "label", "to_name": "image", "type": "choices",
                                      "value": {"choices": ["Cat"]}}])  # a colleague labeled one already
    requests.post(f"{active}/jobs", json={"project": project, "kind": "score"}, timeout=5).raise_for_status()
    queue = wait_until(lambda: [j["result"] for j in jobs(active, project) if j["kind"] == "score"
                                and j["state"] == "done"], 120, "scoring")[0]
    assert queue["scored"] == len(tasks) - 1 and queue["queue_version"].startswith("active-random@")
    # the seeded shuffle puts another task first than Sequential sampling would: the test can tell them apart
    assert queue["first"][0] != tasks[1], queue["first"]
    served_task = ui.label_all_tasks(page, label_studio.url, project)
    assert served_task["id"] == queue["first"][0]
    assert page.evaluate("() => window.Htx.task.id") == queue["first"][0]  # the editor shows that task
    page.screenshot(path=str(ARTIFACTS / "browser-label-all-tasks-active.png"))



def test_an_older_model_version_chosen_for_prelabeling_is_what_the_editor_shows(label_studio, served, page):
    detector = served["detector"].url
    project = label_studio.create_project(BOX_CONFIG, title="loop version choice")
    first, second = label_studio.upload_images(project, scenes(2, offset=200))
    assert ui.connect_model(page, label_studio.url, project, "detector", detector,
                            extra_params=TINY_TRAINING)["body"]["_status"] == 201
    ui.retrieve_predictions_for_all(page, label_studio.url, project, 2)  # the base version's pre-labels
    label_studio.annotate(first, [{"from_name": "label", "to_name": "image", "type": "rectanglelabels",
                                   "original_width": 160, "original_height": 120,
                                   "value": {"x": 10, "y": 10, "width": 30, "height": 30, "rectanglelabels": ["bus"]}}])
    wait_until(lambda: [j for j in jobs(detector, project) if (j["result"] or {}).get("version") == "detector-v1"],
               300, "detector-v1", 1)
    ui.retrieve_predictions_for_all(page, label_studio.url, project, 2)  # now v1's, beside the base's
    by_version = {p["model_version"]: p for p in label_studio.predictions(second)}
    assert set(by_version) == {"detector-base-yolo11n", "detector-v1"}

    choices = ui.prelabeling_choices(page, label_studio.url, project)
    assert any(c.startswith("detector-base-yolo11n") for c in choices), choices
    assert any(c.startswith("detector-v1") for c in choices), choices
    assert ui.choose_prelabeling(page, project, "detector-base-yolo11n").status == 200
    assert label_studio.api("GET", f"/api/projects/{project}")["model_version"] == "detector-base-yolo11n"

    # The editor lists both versions' predictions as tabs; the draft it opens is pre-labeled from the chosen one.
    ui.open_task(page, label_studio.url, project, second)
    page.wait_for_function(f"() => {ui.REGION_COUNT} > 0")
    drafted = boxes(page.evaluate(ui.DRAFT_RESULT))
    expected, newer = (boxes(by_version[v]["result"]) for v in ("detector-base-yolo11n", "detector-v1"))
    assert expected != newer, "the two versions must predict differently for this test to tell them apart"
    assert drafted == expected
    page.screenshot(path=str(ARTIFACTS / "browser-older-version-chosen.png"))


def boxes(result: list[dict]) -> list[tuple[float, ...]]:
    return sorted(tuple(round(r["value"][k], 2) for k in ("x", "y", "width", "height")) for r in result)


PRELABEL_CONFIG = ('<View><Image name="image" value="$image"/>'
                   '<PolygonLabels name="outline" toName="image"><Label value="person"/></PolygonLabels>'
                   '<RectangleLabels name="turned" toName="image" model_obb="true"><Label value="person"/>'
                   '</RectangleLabels></View>')
EDITOR_ROTATIONS = ("() => window.Htx.annotationStore.selected.regionStore.regions"
                    ".filter(r => r.type === 'rectangleregion').map(r => r.rotation)")


def test_a_never_opened_task_shows_its_prelabelled_polygon_and_rotated_box(label_studio, start_backend, tmp_path,
                                                                          page):
    from tests.browser.conftest import backend_env

    # a detector of its own: the suite's keeps 3 regions a task, too few for random OBB weights
    # to be sure of one rotated box inside the image
    _, detector = start_backend("backends.detector", {**backend_env(label_studio, tmp_path / "det"),
                                                      "DETECTOR_MAX_DET": "30"})
    project = label_studio.create_project(PRELABEL_CONFIG, title="loop prelabel never opened")
    task, *_ = label_studio.upload_images(project, scenes(3, offset=300))
    assert ui.connect_model(page, label_studio.url, project, "detector", detector)["body"]["_status"] == 201
    requests.post(f"{detector}/jobs", json={"project": project, "kind": "prelabel"}, timeout=5).raise_for_status()
    wait_until(lambda: [j for j in jobs(detector, project) if j["kind"] == "prelabel" and j["state"] == "done"], 120,
               "the prelabel job", 1)
    (prediction,) = label_studio.predictions(task)
    assert {r["type"] for r in prediction["result"]} == {"polygonlabels", "rectanglelabels"}, prediction
    assert any(r["value"].get("rotation") for r in prediction["result"] if r["type"] == "rectanglelabels")

    ui.open_task(page, label_studio.url, project, task)  # its first opening
    page.wait_for_function(f"() => {ui.REGION_COUNT} === {len(prediction['result'])}")
    assert set(page.evaluate(ui.REGION_TYPES)) == {"polygonregion", "rectangleregion"}
    assert any(abs(rotation) > 0.1 for rotation in page.evaluate(EDITOR_ROTATIONS))  # drawn turned, not axis-aligned
    page.screenshot(path=str(ARTIFACTS / "browser-never-opened-polygon-and-rotated-box.png"))
