"""Video pre-labels -> bench/results/video.json: what ``/predict`` costs over raw ultralytics tracking,
and whether its memory grows with the video's length.

(a) **Frames per second** on a 30 s clip (750 frames, 320x240, Fashion-MNIST items moving over a
    photo: ``bench/moving_items.py``): ``/predict`` through a real server (gunicorn, 1 worker, HTTP;
    the video read from ``LOCAL_FILES_DOCUMENT_ROOT`` as a local-files storage serves it) vs raw
    ``YOLO.track(stream=True)`` on the same file with the same weights, runtime (PyTorch), inference
    size, confidence floor and tracker config, alternated in the same run. Goal: >= 0.9.
(b) **Peak memory**: the peak RSS of a process that serves one ``/predict`` (Flask's test client,
    no HTTP) on the 30 s clip, and of another on a 10-minute clip (15,000 frames), at a small
    inference size so the long run stays short. Goal: <= 1.5x.
Random weights whose every box scores ~0.0002, with tracker thresholds under that: every frame
has boxes to track, and compute does not depend on the weights' values.

    .venv/bin/python bench/video.py [--seconds 30] [--long-minutes 10] [--imgsz 320] [--reps 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import device_name  # noqa: E402
from bench.moving_items import clip, fashion_movers  # noqa: E402

FPS = 25
TRACKER = {"tracker_track_high_thresh": "0.0001", "tracker_new_track_thresh": "0.0001",
           "tracker_track_low_thresh": "0.00005", "tracker_fuse_score": "false"}
CONFIG = ('<View><Labels name="videoLabels" toName="video"><Label value="Trouser"/><Label value="Bag"/></Labels>'
          '<Video name="video" value="$video" framerate="25"/><VideoRectangle name="box" toName="video" '
          + " ".join(f'{k}="{v}"' for k, v in TRACKER.items()) + "/></View>")
OFFLINE = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false"}


def weights(folder: Path) -> Path:
    """Random yolo11n weights whose classes are the project's labels (so every box maps)."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    from backends.detector.training import save_checkpoint

    torch.manual_seed(0)
    model = DetectionModel("yolo11n.yaml", nc=2, verbose=False)
    model.names = {0: "trouser", 1: "bag"}
    return save_checkpoint(model, folder / "detect-2.pt", task="detect")


def env_for(work: Path, base: Path, imgsz: int) -> dict[str, str]:
    return {**OFFLINE, "DATA_DIR": str(work / "data"), "DETECTOR_BASE_WEIGHTS": str(base), "DETECTOR_RUNTIME": "torch",
            "DETECTOR_PREDICT_IMGSZ": str(imgsz), "DETECTOR_SCORE_THRESHOLD": "0", "DETECTOR_MAX_DET": "3",
            "DETECTOR_VIDEO_PREDICT_S": "100000", "LOCAL_FILES_DOCUMENT_ROOT": str(work), "LOG_LEVEL": "WARNING",
            "WORKERS": "1", "YOLO_CONFIG_DIR": str(work / "yolo")}


def body(name: str) -> dict[str, Any]:
    return {"tasks": [{"id": 1, "data": {"video": f"/data/local-files/?d={name}"}}], "label_config": CONFIG,
            "project": "1.1"}


def raw_track(path: Path, base: Path, imgsz: int, work: Path) -> tuple[float, int]:
    """Seconds and frames of raw ultralytics tracking, set up as the server sets it up."""
    from ultralytics import YOLO

    from backends.detector.video import tracker_config

    model = YOLO(str(base))
    tracker = tracker_config(TRACKER, work / "trackers")
    started, frames = time.perf_counter(), 0
    for _ in model.track(source=str(path), stream=True, persist=False, tracker=tracker, conf=1e-6, imgsz=imgsz,
                         max_det=3, verbose=False, device="cpu", agnostic_nms=True):
        frames += 1
    return time.perf_counter() - started, frames


def through_server(url: str, name: str) -> tuple[float, list[dict[str, Any]]]:
    import requests

    started = time.perf_counter()
    reply = requests.post(f"{url}/predict", json=body(name), timeout=3600)
    reply.raise_for_status()
    return time.perf_counter() - started, reply.json()["results"][0]["result"]


