"""Benchmark: how many tasks one Data Manager "Retrieve Predictions" can take.

Label Studio sends every selected task in a single ``/predict`` and gives it ``ML_TIMEOUT_PREDICT``
(100 s by default); past that the whole selection gets nothing. This starts a real Label Studio
1.23 and the detector with its defaults (YOLO11n at 640 px from a local .pt, so on a CPU ONNX Runtime
serves it, as for a downloaded yolo11n.pt; offline the weights are random, which does not change the compute), imports N real photos per size into a fresh project, and sends the
action with the body the Data Manager's screen sends (``selectedItems: {all: true}``), growing N
until Label Studio keeps no prediction of a selection (its read timeout hit). Figures: seconds per selection, per
task, and each size's per-task time as a ratio of the smallest size's (same run). Results go to
bench/results/retrieve_predictions.json.

    .venv/bin/python bench/retrieve_predictions.py [--sizes 50,100,200,400,800,1200]
"""

from __future__ import annotations

import argparse
import io
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backends.core.app import WARMUP_DONE  # noqa: E402
from backends.stack.demo import demo_images  # noqa: E402
from backends.stack.processes import backend_process, free_port, label_studio_process  # noqa: E402
from bench.detector import coco_checkpoint  # noqa: E402
from bench.machine import device_name  # noqa: E402

ML_TIMEOUT_PREDICT_S = 100.0  # Label Studio's default (ml/api_connector.py)
CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
          '<Label value="person"/><Label value="bus"/><Label value="car"/></RectangleLabels></View>')


class Studio:
    def __init__(self, url: str, token: str) -> None:
        self.url, self.http = url, requests.Session()
        self.http.headers["Authorization"] = f"Token {token}"

    def call(self, method: str, path: str, **kw: object) -> object:
        response = self.http.request(method, self.url + path, timeout=600, **kw)  # type: ignore[arg-type]
        response.raise_for_status()
        return response.json() if response.content else None

    def project_with_photos(self, n: int, detector: str) -> int:
        project = self.call("POST", "/api/projects", json={"title": f"retrieve {n}", "label_config": CONFIG})["id"]
        photos = list(demo_images().items())
        for start in range(0, n, 50):  # several uploads: one multipart of 800 photos is slow to parse
            files = [(f"{i}-{photos[i % len(photos)][0]}",
                      (f"{i}-{photos[i % len(photos)][0]}", io.BytesIO(photos[i % len(photos)][1]), "image/png"))
                     for i in range(start, min(n, start + 50))]
            self.call("POST", f"/api/projects/{project}/import?commit_to_project=true", files=files)
        self.call("POST", "/api/ml", json={"project": project, "url": detector, "title": "detector",
                                           "is_interactive": False, "auto_update": True, "extra_params": ""})
        return project

    def retrieve_all(self, project: int) -> float:
        """The Data Manager's body for "Retrieve Predictions" with the header checkbox ticked."""
        body = {"ordering": [], "selectedItems": {"all": True, "excluded": []},
                "filters": {"conjunction": "and", "items": []}, "project": str(project)}
        started = time.perf_counter()
        self.call("POST", f"/api/dm/actions?id=retrieve_tasks_predictions&project={project}", json=body)
        return time.perf_counter() - started

    def predictions(self, project: int) -> int:
        return int(self.call("GET", f"/api/projects/{project}")["total_predictions_number"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="50,100,200,400,800,1200")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "retrieve_predictions.json")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="retrieve-bench-"))
    token, ls_port, det_port = secrets.token_hex(20), free_port(), free_port()
    studio_proc = label_studio_process(work / "ls", ls_port, "bench@example.com", secrets.token_urlsafe(12), token)
    studio_proc.start(timeout=300)
    detector = f"http://127.0.0.1:{det_port}"
    env = {"DATA_DIR": str(work / "detector"), "LABEL_STUDIO_URL": f"http://127.0.0.1:{ls_port}",
           "LABEL_STUDIO_API_KEY": token, "YOLO_OFFLINE": "1", "DETECTOR_BASE_WEIGHTS": str(coco_checkpoint(work)),
           "DETECTOR_WEIGHTS_DIRS": json.dumps([str(work)])}
    detector_proc = backend_process("backends.detector", det_port, env, work / "detector.log").start(timeout=120)
    deadline = time.monotonic() + 300  # measure serving, not the start (the warm-up exports ONNX)
    while WARMUP_DONE not in (work / "detector.log").read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    studio, runs = Studio(f"http://127.0.0.1:{ls_port}", token), []
    try:
        for n in sizes:
            project = studio.project_with_photos(n, detector)
            seconds = studio.retrieve_all(project)
            stored = studio.predictions(project)
            runs.append({"tasks": n, "seconds": round(seconds, 2), "s_per_task": round(seconds / n, 4),
                         "predictions_stored": stored, "completed": stored == n})
            print(json.dumps(runs[-1]), flush=True)
            if stored < n:  # Label Studio gave up on the backend: nothing of the selection was kept
                break
    finally:
        detector_proc.stop()
        studio_proc.stop()
    base = runs[0]["s_per_task"]
    for run in runs:
        run["per_task_ratio_vs_smallest"] = round(run["s_per_task"] / base, 3)
    done = [r for r in runs if r["completed"]]
    per_task = done[-1]["s_per_task"] if done else None  # the largest completed selection's rate
    result = {"device": device_name("cpu"), "ml_timeout_predict_s": ML_TIMEOUT_PREDICT_S,
              "detector": "yolo11n as a local .pt, defaults (DETECTOR_PREDICT_IMGSZ 640, DETECTOR_RUNTIME auto: ONNX on a CPU)", "runs": runs,
              "largest_completed": max((r["tasks"] for r in done), default=0),
              "estimated_max_within_timeout": int(ML_TIMEOUT_PREDICT_S / per_task) if per_task else 0}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}))


if __name__ == "__main__":
    main()
