"""kill -9 at any moment of a publish, and a full disk, never leave the model store half-written.

A child process publishes versions of a 1 MB weights file in a loop; the test kills it with SIGKILL
at random moments (staging, writing, renaming, switching ``current``) and after every kill checks
what a restarted server would read: ``current`` names a complete version, every listed version is
complete, and the next publish works and takes a new number. The journaled-events half of crash
safety (a killed worker's pending job resumes) is tests/core/test_labelstudio_e2e.py and test_rq_mode.py.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import requests

from backends.core.registry import ModelRegistry
from tests.conftest import RECT_CONFIG, png_bytes
from tests.harness import wait_until

WEIGHTS = 1_000_000
BOX = {"from_name": "label", "to_name": "image", "type": "rectanglelabels", "original_width": 64,
       "original_height": 48, "value": {"x": 10, "y": 10, "width": 50, "height": 50, "rectanglelabels": ["Cat"]}}
PUBLISH_LOOP = textwrap.dedent(f"""
    import os, sys
    from pathlib import Path
    from backends.core.registry import ModelRegistry
    registry = ModelRegistry(Path(sys.argv[1]), "toy", 1)
    while True:
        with registry.stage() as staged:
            (staged.path / "weights.bin").write_bytes(os.urandom({WEIGHTS}))
            staged.publish({{"n_annotations": 1}})
""")
FULL_DISK = textwrap.dedent(f"""
    import os, resource, signal, sys
    from pathlib import Path
    from backends.core.registry import ModelRegistry
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, as on a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
    registry = ModelRegistry(Path(sys.argv[1]), "toy", 1)
    try:
        with registry.stage() as staged:
            (staged.path / "weights.bin").write_bytes(os.urandom({WEIGHTS}))
            staged.publish({{"n_annotations": 2}})
    except Exception as exc:
        print("refused:", type(exc).__name__, exc)
