"""The plumbing against a real Label Studio 1.23.2: connect, predict, submit, train, recover."""

from datetime import UTC

import pytest
import requests

from backends.core.journal import Journal
from tests.conftest import RECT_CONFIG, png_bytes
from tests.harness import wait_until

pytestmark = pytest.mark.labelstudio

BOX = {"from_name": "label", "to_name": "image", "type": "rectanglelabels", "original_width": 64,
       "original_height": 48, "value": {"x": 10, "y": 10, "width": 30, "height": 30, "rotation": 0,
                                         "rectanglelabels": ["Dog"]}}


def toy_env(label_studio, data_dir, **extra):
    return {"DATA_DIR": data_dir, "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token,
            "TRAIN_DEBOUNCE_S": 0.5, **extra}


def jobs(url, project):
    return requests.get(f"{url}/jobs?project={project}", timeout=5).json()["jobs"]


def test_submit_trains_once_and_next_predictions_carry_new_version(label_studio, start_backend, tmp_path):
    _, url = start_backend("tests.toy_backend", toy_env(label_studio, tmp_path / "toy"))
    project = label_studio.create_project(RECT_CONFIG, title="e2e")
    tasks = label_studio.upload_images(project, {f"img{i}.png": png_bytes(64, 48, (i * 40, 90, 20)) for i in range(3)})
    label_studio.connect_backend(project, url, "toy")

    label_studio.retrieve_predictions(project, tasks[:1])
    first = label_studio.predictions(tasks[0])
    assert [p["model_version"] for p in first] == ["toy-base"]
    assert first[0]["result"][0]["original_width"] == 64, "the image came through /data/upload with auth"

    label_studio.annotate(tasks[0], [BOX])  # Label Studio sends START_TRAINING and ANNOTATION_CREATED
    journal = Journal(tmp_path / "toy" / "journal.sqlite3")
    done = wait_until(lambda: [j for j in jobs(url, project) if j["state"] == "done"], 60, "the training job")
    events = journal.events_for(done[0]["id"])
    assert {e.action for e in events} == {"START_TRAINING", "ANNOTATION_CREATED"}
    assert len(jobs(url, project)) == 1, "both webhooks of one submit must coalesce into one job"
    assert done[0]["result"] == {"version": "toy-v1", "n_annotations": 1}

    versions = requests.get(f"{url}/versions?project={project}", timeout=5).json()
    assert versions["current"] == "toy-v1" and versions["details"][0]["n_annotations"] == 1
    label_studio.retrieve_predictions(project, tasks[1:2])
    assert [p["model_version"] for p in label_studio.predictions(tasks[1])] == ["toy-v1"]


def test_worker_killed_mid_job_resumes_after_restart(label_studio, start_backend, tmp_path):
    env = toy_env(label_studio, tmp_path / "toy", TOY_FIT_SECONDS=30, JOB_LEASE_S=2)
    proc, url = start_backend("tests.toy_backend", env)
    project = label_studio.create_project(RECT_CONFIG, title="crash")
    tasks = label_studio.upload_images(project, {"a.png": png_bytes(64, 48)})
    label_studio.connect_backend(project, url, "toy")
    label_studio.annotate(tasks[0], [BOX])
    running = wait_until(lambda: [j for j in jobs(url, project) if j["state"] == "running"], 30, "a running job")
    proc.kill()

    port = int(url.rsplit(":", 1)[1])
    _, url = start_backend("tests.toy_backend", {**env, "TOY_FIT_SECONDS": 0}, port=port)
    done = wait_until(lambda: [j for j in jobs(url, project) if j["state"] == "done"], 60, "the resumed job")
    assert done[0]["id"] == running[0]["id"] and done[0]["attempts"] == 2
    assert requests.get(f"{url}/versions?project={project}", timeout=5).json()["current"] == "toy-v1"


def test_personal_access_token_end_to_end(label_studio, start_backend, tmp_path):
    pat = label_studio.personal_access_token()
    _, url = start_backend("tests.toy_backend", toy_env(label_studio, tmp_path / "toy", LABEL_STUDIO_API_KEY=pat))
    project = label_studio.create_project(RECT_CONFIG, title="pat")
    tasks = label_studio.upload_images(project, {"a.png": png_bytes(64, 48), "b.png": png_bytes(64, 48)})
    label_studio.connect_backend(project, url, "toy")
    label_studio.retrieve_predictions(project, tasks[:1])
    (prediction,) = label_studio.predictions(tasks[0])
    assert prediction["result"][0]["original_width"] == 64, "the upload was read with a PAT-derived access token"
    label_studio.annotate(tasks[0], [BOX])
    (done,) = wait_until(lambda: [j for j in jobs(url, project) if j["state"] == "done"], 60, "training with a PAT")
    assert done["result"]["n_annotations"] == 1


def test_pat_access_token_is_refreshed_before_expiry(label_studio):
    from datetime import datetime, timedelta

    from backends.core.labelstudio import LabelStudioClient

    client = LabelStudioClient(label_studio.url, label_studio.personal_access_token())
    first = client.auth_headers()["Authorization"]
    assert first.startswith("Bearer ") and client._api_key not in first
    assert client.auth_headers()["Authorization"] == first, "a fresh access token is reused"
    tokens = client.sdk._client_wrapper._tokens_client
    tokens._access_token_expiration = datetime.now(UTC) + timedelta(seconds=10)  # about to expire
    second = client.auth_headers()["Authorization"]
    assert second != first and second.startswith("Bearer ")
    assert sum(1 for _ in client.iter_tasks(label_studio.create_project(RECT_CONFIG, title="pat refresh"))) == 0


def test_listing_tasks_skips_none_when_one_is_deleted_mid_listing(label_studio):
    from backends.core.labelstudio import LabelStudioClient

    project = label_studio.create_project(RECT_CONFIG, title="paging")
    label_studio.api("POST", f"/api/projects/{project}/import", json=[{"image": f"/img{i}.png"} for i in range(10)])
    ids = label_studio.task_ids(project)
    label_studio.annotate(ids[5], [BOX])
    client = LabelStudioClient(label_studio.url, label_studio.token)
    seen = []
    for task in client.iter_tasks(project, page_size=3):
        seen.append(task["id"])
        if len(seen) == 4:  # on the second page: a task of the first page goes
            label_studio.api("DELETE", f"/api/tasks/{ids[0]}")
    # with page numbers, every later task shifts back by one and ids[6] would never be listed
    assert seen == ids, "every task listed once, in id order"
    annotated = [t for t in client.iter_tasks(project, page_size=3) if t["annotations"]]
    assert [t["id"] for t in annotated] == [ids[5]] and annotated[0]["annotations"][0]["result"][0]["type"] == "rectanglelabels"
