"""The active backend with a real Label Studio: the scoring job reorders what /next serves."""

import csv
import io
import random

import pytest
import requests
from PIL import Image, ImageDraw

from backends.active.cli import main as cli_main
from tests.harness import wait_until

pytestmark = pytest.mark.labelstudio

CONFIG = ('<View><Image name="image" value="$image"/><Choices name="label" toName="image">'
          '<Choice value="Circle"/><Choice value="Square"/></Choices></View>')


def shape_png(i: int) -> tuple[bytes, str]:
    rng = random.Random(i)
    label = "Circle" if i % 2 else "Square"
    img = Image.new("RGB", (48, 48), tuple(rng.randrange(0, 80) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    x, y, r = rng.randrange(8, 24), rng.randrange(8, 24), rng.randrange(8, 14)
    color = tuple(rng.randrange(120, 256) for _ in range(3))
    (draw.ellipse if label == "Circle" else draw.rectangle)((x, y, x + 2 * r, y + 2 * r), fill=color)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue(), label


def choice(label):
    return [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]


def jobs(url, project):
    return requests.get(f"{url}/jobs?project={project}", timeout=5).json()["jobs"]


def scored(url, project, version_prefix):
    """The newest finished scoring job's result once nothing is pending or running."""
    listed = jobs(url, project)
    if not listed or any(j["state"] in ("pending", "running") for j in listed):
        return None
    done = [j for j in listed if j["kind"] == "score" and j["state"] == "done"]
    if done and done[0]["result"]["queue_version"].startswith(version_prefix):
        return done[0]["result"]
    return None


def wait_scored(url, project, version_prefix, timeout, what):
    """``scored`` once it holds; on a timeout the jobs' states and errors are the message."""
    try:
        return wait_until(lambda: scored(url, project, version_prefix), timeout, what, interval=0.5)
    except AssertionError as exc:
        summary = [{k: j.get(k) for k in ("id", "kind", "state", "attempts", "error", "progress")}
                   for j in jobs(url, project)]
        raise AssertionError(f"{exc}; jobs: {summary}") from None


def queue_scores(label_studio, task_ids, queue_version):
    """Each task's Choices-region score in the queue prediction written under queue_version."""
    scores = {}
    for task_id in task_ids:
        (prediction,) = [p for p in label_studio.predictions(task_id) if p["model_version"] == queue_version]
        scores[task_id] = prediction["result"][0]["score"]
    return scores


def served_order(label_studio, project, n, labels):
    """What /next serves, n times, labeling each served task so the next call moves on."""
    order = []
    for _ in range(n):
        task = label_studio.api("GET", f"/api/projects/{project}/next")
        order.append(task["id"])
        label_studio.annotate(task["id"], choice(labels[task["id"]]))
    return order


def active_env(label_studio, tmp_path):
    return {"DATA_DIR": tmp_path / "active", "LABEL_STUDIO_URL": label_studio.url,
            "LABEL_STUDIO_API_KEY": label_studio.token, "TRAIN_DEBOUNCE_S": 4, "ACTIVE_BACKBONE": "small_cnn",
            "ACTIVE_IMGSZ": 32, "ACTIVE_EPOCHS": 3, "ACTIVE_BATCH": 8, "ACTIVE_MIN_ANNOTATIONS": 4,
            "ACTIVE_STRATEGY": "entropy", "ACTIVE_CHUNK": 5}  # the project asks for margin


@pytest.fixture
def active(label_studio, start_backend, tmp_path):
    return start_backend("backends.active", active_env(label_studio, tmp_path))[1]


def test_scoring_job_orders_the_queue_and_follows_new_versions(label_studio, active, tmp_path, monkeypatch):
    project = label_studio.create_project(CONFIG, title="active")
    # 24 images: after 9 labels, 15 remain to reorder, so two model versions ranking them
    # identically is not a chance a test should take (with 5 left it once happened).
    images = {f"shape{i}.png": shape_png(i) for i in range(24)}
    tasks = label_studio.upload_images(project, {name: png for name, (png, _) in images.items()})
    labels = dict(zip(tasks, (label for _, label in images.values())))
    # a task whose image is gone (deleted from storage): scoring must skip it and say why
    label_studio.api("POST", f"/api/projects/{project}/import", json=[{"image": "/data/upload/999/gone.png"}])
    gone = label_studio.task_ids(project)[-1]
    label_studio.connect_backend(project, active, "active", extra_params={"strategy": "margin"})

    # No task model yet: a random queue, and the result says so.
    requests.post(f"{active}/jobs", json={"project": project, "kind": "score"}, timeout=5).raise_for_status()
    first = wait_until(lambda: scored(active, project, "active-random@no-model"), 60, "random scoring")
    assert "no task model yet" in first["note"] and first["scored"] == 25

    # Labels for 6 tasks -> a classifier version -> a scoring job with the margin strategy.
    for task_id in tasks[:6]:
        label_studio.annotate(task_id, choice(labels[task_id]))
    result = wait_scored(active, project, "active-margin@active-v1", 180, "training and scoring")
    assert result["scored"] == 18 and result["predictions"]["created"] == 18
    assert str(gone) in result["skipped"]
    project_json = label_studio.api("GET", f"/api/projects/{project}")
    assert project_json["sampling"] == "Uncertainty sampling"
    assert project_json["model_version"] == "active-margin@active-v1"

    # Independently of the job's own list: with two classes, margin ranks by the top class's
    # probability, lowest first, which is the score of the Choices region written with each task.
    unlabeled = tasks[6:]
    top_prob = queue_scores(label_studio, unlabeled, result["queue_version"])
    expected = sorted(unlabeled, key=lambda t: (top_prob[t], t))
    assert result["first"][:3] == expected[:3]
    assert served_order(label_studio, project, 3, labels) == result["first"][:3]
    # a prediction someone else wrote under a look-alike version: never the active backend's to delete
    theirs = label_studio.api("POST", "/api/predictions", json={"task": tasks[-1], "result": [], "score": 0.5,
                                                                 "model_version": "active-mine"})
    # a labeler hides a column on the queue tab: re-scoring must keep it
    (queue_tab,) = [v for v in label_studio.api("GET", f"/api/dm/views?project={project}")
                    if v["data"]["title"] == "Active learning queue"]
    hidden = {"explore": ["tasks:inner_id"], "labeling": []}
    label_studio.api("PATCH", f"/api/dm/views/{queue_tab['id']}",
                     json={"project": project, "data": {**queue_tab["data"], "hiddenColumns": hidden}})

    # Those 3 labels trigger the next version; its scoring job reorders the rest.
    rescored = wait_scored(active, project, "active-margin@active-v2", 180, "re-scoring")
    assert rescored["scored"] == 15
    remaining = [t for t in unlabeled if t not in result["first"][:3]]
    new_prob = queue_scores(label_studio, remaining, rescored["queue_version"])
    order_v1 = sorted(remaining, key=lambda t: (top_prob[t], t))
    order_v2 = sorted(remaining, key=lambda t: (new_prob[t], t))
    assert rescored["first"] == order_v2[:10], "the queue follows v2's scores"
    assert order_v2 != order_v1, "a new model version changes the order"
    assert served_order(label_studio, project, 1, labels) == rescored["first"][:1]
    left = {p["model_version"] for t in label_studio.task_ids(project) for p in label_studio.predictions(t)}
    assert left == {"active-margin@active-v2", "active-mine"}, "older queue versions removed, labeled tasks too"
    assert [p["id"] for p in label_studio.predictions(tasks[-1]) if p["model_version"] == "active-mine"] == [theirs["id"]]

    versions = requests.get(f"{active}/versions?project={project}", timeout=5).json()
    assert versions["versions"] == ["active-v1", "active-v2"]
    assert set(versions["details"][-1]["metrics"]) >= {"accuracy", "per_class"}

    # Blind spots: per class precision/recall over the labeled tasks, and a Data Manager tab.
    report = requests.get(f"{active}/report?project={project}", timeout=5).json()
    assert set(report["per_class"]) == {"Circle", "Square"} and report["n_annotated"] == 9
    losses = [row["loss"] for row in report["highest_loss_tasks"]]
    assert losses == sorted(losses, reverse=True)
    assert all(row["predicted"] != row["annotated"] for row in report["highest_loss_tasks"]), "only mistakes"
    views = label_studio.api("GET", f"/api/dm/views?project={project}")
    assert {"Active learning queue", "Model disagrees"} <= {v["data"]["title"] for v in views}
    (queue_tab,) = [v for v in views if v["data"]["title"] == "Active learning queue"]
    assert queue_tab["data"]["hiddenColumns"] == hidden and queue_tab["data"]["ordering"] == ["tasks:predictions_score"]

    # The label /next served above trains v3. Then an import under v3: scores are each task's own
    # (ranking.stable_scores), so the re-score writes the two new tasks and nothing else: no task
    # whose score did not change is rewritten, no new generation, nothing deleted (issue 23).
    v3 = wait_until(lambda: scored(active, project, "active-margin@active-v3"), 180, "v3 and its scoring",
                    interval=0.5)
    before_import = queue_scores(label_studio, v3["first"], v3["queue_version"])
    new_images = {f"new{i}.png": shape_png(100 + i) for i in range(2)}
    new = label_studio.upload_images(project, {name: png for name, (png, _) in new_images.items()})
    job = requests.post(f"{active}/jobs", json={"project": project, "kind": "score"}, timeout=5).json()["job"]
    after_import = wait_until(lambda: (j := requests.get(f"{active}/jobs/{job}", timeout=5).json())["state"] == "done"
                              and j["result"], 60, "scoring the import")
    assert after_import["queue_version"] == "active-margin@active-v3" and after_import["scored"] == v3["scored"] + 2
    assert len(queue_scores(label_studio, new, after_import["queue_version"])) == 2, "the new tasks are queued"
    assert after_import["predictions"]["created"] == 2 and after_import["predictions"]["updated"] == 0
    assert after_import["predictions"]["unchanged"] == v3["scored"] and after_import["older_versions_deleted"] == {}
    assert queue_scores(label_studio, v3["first"], v3["queue_version"]) == before_import
    assert label_studio.api("GET", f"/api/projects/{project}")["model_version"] == "active-margin@active-v3"

    # The CLI on the project, with the server's store and environment: the project's strategy
    # (margin, from its extra_params, not ACTIVE_STRATEGY), the same ranking, to a CSV.
    for key, value in active_env(label_studio, tmp_path).items():
        monkeypatch.setenv(key, str(value))
    csv_path = tmp_path / "scores.csv"
    assert cli_main(["--project", str(project), "--out", str(csv_path)]) == 0
    rows = list(csv.DictReader(open(csv_path)))
    assert [int(row["task"]) for row in rows[:3]] == after_import["first"][:3] and len(rows) == after_import["scored"]
    assert label_studio.api("GET", f"/api/projects/{project}")["model_version"] == "active-margin@active-v3"
    # it ran as a job of the server's journal (so never beside the server's own scoring), listed by /jobs
    newest = requests.get(f"{active}/jobs?project={project}", timeout=5).json()["jobs"][0]
    assert (newest["kind"], newest["state"], newest["result"]["queue_version"]) == ("score", "done", "active-margin@active-v3")
    new_labels = dict(zip(new, (label for _, label in new_images.values())))
    assert served_order(label_studio, project, 1, labels | new_labels) == after_import["first"][:1]


def test_bad_input_is_a_clear_error(label_studio, active):
    text_config = '<View><Text name="t" value="$text"/><Choices name="c" toName="t"><Choice value="A"/></Choices></View>'
    response = requests.post(f"{active}/setup", json={"project": "1.1", "schema": text_config}, timeout=5)
    assert response.status_code == 422 and "<Choices> on an <Image>" in response.json()["message"]
    response = requests.post(f"{active}/jobs", json={"project": 1, "kind": "fly"}, timeout=5)
    assert response.status_code == 400 and "score" in response.json()["message"]
    response = requests.get(f"{active}/report?project=12345", timeout=5)
    assert response.status_code == 404 and "no blind-spot report" in response.json()["message"]
