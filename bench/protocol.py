"""Benchmark: what the protocol server adds to /predict.

Two models, each measured over N requests (default 500) in the same run:
- ``noop``: predict returns an empty result per task (pure server overhead: HTTP, JSON, routing);
- ``cached-image``: the toy model loads the task image through the media loader (disk cache hit,
  decode) and returns one box.
Baseline: the same model's ``predict()`` called in-process on the same task. Figures: p50/p99 of
both, overhead (server - baseline) and ratio (server / baseline), for the development server and
gunicorn (2 workers). Results go to bench/results/protocol.json.

    .venv/bin/python bench/protocol.py [--requests 500]
"""

from __future__ import annotations

import argparse
import http.server
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backends.core.model import LabelLoopModel  # noqa: E402
from backends.core.services import Services  # noqa: E402
from backends.core.settings import CoreSettings  # noqa: E402
from backends.stack.processes import ManagedProcess, free_port  # noqa: E402
from bench.image_server import serve  # noqa: E402

CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
          '<Label value="Cat"/></RectangleLabels></View>')


class NoopModel(LabelLoopModel):
    backend = "noop"

    def predict(self, tasks: list[dict[str, Any]], context: dict[str, Any] | None = None, **kwargs: Any) -> list[dict[str, Any]]:
        return [{"result": [], "score": 0.0} for _ in tasks]


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": 1000 * statistics.median(ordered), "p99_ms": 1000 * ordered[int(len(ordered) * 0.99) - 1]}


def serve_image() -> tuple[str, http.server.ThreadingHTTPServer]:
    from PIL import Image
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buf, format="JPEG", quality=90)
    payload = buf.getvalue()

    base, server = serve(lambda _path: payload, "image/jpeg")
    return f"{base}/chelsea.jpg", server


def direct(model_class: type[LabelLoopModel], env: dict[str, str], body: dict[str, Any], n: int) -> list[float]:
    settings = CoreSettings(**{k: v for k, v in env.items() if k in ("DATA_DIR", "ALLOWED_MEDIA_HOSTS")})
    model = model_class(project_id=1, label_config=CONFIG, services=Services.from_settings(settings))
    model.predict(body["tasks"])  # warm: fills the media cache
    times = []
    for _ in range(n):
        started = time.perf_counter()
        model.predict(body["tasks"])
        times.append(time.perf_counter() - started)
    return times


def over_http(module: str, env: dict[str, str], body: dict[str, Any], n: int, workers: int, log: Path) -> list[float]:
    port = free_port()
    argv = [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    proc = ManagedProcess(module, argv, {**os.environ, **env, "LOG_LEVEL": "WARNING"}, log, f"http://127.0.0.1:{port}/health")
    proc.start()
    try:
        session = requests.Session()
        url = f"http://127.0.0.1:{port}/predict"
        for _ in range(20):  # warm every worker and the media cache
            session.post(url, json=body, timeout=30).raise_for_status()
        times = []
        for _ in range(n):
            started = time.perf_counter()
            session.post(url, json=body, timeout=30).raise_for_status()
            times.append(time.perf_counter() - started)
        return times
    finally:
        proc.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "protocol.json")
    args = parser.parse_args()
    image_url, image_server = serve_image()
    work = Path(tempfile.mkdtemp(prefix="bench-protocol-"))
    env = {"DATA_DIR": str(work), "ALLOWED_MEDIA_HOSTS": "127.0.0.1", "EMBEDDED_WORKER": "false"}
    from tests.toy_backend import ToyModel

    cases = {"noop": (NoopModel, "bench.protocol_noop"), "cached-image": (ToyModel, "tests.toy_backend")}
    results: dict[str, Any] = {"requests": args.requests, "cases": {}}
    for name, (model_class, module) in cases.items():
        body = {"tasks": [{"id": 1, "data": {"image": image_url}}], "label_config": CONFIG, "project": "1.1",
                "params": {"context": None}}
        base = percentiles(direct(model_class, env, body, args.requests))
        case: dict[str, Any] = {"baseline_in_process": base}
        for label, workers in (("werkzeug", 0), ("gunicorn-2", 2)):
            server = percentiles(over_http(module, env, body, args.requests, workers, work / f"{name}-{label}.log"))
            server["overhead_p50_ms"] = server["p50_ms"] - base["p50_ms"]
            server["ratio_p50"] = server["p50_ms"] / base["p50_ms"]
            case[label] = server
        results["cases"][name] = case
        print(f"{name:13s} in-process p50 {base['p50_ms']:.2f} ms | " + " | ".join(
            f"{k} p50 {case[k]['p50_ms']:.2f} ms p99 {case[k]['p99_ms']:.2f} ms (+{case[k]['overhead_p50_ms']:.2f} ms)"
            for k in ("werkzeug", "gunicorn-2")))
    image_server.shutdown()
    results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
