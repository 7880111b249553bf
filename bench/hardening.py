"""Hardening figures -> bench/results/hardening.json.

``memory``: the RSS of a backend server process after 1,000 ``/predict`` calls on distinct images
stays within 1.2x its RSS after 100 (caches are bounded: media cache on disk, URL metadata LRU,
model instances per request). Each call carries one task, as Label Studio sends when a task is
opened; the images are distinct PNGs served over loopback HTTP like Label Studio's uploads.
The segmenter is measured on clicks over the same image: an image it has not seen costs a ~20 s
encoder run on CPU, so 1,000 distinct ones are a GPU-machine measurement.

    .venv/bin/python bench/hardening.py [--parts memory] [--calls 1000]
"""

from __future__ import annotations

import argparse
import http.server
import io
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import requests  # noqa: E402
from PIL import Image  # noqa: E402

from backends.stack.processes import backend_process, free_port  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DETECT_CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
                 '<Label value="person"/><Label value="car"/></RectangleLabels></View>')
CLASSIFY_CONFIG = ('<View><Image name="image" value="$image"/><Choices name="label" toName="image">'
                   '<Choice value="cat"/><Choice value="dog"/></Choices></View>')
SEGMENT_CONFIG = ('<View><Image name="image" value="$image"/><BrushLabels name="mask" toName="image">'
                  '<Label value="cat"/></BrushLabels><KeyPointLabels name="kp" toName="image" smart="true">'
                  '<Label value="cat"/></KeyPointLabels></View>')


def image_server() -> str:
    """Distinct PNGs on demand: ``/img/<n>.png`` is 160x120 noise seeded by n."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            seed = int(self.path.rsplit("/", 1)[1].split(".")[0])
            pixels = np.random.default_rng(seed).integers(0, 256, (120, 160, 3), dtype=np.uint8)
            buf = io.BytesIO()
            Image.fromarray(pixels).save(buf, format="PNG")
            body = buf.getvalue()
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def predict_body(url: str, config: str, click: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"tasks": [{"id": 1, "data": {"image": url}}], "label_config": config, "project": "1.1"}
    if click:
        body["params"] = {"context": {"result": [{
            "type": "keypointlabels", "from_name": "kp", "to_name": "image", "is_positive": True,
            "original_width": 160, "original_height": 120, "value": {"x": 50, "y": 50, "keypointlabels": ["cat"]}}]}}
    return body


def part_memory(calls: int) -> dict[str, Any]:
    images = image_server()
    work = Path(tempfile.mkdtemp(prefix="bench-hardening-"))
    cases = {
        "detector": ("backends.detector", DETECT_CONFIG, False, calls,
                     {"YOLO_OFFLINE": "1", "DETECTOR_BASE_WEIGHTS": "yolo11n.yaml", "DETECTOR_PREDICT_IMGSZ": "320"}),
        "active": ("backends.active", CLASSIFY_CONFIG, False, calls, {"ACTIVE_BACKBONE": "small_cnn"}),
        "segmenter": ("backends.segmenter", SEGMENT_CONFIG, True, calls, {"SAM_ALLOW_RANDOM": "1"}),
    }
    results = {}
    for name, (module, config, click, n, extra) in cases.items():
        port = free_port()
        env = {"DATA_DIR": str(work / name), "ALLOWED_MEDIA_HOSTS": "127.0.0.1", "LOG_LEVEL": "WARNING",
               "WARMUP": "0", "SAM_PREFETCH_ON_OPEN": "0", **extra}
        proc = backend_process(module, port, env, work / f"{name}.log").start(timeout=120)
        session = requests.Session()
        rss, failed, started = {}, 0, time.time()
        try:
            for i in range(1, n + 1):
                url = f"{images}/img/{0 if click else i}.png"  # segmenter: the same image (see docstring)
                reply = session.post(f"http://127.0.0.1:{port}/predict", json=predict_body(url, config, click), timeout=600)
                failed += reply.status_code != 200
                if i in (100, n):
                    rss[i] = round(rss_mib(proc.pid), 1)
        finally:
            proc.stop()
        ratio = rss[n] / rss[100]
        results[name] = {"calls": n, "distinct_images": not click, "rss_mib_after_100": rss[100],
                         f"rss_mib_after_{n}": rss[n], "ratio": round(ratio, 3), "failed": failed,
                         "seconds": round(time.time() - started, 1), "within_1_2x": ratio <= 1.2}
        if name == "active":
            results[name]["note"] = ("no classifier version in this project: /predict answers without loading the "
                                     "image, so this measures the server's own per-request growth only")
        if click:
            results[name]["note"] = "clicks on one image (each new image is a ~20 s CPU encoder run)"
        print(name, json.dumps(results[name]), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", default="memory")
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    out = RESULTS / "hardening.json"
    results: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    if "memory" in args.parts.split(","):
        results["memory"] = part_memory(args.calls)
    results["machine"] = {"cpus": os.cpu_count()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
