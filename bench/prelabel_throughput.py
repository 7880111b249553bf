"""(f) Pre-labels for a whole project through a real Label Studio, against raw batched
``YOLO.predict`` over the same images with the same weights, in the same run.

A project of N real photos (scikit-image's, cycled) is imported into a Label Studio started on
loopback, the detector is connected as a user connects it, and ``POST /jobs {"kind": "prelabel"}``
pre-labels every task: list the project, download each image from Label Studio, predict, write in
bulk. The figure is the job's throughput (tasks/s, from the POST to ``done``) divided by raw
``YOLO.predict`` on the decoded images in batches of 16, the serving settings (threshold,
inference size, ``max_det``) and runtime (PyTorch here on both sides). Goal: >= 0.8. The
predictions written are read back through Label Studio's API.
"""

from __future__ import annotations

import io
import json
import secrets
import time
from pathlib import Path
from typing import Any

import requests
from PIL import Image

from backends.core.app import WARMUP_DONE
from backends.detector.settings import DetectorSettings
from backends.stack.demo import demo_images
from backends.stack.processes import backend_process, free_port, label_studio_process

CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
          '<Label value="cat"/><Label value="person"/><Label value="car"/></RectangleLabels></View>')
RAW_BATCH = 16


def photos(n: int) -> list[tuple[str, bytes]]:
    found = list(demo_images().items())
    return [(f"{i}-{found[i % len(found)][0]}", found[i % len(found)][1]) for i in range(n)]


def raw_seconds(weights: Path, images: list[bytes]) -> float:
    """Raw batched predict on decoded images: the cost of the model alone."""
    from ultralytics import YOLO

    settings, model = DetectorSettings(), YOLO(str(weights))
    decoded = [Image.open(io.BytesIO(b)).convert("RGB") for b in images]
    kwargs = {"conf": settings.score_threshold, "imgsz": settings.predict_imgsz, "max_det": settings.max_det,
              "verbose": False, "device": "cpu"}
    model.predict(decoded[:2], **kwargs)  # warm, as the server is
    started = time.perf_counter()
    for i in range(0, len(decoded), RAW_BATCH):
        model.predict(decoded[i:i + RAW_BATCH], **kwargs)
    return time.perf_counter() - started


def wait_warm(log: Path, timeout_s: float = 300) -> None:
    """Until the server logged its warm-up's end: a job racing the warm-up would time its imports."""
    deadline = time.monotonic() + timeout_s
    while WARMUP_DONE not in log.read_text():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {WARMUP_DONE!r} in {log} after {timeout_s:.0f} s")
        time.sleep(0.2)


def part_prelabel(work: Path, n: int, weights: Path) -> dict[str, Any]:
    token, ls_port, det_port = secrets.token_hex(20), free_port(), free_port()
    ls = label_studio_process(work / "ls-f", ls_port, "bench@example.com", secrets.token_urlsafe(12), token)
    ls.start(timeout=300)
    base, detector = f"http://127.0.0.1:{ls_port}", f"http://127.0.0.1:{det_port}"
    env = {"DATA_DIR": str(work / "det-f"), "LABEL_STUDIO_URL": base, "LABEL_STUDIO_API_KEY": token,
           "YOLO_OFFLINE": "1", "DETECTOR_BASE_WEIGHTS": str(weights), "DETECTOR_WEIGHTS_DIRS": json.dumps([str(work)]),
           "DETECTOR_RUNTIME": "torch", "DETECTOR_PRELABEL": "request", "DETECTOR_PRELABEL_MAX_TASKS": str(n),
           "LOG_LEVEL": "INFO"}  # INFO: the warm-up's end is an INFO line, waited for below
    det = backend_process("backends.detector", det_port, env, work / "det-f.log").start(timeout=120)
    http = requests.Session()
    http.headers["Authorization"] = f"Token {token}"
    try:
        wait_warm(work / "det-f.log")
        shown = photos(n)
        project = http.post(f"{base}/api/projects", json={"title": "prelabel", "label_config": CONFIG}).json()["id"]
        for start in range(0, n, 50):  # one multipart of 1,000 photos is slow for Label Studio to parse
            files = [(name, (name, io.BytesIO(body), "image/png")) for name, body in shown[start:start + 50]]
            http.post(f"{base}/api/projects/{project}/import?commit_to_project=true", files=files).raise_for_status()
        http.post(f"{base}/api/ml", json={"project": project, "url": detector, "title": "detector",
                                           "is_interactive": False, "auto_update": True}).raise_for_status()
        started = time.perf_counter()
        job = requests.post(f"{detector}/jobs", json={"project": project, "kind": "prelabel"}, timeout=30).json()["job"]
        rates, first_batch_s = [], None
        while (state := requests.get(f"{detector}/jobs/{job}", timeout=30).json())["state"] not in ("done", "failed"):
            if (state.get("progress") or {}).get("tasks_per_s"):
                rates.append(state["progress"]["tasks_per_s"])
                first_batch_s = first_batch_s or round(time.perf_counter() - started, 1)
            time.sleep(1)
        job_s = time.perf_counter() - started
        stored = http.get(f"{base}/api/projects/{project}").json()["total_predictions_number"]
    finally:
        det.stop()
        ls.stop()
    raw_s = raw_seconds(weights, [body for _, body in shown])
    return {"tasks": n, "state": state["state"], "job_seconds": round(job_s, 1),
            "job_tasks_per_s": round(n / job_s, 2), "raw_predict_seconds": round(raw_s, 1),
            "raw_tasks_per_s": round(n / raw_s, 2), "throughput_ratio": round(raw_s / job_s, 3),
            "goal_ratio": 0.8, "predictions_read_back": stored, "progress_samples": len(rates),
            # the job process's start, its imports and the first batch: a fixed cost per job
            "seconds_to_first_progress": first_batch_s,
            "job_result": state.get("result"), "runtime": "torch", "raw_batch": RAW_BATCH,
            "image_sizes": sorted({Image.open(io.BytesIO(b)).size for _, b in shown[:10]})}