def fps_part(work: Path, base: Path, args: Any) -> dict[str, Any]:
    from backends.stack.processes import backend_process, free_port

    name = "clip30.mp4"
    clip(work / name, fashion_movers([1, 8], count=3), frames=args.seconds * FPS, fps=FPS)
    proc = backend_process("backends.detector", port := free_port(), env_for(work, base, args.imgsz),
                           work / "detector.log").start(timeout=300)
    try:
        url = f"http://127.0.0.1:{port}"
        short = "warm.mp4"
        clip(work / short, fashion_movers([1, 8]), frames=10, fps=FPS)
        through_server(url, short)  # the server's first request pays its imports and model load
        raw_track(work / short, base, args.imgsz, work)
        raws, served, regions = [], [], []
        for _ in range(args.reps):  # alternated: drift on a noisy machine hits both alike
            seconds, frames = raw_track(work / name, base, args.imgsz, work)
            raws.append(frames / seconds)
            seconds, regions = through_server(url, name)
            served.append(frames / seconds)
    finally:
        proc.stop()
    keyframes = [len(r["value"]["sequence"]) for r in regions]
    return {"clip_frames": args.seconds * FPS, "imgsz": args.imgsz, "raw_track_fps": [round(v, 2) for v in raws],
            "predict_fps": [round(v, 2) for v in served],
            "ratio_median": round(statistics.median(served) / statistics.median(raws), 3),
            "tracks": len(regions), "keyframes_per_track": keyframes,
            "keyframes_per_frame": round(sum(keyframes) / max(1, len(regions)) / (args.seconds * FPS), 4)}


def memory_child(work: Path, name: str, base: Path, imgsz: int) -> dict[str, Any]:
    """In a fresh process: one /predict through Flask's test client; the process's peak RSS."""
    os.environ.update(env_for(work, base, imgsz))
    from backends.core.app import create_app
    from backends.core.settings import CoreSettings
    from backends.detector.model import DetectorModel

    app = create_app(DetectorModel, CoreSettings(WARMUP=False, EMBEDDED_WORKER=False), start_worker=False)
    started = time.perf_counter()
    reply = app.test_client().post("/predict", json=body(name))
    assert reply.status_code == 200, reply.get_json()
    return {"clip": name, "seconds": round(time.perf_counter() - started, 1),
            "tracks": len(reply.get_json()["results"][0]["result"]),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def memory_part(work: Path, base: Path, args: Any) -> dict[str, Any]:
    clips = {"short": ("mem30.mp4", args.seconds * FPS), "long": ("mem10min.mp4", args.long_minutes * 60 * FPS)}
    rows = {}
    for key, (name, frames) in clips.items():
        clip(work / name, fashion_movers([1, 8], count=3), frames=frames, fps=FPS)
        out = subprocess.run([sys.executable, __file__, "--memory-child", name, "--work", str(work), "--base", str(base),
                              "--memory-imgsz", str(args.memory_imgsz)], capture_output=True, text=True, check=True)
        rows[key] = {**json.loads(out.stdout.strip().splitlines()[-1]), "frames": frames,
                     "file_mib": round((work / name).stat().st_size / 2**20, 1)}
    rows["ratio_long_to_short"] = round(rows["long"]["peak_rss_mib"] / rows["short"]["peak_rss_mib"], 3)
    rows["imgsz"] = args.memory_imgsz
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--long-minutes", type=int, default=10)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--memory-imgsz", type=int, default=64)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        print(json.dumps(memory_child(Path(args.work), args.memory_child, Path(args.base), args.memory_imgsz)))
        return
    os.environ.update(OFFLINE)
    work = Path(tempfile.mkdtemp(prefix="bench-video-"))
    os.environ["YOLO_CONFIG_DIR"] = str(work / "yolo")
    base = weights(work)
    results = {"machine": device_name(), "fps": fps_part(work, base, args)}
    print(json.dumps(results["fps"], indent=2), flush=True)
    results["memory"] = memory_part(work, base, args)
    print(json.dumps(results["memory"], indent=2), flush=True)
    results["note"] = ("fps: /predict through HTTP over raw YOLO.track, same weights (PyTorch), inference size, "
                       "tracker and confidence floor, medians of the alternated runs (goal >= 0.9); memory: peak RSS "
                       "of a process serving one /predict on the 10-minute clip over one on the 30 s clip (goal <= 1.5)")
    out = ROOT / "bench" / "results" / "video.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
