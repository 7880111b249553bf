"""The prelabel job through a real Label Studio: after a publish, every unlabeled task carries the
new version's predictions without being opened; on request, the tasks named; a second run skips
what the first wrote; a cancelled run stops; another backend's project model_version is kept."""

import pytest
import requests

from tests.detector.conftest import OFFLINE_ENV, data_uri, one_class_checkpoint, scene
from tests.detector.test_detector_e2e import CONFIG, box, idle, jobs
from tests.harness import wait_until

pytestmark = pytest.mark.labelstudio


@pytest.fixture
def detector_env(label_studio, tmp_path):
    base = one_class_checkpoint("detect", tmp_path / "weights", {0: "cat", 1: "dog"})
    return {**OFFLINE_ENV, "DETECTOR_BASE_WEIGHTS": base, "DATA_DIR": tmp_path / "det", "LABEL_STUDIO_URL": label_studio.url,
            "LABEL_STUDIO_API_KEY": label_studio.token, "TRAIN_DEBOUNCE_S": 1, "DETECTOR_EPOCHS": 1,
            "DETECTOR_IMGSZ": 64, "DETECTOR_BATCH": 4, "DETECTOR_SCORE_THRESHOLD": 0, "DETECTOR_MAX_DET": 3,
            "DETECTOR_PUBLISH": "always", "DETECTOR_PREDICT_IMGSZ": 160}


def scenes_project(label_studio, n, title):
    project = label_studio.create_project(CONFIG, title=title)
    label_studio.api("POST", f"/api/projects/{project}/import?commit_to_project=true",
                     json=[{"image": data_uri(scene(i)[0])} for i in range(n)])
    return project, label_studio.task_ids(project)


def predictions_by_task(label_studio, project):
    found = {}
    for p in label_studio.api("GET", f"/api/predictions?project={project}"):
        found.setdefault(p["task"], []).append(p)
    return found


def job_result(url, job, timeout=180):
    return wait_until(lambda: (j := requests.get(f"{url}/jobs/{job}", timeout=5).json())["state"] in ("done", "failed",
                                                                                                       "cancelled") and j,
                      timeout, f"job {job}", interval=0.5)


def test_a_publish_pre_labels_every_unlabeled_task(label_studio, start_backend, detector_env):
    detector = start_backend("backends.detector", detector_env)[1]
    project, tasks = scenes_project(label_studio, 12, "prelabel on publish")
    label_studio.api("POST", f"/api/projects/{project}/import", json=[{"image": "/data/upload/999/gone.png"}])
    gone = label_studio.task_ids(project)[-1]
    label_studio.connect_backend(project, detector, "detector")
    for task in tasks[:2]:
        label_studio.annotate(task, [box(*b) for b in scene(tasks.index(task))[1]])
    finished = wait_until(lambda: idle(detector, project) if any(j["kind"] == "prelabel" for j in jobs(detector, project))
                          else None, 300, "training, then the prelabel job", interval=1)
    assert all(j["state"] == "done" for j in finished), finished
    current = requests.get(f"{detector}/versions?project={project}", timeout=5).json()["current"]
    (prelabel,) = [j for j in finished if j["kind"] == "prelabel"]
    result = prelabel["result"]
    assert result["version"] == current and result["created"] == 10 and result["unloadable"] == 1, result
    assert result["project_model_version"] == {"value": current, "changed": True}
    assert set(result["timings"]) == {"list", "predict", "write"} and result["timings"]["predict"] > 0, result
    written = predictions_by_task(label_studio, project)
    assert {t for t, ps in written.items() if any(p["model_version"] == current for p in ps)} == set(tasks[2:])
    assert gone not in written and all(written[t][0]["result"] for t in tasks[2:]), "boxes on every unopened task"
    # the labeling stream serves a never-opened task with them (it shows the project model_version's)
    served = label_studio.api("GET", f"/api/projects/{project}/next")
    assert served["id"] in tasks[2:] and [p["model_version"] for p in served["predictions"]] == [current]


