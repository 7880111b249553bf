"""The detector writes nowhere but DATA_DIR and MODEL_DIR, as in the images (issue 22).

In the Docker images the working directory is the code, ``/app``, which the backends' user cannot
write: a training job that wrote ultralytics' ``runs/`` there failed after its last epoch, every
retry, and nothing was ever published. This runs what a Docker user does, from a read-only working
directory with an empty ``$HOME`` and none of the cache variables set: the base weights downloaded
from a URL (a local HTTP server here), pre-labels, a submitted annotation -> a fine-tune with its
evaluation and ONNX export -> a new version serving. tests/write_guard makes any write elsewhere
fail, as a read-only filesystem would, root or not. Temporary files may go where TMPDIR says (the
images' /tmp), as for every program.
"""

from __future__ import annotations

import http.server
import os
import threading
from functools import partial
from pathlib import Path

import pytest
import requests

from backends.core.caches import CACHE_VARIABLES
from backends.stack.processes import ROOT, backend_process, free_port
from tests.detector.conftest import OFFLINE_ENV, one_class_checkpoint, scene
from tests.detector.test_detector_e2e import CONFIG, box, idle
from tests.harness import wait_until

pytestmark = pytest.mark.labelstudio

GUARD = Path(__file__).resolve().parents[1] / "write_guard"


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    gets: list[str] = []

    def do_GET(self) -> None:
        self.gets.append(self.path)
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def weights_url(tmp_path):
    """A .pt served over HTTP, the way a user points DETECTOR_BASE_WEIGHTS at their own weights."""
    served = tmp_path / "served"
    one_class_checkpoint("detect", served, {0: "cat", 1: "dog"}).rename(served / "cats.pt")
    handler = type("Handler", (_CountingHandler,), {"gets": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), partial(handler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/cats.pt?signature=SECRET123", handler.gets
    server.shutdown()


def read_only_dir(path: Path) -> Path:
    path.mkdir()
    path.chmod(0o555)
    return path


def test_predict_train_and_download_write_only_to_data_and_model_dirs(label_studio, weights_url, tmp_path):
    url, gets = weights_url
    workdir, home = read_only_dir(tmp_path / "app"), read_only_dir(tmp_path / "home")
    data, models, temp = tmp_path / "data", tmp_path / "models", tmp_path / "tmp"
    temp.mkdir()
    env = {**OFFLINE_ENV, "DETECTOR_BASE_WEIGHTS": url, "DATA_DIR": data, "MODEL_DIR": models, "HOME": home,
           "TMPDIR": temp,
           "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token,
           "TRAIN_DEBOUNCE_S": 1, "DETECTOR_EPOCHS": 1, "DETECTOR_IMGSZ": 160, "DETECTOR_BATCH": 4,
           "DETECTOR_SCORE_THRESHOLD": 0, "DETECTOR_MAX_DET": 5, "DETECTOR_PUBLISH": "always",
           "PYTHONPATH": os.pathsep.join([str(GUARD), str(ROOT)]),
           "WRITE_GUARD_ALLOWED": os.pathsep.join([str(data), str(models), str(temp)])}
    proc = backend_process("backends.detector", free_port(), {k: str(v) for k, v in env.items()},
                           tmp_path / "detector.log")
    # the defaults are under test, not the test run's own values; and ultralytics, seeing
    # PYTEST_CURRENT_TEST, would put its runs in its own tests/ folder instead of the working directory
    for name in [*CACHE_VARIABLES, "PYTEST_CURRENT_TEST"]:
        proc.env.pop(name, None)
    proc.cwd = workdir
    proc.start(timeout=180)
    try:
        backend = proc.health_url.removesuffix("/health")  # type: ignore[union-attr]
        project = label_studio.create_project(CONFIG, title="read-only workdir")
        scenes = [scene(i) for i in range(4)]
        tasks = label_studio.upload_images(project, {f"s{i}.png": png for i, (png, _) in enumerate(scenes)})
        label_studio.connect_backend(project, backend, "detector")
        label_studio.retrieve_predictions(project, tasks[:1])
        assert label_studio.predictions(tasks[0])[0]["model_version"] == "detector-base-cats"

        for task, (_, boxes) in zip(tasks[1:], scenes[1:]):
            label_studio.annotate(task, [box(*b) for b in boxes])
        finished = wait_until(lambda: idle(backend, project), 300, "training to finish", interval=1)
        assert all(j["state"] == "done" for j in finished), (finished, proc.log_tail(4000))
        versions = requests.get(f"{backend}/versions?project={project}", timeout=5).json()
        current = next(v for v in versions["details"] if v["name"] == versions["current"])
        assert current["name"] == "detector-v1" and current["metrics"]["map50"] >= 0  # evaluated
        assert "SECRET123" not in str(current)
        label_studio.retrieve_predictions(project, tasks[:1])
        assert label_studio.predictions(tasks[0])[-1]["model_version"] == "detector-v1"
    finally:
        proc.stop()
    log = proc.log_tail(2_000_000)
    assert "WRITE-GUARD" not in log, log[log.find("WRITE-GUARD"):][:4000]
    assert not any(workdir.iterdir()) and not any(home.iterdir())  # also what C code could have written
    (downloaded,) = (models / "downloads").rglob("cats.pt")
    assert gets == ["/cats.pt?signature=SECRET123"]  # downloaded once, kept in the model store
    assert list(downloaded.parent.glob("cats.imgsz*.onnx"))  # served by ONNX Runtime on a CPU, exported beside it
    assert "SECRET123" not in log  # a presigned URL's signature is not logged