""")


def assert_complete(registry: ModelRegistry) -> None:
    current = registry.current()
    listed = registry.list()
    assert current is None or current.name in [v.name for v in listed]
    for version in listed:
        assert json.loads((version.path / "metadata.json").read_text())["name"] == version.name
        assert (version.path / "weights.bin").stat().st_size == WEIGHTS, f"{version.name} is half-written"


def test_publish_survives_kill_9_at_any_moment(tmp_path):
    registry = ModelRegistry(tmp_path, "toy", 1)
    rng = random.Random(0)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    for _ in range(25):
        child = subprocess.Popen([sys.executable, "-c", PUBLISH_LOOP, str(tmp_path)], env=env)
        time.sleep(rng.uniform(0.4, 1.2))  # past the interpreter start, somewhere inside the loop
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert_complete(registry)
    before = max(v.number for v in registry.list())
    with registry.stage() as staged:
        (staged.path / "weights.bin").write_bytes(os.urandom(WEIGHTS))
        version = staged.publish({"n_annotations": 1})
    assert version.number == before + 1 and registry.current_name() == version.name
    leftovers = list(registry.versions_dir.glob(".staging-*"))
    assert not leftovers, f"killed writers' staging directories were not cleaned up: {leftovers}"


def test_a_full_disk_fails_the_publish_and_keeps_the_current_version(tmp_path):
    registry = ModelRegistry(tmp_path, "toy", 1)
    with registry.stage() as staged:
        (staged.path / "weights.bin").write_bytes(os.urandom(WEIGHTS))
        first = staged.publish({"n_annotations": 1})
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path)], env=env, capture_output=True, text=True,
                         timeout=60)
    assert "refused: ModelStoreError" in out.stdout and "File too large" in out.stdout, out.stdout + out.stderr
    assert "nothing was published" in out.stdout and first.name in out.stdout
    assert registry.current_name() == first.name and [v.name for v in registry.list()] == [first.name]
    assert not list(registry.versions_dir.glob(".staging-*")), "the failed stage was removed"
    assert_complete(registry)


@pytest.mark.labelstudio
def test_a_full_model_store_fails_the_job_clearly_and_predict_keeps_serving(label_studio, start_backend, tmp_path):
    """Through a real Label Studio: v1 published, then the store fills up; the next submit's job fails with
    a message naming the store, and /predict keeps answering with v1."""
    env = {"DATA_DIR": tmp_path / "toy", "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token,
           "TRAIN_DEBOUNCE_S": 0.2, "TOY_WEIGHTS_BYTES": 2_000_000, "JOB_RETRY_S": 0.2}
    proc, url = start_backend("tests.toy_backend", env)
    project = label_studio.create_project(RECT_CONFIG, title="full disk")
    (task,) = label_studio.upload_images(project, {"a.png": png_bytes(64, 48)})
    label_studio.connect_backend(project, url, "toy")
    label_studio.annotate(task, [BOX])
    wait_until(lambda: requests.get(f"{url}/versions?project={project}", timeout=5).json()["current"] == "toy-v1",
               60, "toy-v1")
    proc.stop()
    port = int(url.rsplit(":", 1)[1])
    _, url = start_backend("tests.toy_backend", {**env, "TOY_FSIZE_LIMIT": 1_000_000}, port=port)  # weights > limit
    label_studio.annotate(task, [BOX])
    (failed,) = wait_until(lambda: [j for j in requests.get(f"{url}/jobs?project={project}", timeout=5).json()["jobs"]
                                    if j["state"] == "failed"], 60, "the job to fail on the full store")
    assert "model store" in failed["error"] and "toy-v1 keeps serving" in failed["error"], failed
    assert failed["attempts"] == 3, "a full store may be freed: the job was retried before it failed for good"
    reply = requests.post(f"{url}/predict", json={"tasks": [label_studio.task(task)], "label_config": RECT_CONFIG,
                                                  "project": f"{project}.1"}, timeout=30)
    assert reply.status_code == 200 and reply.json()["results"][0]["model_version"] == "toy-v1"
    assert requests.get(f"{url}/versions?project={project}", timeout=5).json()["versions"] == ["toy-v1"]


@pytest.mark.labelstudio
def test_detector_killed_inside_ultralytics_training_resumes_and_loses_no_submit(label_studio, start_backend, tmp_path):
    """kill -9 of the detector while ultralytics is between epochs of a real fine-tune, with a second
    submit waiting as the pending job: after a restart the dead job's events move to the pending job
    (one retrain covers both, as the debounce would have), that job runs, its version holds every
    submitted annotation, and no half-written version or staging directory is left. (A dead job with
    nothing pending behind it is run again: tests/core/test_labelstudio_e2e.py.)"""
    from tests.detector.conftest import OFFLINE_ENV, one_class_checkpoint, scene
    from tests.detector.test_detector_e2e import CONFIG, box

    base = one_class_checkpoint("detect", tmp_path / "weights", {0: "cat", 1: "dog"})
    env = {**OFFLINE_ENV, "DETECTOR_BASE_WEIGHTS": base, "DATA_DIR": tmp_path / "det", "LABEL_STUDIO_URL": label_studio.url,
           "LABEL_STUDIO_API_KEY": label_studio.token, "TRAIN_DEBOUNCE_S": 0.5, "JOB_LEASE_S": 2,
           "DETECTOR_EPOCHS": 30, "DETECTOR_IMGSZ": 160, "DETECTOR_BATCH": 2, "DETECTOR_PATIENCE": 0,
           "DETECTOR_PUBLISH": "always", "DETECTOR_PRELABEL": "request"}  # the training jobs alone
    proc, url = start_backend("backends.detector", env)
    project = label_studio.create_project(CONFIG, title="kill -9 in training")
    tasks = label_studio.upload_images(project, {f"k{i}.png": scene(i)[0] for i in range(4)})
    label_studio.connect_backend(project, url, "detector")
    for i, task in enumerate(tasks[:3]):
        label_studio.annotate(task, [box(*scene(i)[1][0])])

    def listed():
        return requests.get(f"{url}/jobs?project={project}", timeout=5).json()["jobs"]

    (training,) = wait_until(lambda: [j for j in listed() if (j.get("progress") or {}).get("epoch")], 180,
                             "ultralytics to finish an epoch", interval=0.5)
    label_studio.annotate(tasks[3], [box(*scene(3)[1][0])])  # arrives while training: the pending job
    wait_until(lambda: [j for j in listed() if j["state"] == "pending"], 30, "the submit to be journaled as pending")
    proc.kill()

    port = int(url.rsplit(":", 1)[1])
    _, url = start_backend("backends.detector", {**env, "DETECTOR_EPOCHS": 1}, port=port)
    (done,) = wait_until(lambda: [j for j in listed() if j["state"] == "done"], 300, "the pending job", interval=1)
    (killed,) = [j for j in listed() if j["id"] == training["id"]]
    assert killed["state"] == "failed" and f"events moved to job {done['id']}" in killed["error"], killed
    with sqlite3.connect(tmp_path / "det" / "journal.sqlite3") as db:
        owners = {job for (job,) in db.execute("SELECT job_id FROM events")}
    assert owners == {done["id"]}, "every journaled event now belongs to the job that ran"
    versions = requests.get(f"{url}/versions?project={project}", timeout=5).json()
    assert versions["versions"] == ["detector-v1"] and versions["current"] == "detector-v1", versions
    assert versions["details"][-1]["n_annotations"] == 4, "the submits journaled before the kill were trained on"
    store = tmp_path / "det" / "models" / "detector" / f"project-{project}"
    assert not list(store.glob(".staging-*")), "a staging directory survived the kill"
    assert not list((tmp_path / "det" / "work").iterdir()), "the killed run's dataset and run folder are removed"
