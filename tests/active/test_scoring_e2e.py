"""Scoring a project of a few hundred tasks through a real Label Studio (issue 23): the re-score an
import starts reads and writes the imported tasks only; a write that fails midway never shows
labelers two generations of the queue, and its retry finishes the one it began."""

import base64

import pytest
import requests

from tests.active.test_active_e2e import CONFIG, active_env, choice, jobs, shape_png, wait_scored
from tests.faulty_proxy import FaultyProxy
from tests.harness import wait_until

pytestmark = pytest.mark.labelstudio

TASKS, IMPORTED, LABELED = 240, 24, 6


def import_shapes(label_studio, project, numbers):
    """Tasks with their image inline (a data: URI), as one bulk import: one TASKS_CREATED webhook."""
    tasks = []
    for i in numbers:
        png, label = shape_png(i)
        tasks.append({"image": "data:image/png;base64," + base64.b64encode(png).decode(), "truth": label})
    label_studio.api("POST", f"/api/projects/{project}/import?commit_to_project=true", json=tasks)
    return {t["id"]: t["data"]["truth"] for t in label_studio.api("GET", f"/api/tasks?project={project}&page_size=1000")["tasks"]}


def queue_predictions(label_studio, project):
    """Every prediction of the project, by task: what a rewrite would change (id, score, update time)."""
    return {p["task"]: (p["id"], p["model_version"], p["score"], p["updated_at"])
            for p in label_studio.api("GET", f"/api/predictions?project={project}")}


@pytest.fixture
def active(label_studio, start_backend, tmp_path):
    return start_backend("backends.active", {**active_env(label_studio, tmp_path), "ACTIVE_CHUNK": 64})[1]


def test_an_import_rescore_reads_and_writes_only_the_imported_tasks(label_studio, active):
    project = label_studio.create_project(CONFIG, title="import re-score")
    truths = import_shapes(label_studio, project, range(TASKS))
    for task_id in sorted(truths)[:LABELED]:  # before connecting: no webhook yet, so no training yet
        label_studio.annotate(task_id, choice(truths[task_id]))
    label_studio.connect_backend(project, active, "active", train_on_submit=False, extra_params={"strategy": "margin"})
    requests.post(f"{active}/jobs", json={"project": project, "kind": "train"}, timeout=5).raise_for_status()
    full = wait_scored(active, project, "active-margin@active-v1", 180, "training and the full scoring")
    assert full["scored"] == TASKS - LABELED and full["listed"] == {"tasks": TASKS, "after_task": None}
    before = queue_predictions(label_studio, project)
    last_job = jobs(active, project)[0]["id"]

    truths = import_shapes(label_studio, project, range(TASKS, TASKS + IMPORTED))  # TASKS_CREATED: the re-score
    new = sorted(truths)[TASKS:]
    wait_until(lambda: any(j["id"] > last_job for j in jobs(active, project)), 30, "the import's scoring job")
    rescore = wait_scored(active, project, "active-margin@active-v1", 120, "the import's re-score")
    assert rescore["listed"] == {"tasks": IMPORTED, "after_task": max(before)}, "only the imported tasks are read"
    assert rescore["predictions"]["created"] == IMPORTED and rescore["predictions"]["updated"] == 0
    assert rescore["older_versions_deleted"] == {} and rescore["queue_version"] == full["queue_version"]

    after = queue_predictions(label_studio, project)
    assert {t: after[t] for t in before} == before, "no prediction of an earlier task was rewritten"
    assert sorted(set(after) - set(before)) == new and {after[t][1] for t in new} == {full["queue_version"]}
    # the job's head merges the earlier queue's with the imported tasks: Label Studio serves it
    unlabeled = sorted((score, task) for task, (_, _, score, _) in after.items() if task not in sorted(truths)[:LABELED])
    assert rescore["first"] == [task for _, task in unlabeled[:len(rescore["first"])]]
    assert label_studio.api("GET", f"/api/projects/{project}/next")["id"] == rescore["first"][0]


def versions_in(label_studio, project):
    return {p["model_version"] for p in label_studio.api("GET", f"/api/predictions?project={project}")}


def visible_versions(label_studio, task_id):
    """The versions of a task's predictions as the editor gets them when the task is opened from the
    Data Manager (``GET /api/tasks/<id>``: every version; the labeling stream shows the project's)."""
    return sorted(p["model_version"] for p in label_studio.task(task_id)["predictions"])


def test_a_write_that_fails_midway_leaves_labelers_one_generation(label_studio, start_backend, tmp_path):
    proxy = FaultyProxy(label_studio.url)
    try:
        env = {**active_env(label_studio, tmp_path), "LABEL_STUDIO_URL": proxy.url, "JOB_RETRY_S": 15}
        active = start_backend("backends.active", env)[1]
        project = label_studio.create_project(CONFIG, title="write fails midway")
        truths = import_shapes(label_studio, project, range(TASKS))
        for task_id in sorted(truths)[:LABELED]:
            label_studio.annotate(task_id, choice(truths[task_id]))
        label_studio.connect_backend(project, active, "active", train_on_submit=False, extra_params={"strategy": "margin"})
        requests.post(f"{active}/jobs", json={"project": project, "kind": "train"}, timeout=5).raise_for_status()
        first = wait_scored(active, project, "active-margin@active-v1", 180, "training and the full scoring")
        version = first["queue_version"]
        # scores moved on more tasks than updating them one by one would cost: the next scoring
        # writes generation ~2 in bulk (two imports of 200 and 34), then switches to it
        for _task, (prediction, *_rest) in list(queue_predictions(label_studio, project).items())[:10]:
            label_studio.api("PATCH", f"/api/predictions/{prediction}", json={"score": 0.999})
        imports = []

        def second_import_fails(method, path):
            if method == "POST" and path.startswith(f"/api/projects/{project}/import/predictions"):
                imports.append(path)
                return 500 if len(imports) > 1 else None
            return None
        proxy.fault = second_import_fails
        job = requests.post(f"{active}/jobs", json={"project": project, "kind": "score"}, timeout=5).json()["job"]
        tried = wait_until(lambda: (j := requests.get(f"{active}/jobs/{job}", timeout=5).json())["tries"]
                           and j["tries"][0].get("error") and j, 120, "the first attempt to fail")

        # the failed write took back what it wrote: labelers still see v1's queue alone, everywhere
        assert tried["state"] == "pending" and "500" in tried["tries"][0]["error"], tried
        assert len(imports) >= 2 and proxy.failed, "the first bulk import went through, the second failed"
        assert versions_in(label_studio, project) == {version}
        assert label_studio.api("GET", f"/api/projects/{project}")["model_version"] == version
        opened = sorted(queue_predictions(label_studio, project))[:20]
        assert {tuple(visible_versions(label_studio, t)) for t in opened} == {(version,)}

        proxy.fault = lambda method, path: None
        done = wait_until(lambda: (j := requests.get(f"{active}/jobs/{job}", timeout=5).json())["state"] == "done"
                          and j, 120, "the retry")
    finally:
        proxy.close()
    result = done["result"]
    assert [bool(t.get("error")) for t in done["tries"]] == [True, False]
    assert result["queue_version"] == f"{version}~2" and result["predictions"]["created"] == TASKS - LABELED
    assert result["predictions"]["duplicates"] == 0 and result["older_versions_deleted"] == {version: TASKS - LABELED}
    assert label_studio.api("GET", f"/api/projects/{project}")["model_version"] == f"{version}~2"
    assert versions_in(label_studio, project) == {f"{version}~2"}