def test_on_request_named_tasks_then_the_rest_then_nothing(label_studio, start_backend, detector_env):
    detector = start_backend("backends.detector", {**detector_env, "DETECTOR_PRELABEL": "request",
                                                   "DETECTOR_PRELABEL_MAX_TASKS": 3})[1]
    project, tasks = scenes_project(label_studio, 6, "prelabel on request")
    label_studio.connect_backend(project, detector, "detector", train_on_submit=False)
    # a queue version of another backend points the editor elsewhere: it is not ours to change
    label_studio.api("POST", "/api/predictions", json={"task": tasks[-1], "result": [], "score": 0.5,
                                                       "model_version": "active-margin@active-v1"})
    label_studio.api("PATCH", f"/api/projects/{project}", json={"model_version": "active-margin@active-v1"})
    bad = requests.post(f"{detector}/jobs", json={"project": project, "kind": "prelabel", "tasks": ["1"]}, timeout=5)
    assert bad.status_code == 400 and "'tasks' must be a non-empty list of task ids" in bad.json()["message"]

    job = requests.post(f"{detector}/jobs", json={"project": project, "kind": "prelabel", "tasks": tasks[:2]}, timeout=5)
    first = job_result(detector, job.json()["job"])["result"]
    assert first["created"] == 2 and first["listed"] == 2 and first["version"] == "detector-base-detect-2"
    assert first["project_model_version"]["changed"] is False and "another backend" in first["project_model_version"]["note"]
    assert sorted(t for t, ps in predictions_by_task(label_studio, project).items()
                  if any(p["model_version"] == first["version"] for p in ps)) == tasks[:2]

    job = requests.post(f"{detector}/jobs", json={"project": project, "kind": "prelabel"}, timeout=5)
    rest = job_result(detector, job.json()["job"])["result"]
    assert (rest["created"], rest["already"], rest["listed"]) == (3, 2, 6), "what the first run wrote is skipped"
    assert rest["capped"] == 1, "DETECTOR_PRELABEL_MAX_TASKS=3: the fourth task waits for the next run"
    job = requests.post(f"{detector}/jobs", json={"project": project, "kind": "prelabel"}, timeout=5)
    last = job_result(detector, job.json()["job"])["result"]
    assert (last["created"], last["already"], last["capped"]) == (1, 5, 0)
    job = requests.post(f"{detector}/jobs", json={"project": project, "kind": "prelabel"}, timeout=5)
    again = job_result(detector, job.json()["job"])["result"]
    assert (again["created"], again["already"]) == (0, 6)
    detector_predictions = {t: [p for p in ps if p["model_version"].startswith("detector-")]
                            for t, ps in predictions_by_task(label_studio, project).items()}
    assert sorted(detector_predictions) == tasks and all(len(ps) == 1 for ps in detector_predictions.values())
    assert label_studio.api("GET", f"/api/projects/{project}")["model_version"] == "active-margin@active-v1"


def test_a_cancelled_prelabel_job_stops_between_batches(label_studio, start_backend, detector_env):
    detector = start_backend("backends.detector", {**detector_env, "DETECTOR_PRELABEL": "request"})[1]
    project, tasks = scenes_project(label_studio, 160, "prelabel cancelled")
    label_studio.connect_backend(project, detector, "detector", train_on_submit=False)
    job = requests.post(f"{detector}/jobs", json={"project": project, "kind": "prelabel"}, timeout=5).json()["job"]
    progress = wait_until(lambda: (requests.get(f"{detector}/jobs/{job}", timeout=5).json().get("progress") or {})
                          .get("done"), 120, "the first batch")
    assert progress % 16 == 0 and progress < 160, "progress after each batch of 16"
    requests.post(f"{detector}/jobs/{job}/cancel", timeout=5).raise_for_status()
    ended = job_result(detector, job)
    assert ended["state"] == "cancelled", ended
    written = len(predictions_by_task(label_studio, project))
    assert 0 < written < 160, "it stopped before the last batch, and kept what it had predicted"
    assert ended["progress"]["done"] <= written


def test_tasks_deleted_mid_job_are_skipped_and_counted(label_studio, start_backend, detector_env):
    detector = start_backend("backends.detector", {**detector_env, "DETECTOR_PRELABEL": "request"})[1]
    project, tasks = scenes_project(label_studio, 160, "prelabel deleted mid-job")
    label_studio.connect_backend(project, detector, "detector", train_on_submit=False)
    job = requests.post(f"{detector}/jobs", json={"project": project, "kind": "prelabel"}, timeout=5).json()["job"]
    wait_until(lambda: (requests.get(f"{detector}/jobs/{job}", timeout=5).json().get("progress") or {}).get("done"),
               120, "the first batch")
    deleted = tasks[-5:]  # listed when the job started, gone before it writes them
    for task in deleted:
        label_studio.api("DELETE", f"/api/tasks/{task}/")
    assert requests.get(f"{detector}/jobs/{job}", timeout=5).json()["state"] == "running", \
        "the job ended before the deletes: give it more tasks"
    ended = job_result(detector, job)
    assert ended["state"] == "done", ended
    result = ended["result"]
    assert (result["listed"], result["created"], result["skipped"]) == (160, 155, 5), result
    assert set(predictions_by_task(label_studio, project)) == set(tasks[:-5])
