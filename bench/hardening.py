"""Hardening figures -> bench/results/hardening.json.

``load``: a backend under gunicorn with 4 workers, 20 concurrent clients sending ``/predict`` for
60 s (one task per call, its image on a real Label Studio), while submits in Label Studio make the
training job publish two new versions: failed requests (must be 0), p50/p99 latency, and whether
every reply's ``model_version`` existed when the reply left (created before it). Then a webhook storm
of 2,000 events in 10 s: all acknowledged, all journaled, never more than one running and one pending
job per project. It runs the toy backend (tests/toy_backend.py): the same server, journal, queue and
registry as the product backends, with a trivial model, so the figures are the plumbing's, not
YOLO's on 2 cores.

``memory``: the RSS of a backend server process after 1,000 ``/predict`` calls on distinct images
stays within 1.2x its RSS after 100 (caches are bounded: media cache on disk, URL metadata LRU,
model instances per request), with the RSS every 100 calls so a slow leak shows as a trend. Each
call carries one task, as Label Studio sends when a task is opened; the images are distinct PNGs
served over loopback HTTP like Label Studio's uploads. An image the segmenter has not seen costs a
~20 s encoder run on CPU, so ``--segmenter`` picks how it is measured: ``one-image`` (default,
clicks on one image), ``distinct`` (a GPU-machine run) or ``stub-encoder`` (new images, the encoder
replaced by its host-side work: a CPU diagnostic, see ``bench/stub_encoder``).

``--load-backend detector`` runs the load part on the detector instead of the toy backend: YOLO11n
on every request and two real fine-tunes publishing meanwhile (``load_detector`` in the JSON); on 2
cores it measures the CPU as much as the server, so the storm stays on the toy backend.

``batch``: peak RSS of a detector answering one ``/predict`` of 10 tasks, of 1,000 tasks (goal:
within 1.3x; distinct 1920x1080 JPEGs), and of 12 tasks of 9000x9000 PNG: Label Studio sends every task selected for
Retrieve Predictions in one request.

``jobs``: where the jobs run, ``JOB_RUNNER=thread`` (a thread of the server, before issue 25) against
``process`` (the job process), same run, the detector under its development server: webhook
acknowledgement p50/p99/max from 8 senders (an ANNOTATION_UPDATED every 0.25 s each, for another project) and ``/predict``
p99 from one client, idle, in the 10 s after a training job is started, and while its fine-tune runs
(goals: ack p99 < 50 ms in both; ``/predict`` p99 during the fine-tune / idle reported); then idle
and during the fine-tune again with the senders alone (``*_acks_alone``), to tell an ack waiting
behind the server's own inference from one waiting behind the job.

``slow``: ``/health`` p50/p99 with 64 connections trickling their headers (a byte every 5 s),
against none, under the development server and gunicorn (goal: p99 < 200 ms).

    .venv/bin/python bench/hardening.py [--parts memory,load,batch,slow,jobs] [--backends detector,active,segmenter]
                                        [--segmenter one-image|distinct|stub-encoder] [--calls 1000] [--seconds 60] [--clients 20]
                                        [--load-backend toy|detector]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import requests  # noqa: E402
from PIL import Image  # noqa: E402

from backends.stack.processes import backend_process, free_port  # noqa: E402
from bench.image_server import serve  # noqa: E402
from bench.machine import device_name  # noqa: E402
from bench.stub_encoder.sitecustomize import STUB_MARKER  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DETECT_CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
                 '<Label value="person"/><Label value="car"/></RectangleLabels></View>')
CLASSIFY_CONFIG = ('<View><Image name="image" value="$image"/><Choices name="label" toName="image">'
                   '<Choice value="cat"/><Choice value="dog"/></Choices></View>')
SEGMENT_CONFIG = ('<View><Image name="image" value="$image"/><BrushLabels name="mask" toName="image">'
                  '<Label value="cat"/></BrushLabels><KeyPointLabels name="kp" toName="image" smart="true">'
                  '<Label value="cat"/></KeyPointLabels></View>')


def photo_jpeg(seed: int) -> bytes:
    """A distinct 1920x1080 JPEG (a phone photo's size, ~6 MB decoded): a seeded gradient with a
    few boxes, cheap to make a thousand of."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, 1920, dtype=np.float32)[None, :, None] * rng.integers(40, 200, 3)
    pixels = np.broadcast_to(ramp, (1080, 1920, 3)).astype(np.uint8).copy()
    for _ in range(3):
        x, y = int(rng.integers(0, 1600)), int(rng.integers(0, 800))
        pixels[y:y + 200, x:x + 300] = rng.integers(0, 256, 3)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def image_server() -> str:
    """Distinct PNGs on demand: ``/img/<n>.png`` is 160x120 noise seeded by n; ``/big/<n>.png`` a
    9000x9000 flat PNG (~80 KB encoded, 243 MB decoded, under MEDIA_MAX_PIXELS)."""
    big: list[bytes] = []
    big_lock = threading.Lock()

    def big_png() -> bytes:
        with big_lock:
            if not big:
                buf = io.BytesIO()
                Image.new("RGB", (9000, 9000), (90, 140, 200)).save(buf, format="PNG")
                big.append(buf.getvalue())
            return big[0]

    def body_for(path: str) -> bytes:
        seed = int(path.rsplit("/", 1)[1].split(".")[0])
        if path.startswith("/big/"):
            return big_png()
        if path.startswith("/photo/"):
            return photo_jpeg(seed)
        pixels = np.random.default_rng(seed).integers(0, 256, (120, 160, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="PNG")
        return buf.getvalue()

    return serve(body_for, "image/png")[0]


def status_mib(pid: int, field: str = "VmRSS") -> float:
    """A memory figure of ``/proc/<pid>/status`` in MiB: ``VmRSS`` now, ``VmHWM`` the peak so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for pid {pid}")


def rss_mib(pid: int) -> float:
    return status_mib(pid)


def peak_rss_mib(pid: int) -> float:
    """The process's peak RSS so far: what an OOM killer compares with the limit."""
    return status_mib(pid, "VmHWM")


def gpu_mib(session: requests.Session, base: str) -> float | None:
    """CUDA memory the backend's PyTorch allocator holds (its ``/metrics``), None before CUDA starts or
    without a GPU: the segmenter's in-memory embedding cache lives on the engine's device, so on a GPU
    its bound shows here, not in the RSS. (``nvidia-smi``'s per-process figures name host PIDs, which
    match nothing when the benchmark runs in a container.)"""
    text = session.get(f"{base}/metrics", timeout=30).text
    held = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith("labelloop_gpu_memory_bytes{") and 'kind="allocated"' in line]
    return round(sum(held) / 2**20, 1) if held else None


def stub_encoder_env() -> dict[str, str]:
    """What makes a segmenter process load ``bench/stub_encoder/sitecustomize.py``."""
    path = [str(ROOT / "bench" / "stub_encoder"), str(ROOT), os.environ.get("PYTHONPATH")]
    return {"PYTHONPATH": os.pathsep.join(filter(None, path)), "LABEL_LOOP_STUB_ENCODER": "1"}


def predict_body(url: str, config: str, click: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"tasks": [{"id": 1, "data": {"image": url}}], "label_config": config, "project": "1.1"}
    if click:
        body["params"] = {"context": {"result": [{
            "type": "keypointlabels", "from_name": "kp", "to_name": "image", "is_positive": True,
            "original_width": 160, "original_height": 120, "value": {"x": 50, "y": 50, "keypointlabels": ["cat"]}}]}}
    return body


def answered_version(reply: dict[str, Any]) -> str | None:
    """The model version of a /predict reply that carries regions; None for an empty answer."""
    results = reply.get("results") or []
    return results[0].get("model_version") if results and results[0].get("result") else None


#: how the segmenter is measured: its key in the results and what it means
SEGMENTER_MODES = {
    "one-image": ("segmenter_one_image", "clicks on one image (each new image is a ~20 s CPU encoder run)"),
    "distinct": ("segmenter", "a click on a new image each call: one encoder run each (a GPU run)"),
    "stub-encoder": ("segmenter_stub_encoder", "a new image each call, SAM's encoder replaced by its host-side work "
                     "and random features (bench/stub_encoder): a CPU diagnostic of everything but the encoder"),
}


def part_memory(calls: int, only: list[str] | None = None, segmenter: str = "one-image") -> dict[str, Any]:
    images = image_server()
    work = Path(tempfile.mkdtemp(prefix="bench-hardening-"))
    cases = {
        "detector": ("backends.detector", DETECT_CONFIG, False, calls,
                     {"YOLO_OFFLINE": "1", "DETECTOR_BASE_WEIGHTS": "yolo11n.yaml", "DETECTOR_PREDICT_IMGSZ": "320"}),
        "active": ("backends.active", CLASSIFY_CONFIG, False, calls, {"ACTIVE_BACKBONE": "small_cnn"}),
        "segmenter": ("backends.segmenter", SEGMENT_CONFIG, True, calls,
                      # SAM vit_b, as the recorded figures (and the stub, which replaces its encoder)
                      {"SAM_ALLOW_RANDOM": "1", "SAM_ENGINE": "sam",
                       **(stub_encoder_env() if segmenter == "stub-encoder" else {})}),
    }
    results = {}
    for name, (module, config, click, n, extra) in cases.items():
        if only and name not in only:
            continue
        port = free_port()
        env = {"DATA_DIR": str(work / name), "ALLOWED_MEDIA_HOSTS": "127.0.0.1", "LOG_LEVEL": "WARNING",
               "WARMUP": "0", "SAM_PREFETCH_ON_OPEN": "0", **extra}
        if name == "active":
            publish_classifier(work / name)
        proc = backend_process(module, port, env, work / f"{name}.log").start(timeout=120)
        if click and segmenter == "stub-encoder" and STUB_MARKER not in proc.log_tail(100_000):
            proc.stop()
            raise SystemExit(f"the encoder stub did not load (see {work / name}.log): refusing to run the real one")
        session = requests.Session()
        rss, gpu, failed, started, versions = {}, {}, 0, time.time(), Counter()
        try:
            for i in range(1, n + 1):
                same_image = click and segmenter == "one-image"
                url = f"{images}/img/{0 if same_image else i}.png"
                reply = session.post(f"http://127.0.0.1:{port}/predict", json=predict_body(url, config, click), timeout=600)
                failed += reply.status_code != 200
                if reply.status_code == 200:
                    versions[answered_version(reply.json())] += 1
                if i % 100 == 0 or i == n:  # the whole curve: a slow leak shows as a trend, not one ratio
                    rss[i], gpu[i] = round(rss_mib(proc.pid), 1), gpu_mib(session, f"http://127.0.0.1:{port}")
        finally:
            proc.stop()
        ratio = rss[n] / rss[100]
        key = SEGMENTER_MODES[segmenter][0] if click else name
        results[key] = {"calls": n, "distinct_images": not same_image, "rss_mib_after_100": rss[100],
                        f"rss_mib_after_{n}": rss[n], "ratio": round(ratio, 3), "failed": failed,
                        "replies_per_version": dict(versions), "seconds": round(time.time() - started, 1),
                        "within_1_2x": ratio <= 1.2, "device": device_name(), "rss_mib_every_100_calls": list(rss.values())}
        if gpu[n] is not None:  # on a GPU the embedding cache's bound shows here
            results[key].update(gpu_allocated_mib_every_100_calls=list(gpu.values()),
                                gpu_allocated_ratio=round(gpu[n] / gpu[100], 3) if gpu[100] else None)
        if name == "active":
            results[key]["note"] = ("a published small_cnn classifier version: every call loads the image, runs the "
                                     "classifier and answers a Choices pre-label")
        if click:
            results[key]["note"] = SEGMENTER_MODES[segmenter][1]
        print(key, json.dumps(results[key]), flush=True)
    return results


#: one /predict carrying many tasks, as Retrieve Predictions sends them: (case, tasks, image path)
BATCH_CASES = [("photo_10", 10, "photo"), ("photo_1000", 1000, "photo"), ("big_12", 12, "big")]


def part_batch(cases: list[tuple[str, int, str]] | None = None) -> dict[str, Any]:
    """Peak RSS of a detector answering one /predict of N tasks (distinct 1920x1080 JPEGs; or 12
    9000x9000 PNGs), a fresh process per case, the model loaded by a 1-task request first."""
    images, work = image_server(), Path(tempfile.mkdtemp(prefix="bench-batch-"))
    out: dict[str, Any] = {}
    for case, n, path in cases or BATCH_CASES:
        port = free_port()
        env = {"DATA_DIR": str(work / case), "ALLOWED_MEDIA_HOSTS": "127.0.0.1", "LOG_LEVEL": "WARNING", "WARMUP": "0",
               "YOLO_OFFLINE": "1", "DETECTOR_BASE_WEIGHTS": "yolo11n.yaml", "MEDIA_CACHE_MB": "0"}
        proc = backend_process("backends.detector", port, env, work / f"{case}.log").start(timeout=120)
        url = f"http://127.0.0.1:{port}/predict"
        try:
            requests.post(url, json=predict_body(f"{images}/img/0.png", DETECT_CONFIG, False), timeout=600).raise_for_status()
            loaded = peak_rss_mib(proc.pid)
            tasks = [{"id": i + 1, "data": {"image": f"{images}/{path}/{i + 1}.png"}} for i in range(n)]
            started = time.time()
            reply = requests.post(url, json={"tasks": tasks, "label_config": DETECT_CONFIG, "project": "1.1"}, timeout=3600)
            out[case] = {"tasks": n, "status": reply.status_code, "seconds": round(time.time() - started, 1),
                         "peak_rss_mib_model_loaded": round(loaded, 1), "peak_rss_mib": round(peak_rss_mib(proc.pid), 1),
                         "answered": len(reply.json().get("results", [])) if reply.ok else 0}
        finally:
            proc.stop()
        print(case, json.dumps(out[case]), flush=True)
    first = (cases or BATCH_CASES)[0][0]
    for case, _n, _ in (cases or BATCH_CASES)[1:]:
        out[f"ratio_{case}_vs_{first}"] = round(out[case]["peak_rss_mib"] / out[first]["peak_rss_mib"], 3)
    if "photo_1000" in out:
        out["within_1_3x"] = out["ratio_photo_1000_vs_photo_10"] <= 1.3
    out["device"] = device_name()
    return out


def _trickle(host: str, port: int, stop: threading.Event, every_s: float) -> None:
    """A client sending a request's headers one byte every ``every_s`` until stopped or cut off."""
    import socket

    try:
        sock = socket.create_connection((host, port), timeout=60)
        for byte in b"POST /setup HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 10_000:
            if stop.wait(every_s):
                break
            sock.sendall(bytes([byte]))
    except OSError:
        pass  # cut off with a 408: a new one takes its place below


def part_slow(connections: int = 64, calls: int = 200, every_s: float = 5.0) -> dict[str, Any]:
    """/health latency with ``connections`` clients trickling their headers (as a byte every 5 s
    never trips a per-read idle timeout), against the same server with none; dev server and gunicorn."""
    out: dict[str, Any] = {}
    work = Path(tempfile.mkdtemp(prefix="bench-slow-"))
    for server, workers in (("dev_server", "0"), ("gunicorn_2_workers", "2")):
        port = free_port()
        # a deadline past the measurement: the tricklers are all connected while /health is timed
        env = {"DATA_DIR": str(work / server), "WORKERS": workers, "LOG_LEVEL": "WARNING", "WARMUP": "0",
               "REQUEST_TIMEOUT_S": "120"}
        proc = backend_process("tests.toy_backend", port, env, work / f"{server}.log").start(timeout=120)
        try:
            out[server] = {}
            for slow in (0, connections):
                stop = threading.Event()
                for _ in range(slow):
                    threading.Thread(target=_trickle, args=("127.0.0.1", port, stop, every_s), daemon=True).start()
                time.sleep(every_s + 1 if slow else 0)  # every trickler is connected and has sent bytes
                latencies, failed = [], 0
                for _ in range(calls):
                    started = time.perf_counter()
                    try:
                        failed += requests.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code != 200
                    except requests.RequestException:
                        failed += 1
                    latencies.append(time.perf_counter() - started)
                stop.set()
                ms = sorted(x * 1000 for x in latencies)
                out[server][f"slow_{slow}"] = {"p50_ms": round(ms[len(ms) // 2], 2),
                                               "p99_ms": round(ms[int(len(ms) * 0.99) - 1], 2),
                                               "failed": failed, "calls": calls}
            out[server]["p99_within_200_ms"] = out[server][f"slow_{connections}"]["p99_ms"] < 200
            out[server]["p99_ratio_vs_no_slow_clients"] = round(
                out[server][f"slow_{connections}"]["p99_ms"] / max(out[server]["slow_0"]["p99_ms"], 0.01), 2)
        finally:
            proc.stop()
        print(server, json.dumps(out[server]), flush=True)
    out["note"] = f"{connections} connections each sending one header byte every {every_s:g} s; {calls} sequential GET /health"
    return out


def publish_classifier(data_dir: Path) -> str:
    """A classifier version for project 1 in the active backend's model store, published the way its
    training job does (random weights: memory is the question here, not accuracy)."""
    from backends.active import classifier
    from backends.active.task_models import CLASSIFIER_FILE
    from backends.core.registry import ModelRegistry

    registry = ModelRegistry(data_dir / "models", "active", 1)
    with registry.stage() as staged:
        model = classifier.load_base("small_cnn", 2, None)
        classifier.save(model, staged.path / CLASSIFIER_FILE, ["cat", "dog"], 64)
        return staged.publish({"names": ["cat", "dog"], "n_annotations": 0}).name


def load_backend(name: str, work: Path) -> tuple[str, dict[str, str], str]:
    """(module, extra env, what the figures measure) of the backend under load."""
    if name == "toy":
        return "tests.toy_backend", {"TOY_FIT_SECONDS": "8"}, \
            "toy (the product server, journal, queue and registry; trivial model)"
    if name == "detector":
        from ultralytics.nn.tasks import DetectionModel

        from backends.detector.training import save_checkpoint

        model = DetectionModel("yolo11n.yaml", nc=2, verbose=False)
        model.names = {0: "person", 1: "car"}
        base = save_checkpoint(model, work / "weights" / "base.pt", task="detect")
        return "backends.detector", {
            "YOLO_OFFLINE": "1", "DETECTOR_BASE_WEIGHTS": str(base), "DETECTOR_EPOCHS": "1", "DETECTOR_IMGSZ": "160",
            "DETECTOR_BATCH": "2", "DETECTOR_PREDICT_IMGSZ": "320", "DETECTOR_PUBLISH": "always",
            "DETECTOR_SCORE_THRESHOLD": "0", "DETECTOR_MAX_DET": "5"}, \
            "detector (YOLO11n at 320 px, random init; each submit fine-tunes 1 epoch in the background)"
    raise SystemExit(f"unknown load backend {name!r}: toy or detector")


def part_load(seconds: float, clients: int, backend_name: str = "toy") -> dict[str, Any]:
    import secrets
    import sqlite3
    import statistics
    from concurrent.futures import ThreadPoolExecutor

    from backends.stack.processes import label_studio_process

    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    token = secrets.token_hex(20)
    ls_port, port = free_port(), free_port()
    ls_proc = label_studio_process(work / "ls", ls_port, "bench@example.com", secrets.token_urlsafe(12), token)
    ls_proc.start(timeout=300)
    ls_url, url = f"http://127.0.0.1:{ls_port}", f"http://127.0.0.1:{port}"
    data_dir = work / backend_name
    module, extra, what = load_backend(backend_name, work)
    env = {"DATA_DIR": str(data_dir), "LABEL_STUDIO_URL": ls_url, "LABEL_STUDIO_API_KEY": token, "WORKERS": "4",
           "THREADS": "8", "TRAIN_DEBOUNCE_S": "0.5", "LOG_LEVEL": "WARNING", **extra}
    backend = backend_process(module, port, env, work / f"{backend_name}.log").start(timeout=300)
    ls = requests.Session()
    ls.headers["Authorization"] = f"Token {token}"
    try:
        project = ls.post(f"{ls_url}/api/projects", json={"title": "load", "label_config": DETECT_CONFIG}).json()["id"]
        buf = io.BytesIO()
        Image.fromarray(np.full((120, 160, 3), 90, np.uint8)).save(buf, format="PNG")
        ls.post(f"{ls_url}/api/projects/{project}/import?commit_to_project=true",
                files=[("a.png", ("a.png", buf.getvalue(), "image/png"))]).raise_for_status()
        task = ls.get(f"{ls_url}/api/tasks?project={project}").json()["tasks"][0]
        ls.post(f"{ls_url}/api/ml", json={"project": project, "url": url, "title": backend_name,
                                          "auto_update": True}).raise_for_status()
        ls.patch(f"{ls_url}/api/projects/{project}", json={"start_training_on_annotation_update": True})
        body = {"tasks": [task], "label_config": DETECT_CONFIG, "project": f"{project}.1"}
        box = [{"from_name": "label", "to_name": "image", "type": "rectanglelabels", "original_width": 160,
                "original_height": 120, "value": {"x": 10, "y": 10, "width": 20, "height": 20,
                                                  "rectanglelabels": ["person"]}}]
        # What every worker answers before anything is published (loads the model in each, too).
        base_versions = {requests.post(f"{url}/predict", json=body, timeout=300).json()["results"][0]["model_version"]
                         for _ in range(8)}
        deadline = time.time() + seconds

        def hammer() -> list[tuple[float, float, int, str | None]]:
            session, out = requests.Session(), []
            while time.time() < deadline:
                t0 = time.time()
                try:
                    reply = session.post(f"{url}/predict", json=body, timeout=60)
                    version = reply.json()["results"][0]["model_version"] if reply.ok else None
                    out.append((t0, time.time(), reply.status_code, version))
                except requests.RequestException:
                    out.append((t0, time.time(), 0, None))
            return out

        def published() -> list[str]:
            return requests.get(f"{url}/versions?project={project}", timeout=10).json()["versions"]

        with ThreadPoolExecutor(clients) as pool:
            futures = [pool.submit(hammer) for _ in range(clients)]
            for wanted in (1, 2):  # each submit: webhook -> training job -> a new version
                time.sleep(3)
                ls.post(f"{ls_url}/api/tasks/{task['id']}/annotations/", json={"result": box}).raise_for_status()
                while len(published()) < wanted and time.time() < deadline:
                    time.sleep(0.5)
            samples = [s for f in futures for s in f.result()]
        details = requests.get(f"{url}/versions?project={project}", timeout=10).json()["details"]
        created = {d["name"]: d["created_at"] for d in details}
        latencies = sorted(1000 * (t1 - t0) for t0, t1, status, _ in samples if status == 200)
        # A reply may name a base version or a published one, the latter only once it existed.
        impossible = [s for s in samples if s[3] not in base_versions | {None} and created.get(s[3], 1e18) > s[1]]
        served = Counter(s[3] for s in samples)
        load = {"backend": what, "gunicorn_workers": 4, "clients": clients, "seconds": seconds, "requests": len(samples),
                "failed": sum(1 for s in samples if s[2] != 200), "p50_ms": round(statistics.median(latencies), 2),
                "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))], 2),
                "versions_published_during_load": sorted(created), "replies_per_version": dict(served),
                "replies_with_a_version_not_yet_published": len(impossible)}
        print("load", json.dumps(load), flush=True)
        if backend_name != "toy":
            return {f"load_{backend_name}": load}
        storm = _storm(url, project, data_dir / "journal.sqlite3", sqlite3)
        print("storm", json.dumps(storm), flush=True)
        return {"load": load, "storm": storm}
    finally:
        backend.stop()
        ls_proc.stop()


def _senders(url: str, project: int, stop: threading.Event, senders: int = 8,
             every_s: float = 0.25) -> list[list[tuple[float, float, int]]]:
    """``senders`` threads each sending an ANNOTATION_UPDATED webhook every ``every_s`` until ``stop``:
    (sent at, seconds to the acknowledgement, status), one list per sender, filled as they go."""
    out: list[list[tuple[float, float, int]]] = [[] for _ in range(senders)]

    def send(i: int) -> None:
        session, n = requests.Session(), 0
        while not stop.is_set():
            n += 1
            body = {"action": "ANNOTATION_UPDATED", "project": {"id": project},
                    "annotation": {"id": 10_000 * (i + 1) + n, "updated_at": f"{time.time()}"}}
            t0 = time.perf_counter()
            try:
                status = session.post(f"{url}/webhook", json=body, timeout=5).status_code
            except requests.RequestException:
                status = 0
            out[i].append((time.time(), time.perf_counter() - t0, status))
            stop.wait(max(0.0, every_s - (time.perf_counter() - t0)))

    for i in range(senders):
        threading.Thread(target=send, args=(i,), daemon=True).start()
    return out


def _predicts(url: str, body: dict[str, Any], stop: threading.Event,
              paused: threading.Event) -> list[tuple[float, float, int]]:
    """One client calling ``/predict`` every 0.2 s until ``stop``, idle while ``paused`` is set."""
    out: list[tuple[float, float, int]] = []

    def call() -> None:
        session = requests.Session()
        while not stop.is_set():
            if paused.is_set():
                stop.wait(0.05)
                continue
            t0 = time.perf_counter()
            try:
                status = session.post(f"{url}/predict", json=body, timeout=60).status_code
            except requests.RequestException:  # the server stopped under the last call
                status = 0
            out.append((time.time(), time.perf_counter() - t0, status))
            stop.wait(0.2)

    threading.Thread(target=call, daemon=True).start()
    return out


def _latency(samples: list[tuple[float, float, int]], start: float, end: float) -> dict[str, Any]:
    chosen = sorted(1000 * s[1] for s in samples if start <= s[0] < end)
    if not chosen:
        return {"n": 0}
    return {"n": len(chosen), "failed": sum(1 for s in samples if start <= s[0] < end and s[2] != 200),
            "p50_ms": round(chosen[len(chosen) // 2], 1), "p99_ms": round(chosen[int(0.99 * (len(chosen) - 1))], 1),
            "max_ms": round(chosen[-1], 1)}


def _jobs_phases(url: str, project: int, body: dict[str, Any], seconds: float) -> dict[str, Any]:
    """Idle, the ``seconds`` after START_TRAINING, and ``seconds`` once ultralytics runs an epoch,
    each with a ``/predict`` client beside the senders; then idle and fine-tune again with the
    senders alone (``*_acks_alone``), which tells a wait behind the server's own inference from a
    wait behind the job."""
    stop, paused = threading.Event(), threading.Event()
    # the senders' events go to a project of their own: on the trained one they would keep its job
    # waiting out the debounce (up to 30 s) instead of starting it at START_TRAINING
    paused.set()
    acks, predicts = _senders(url, project + 1000, stop), _predicts(url, body, stop, paused)
    marks = {"idle_acks_alone": time.time()}
    time.sleep(seconds)
    paused.clear()
    marks["idle"] = time.time()
    time.sleep(seconds)
    marks["job_start"] = time.time()
    job = requests.post(f"{url}/webhook", json={"action": "START_TRAINING", "project": {"id": project}}, timeout=5)
    job_id = job.json()["job"]
    time.sleep(seconds)
    marks["job_start_end"] = time.time()
    deadline = time.time() + 300
    def epoch_done() -> bool:
        return bool((requests.get(f"{url}/jobs/{job_id}", timeout=5).json().get("progress") or {}).get("epoch"))

    while time.time() < deadline and not epoch_done():
        time.sleep(0.5)
    marks["fine_tune"] = time.time()
    time.sleep(seconds)
    paused.set()
    time.sleep(1.0)  # the last predict returns
    marks["fine_tune_acks_alone"] = time.time()
    time.sleep(seconds)
    marks["fine_tune_acks_alone_end"] = time.time()
    running = requests.get(f"{url}/jobs/{job_id}", timeout=5).json().get("state")
    stop.set()
    requests.post(f"{url}/jobs/{job_id}/cancel", timeout=5)  # it was only there to be measured beside
    flat = [s for sender in acks for s in sender]
    phases = {"idle_acks_alone": (marks["idle_acks_alone"], marks["idle"]),
              "idle": (marks["idle"], marks["job_start"]),
              "job_start": (marks["job_start"], marks["job_start_end"]),
              "fine_tune": (marks["fine_tune"], marks["fine_tune"] + seconds),
              "fine_tune_acks_alone": (marks["fine_tune_acks_alone"], marks["fine_tune_acks_alone_end"])}
    out: dict[str, Any] = {name: {"webhook_ack": _latency(flat, *span), "predict": _latency(predicts, *span)}
                           for name, span in phases.items()}
    for name in ("idle_acks_alone", "fine_tune_acks_alone"):
        del out[name]["predict"]
    idle_p99 = out["idle"]["predict"].get("p99_ms")
    out["predict_p99_fine_tune_over_idle"] = round(out["fine_tune"]["predict"]["p99_ms"] / idle_p99, 2) if idle_p99 else None
    out["job_running_at_end"] = running == "running"
    out["job"] = requests.get(f"{url}/jobs/{job_id}", timeout=5).json().get("state")
    return out


def part_jobs(seconds: float = 10.0) -> dict[str, Any]:
    import secrets

    from backends.stack.processes import label_studio_process

    work = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    token, ls_port = secrets.token_hex(20), free_port()
    ls_proc = label_studio_process(work / "ls", ls_port, "bench@example.com", secrets.token_urlsafe(12), token)
    ls_proc.start(timeout=300)
    ls_url = f"http://127.0.0.1:{ls_port}"
    ls = requests.Session()
    ls.headers["Authorization"] = f"Token {token}"
    module, extra, what = load_backend("detector", work)
    # epochs enough for the fine-tune to outlast every phase on a fast machine (job_running_at_end
    # says it did); the job is cancelled after the last phase
    extra = {**extra, "DETECTOR_EPOCHS": "1000", "DETECTOR_PATIENCE": "0", "DETECTOR_PRELABEL": "request"}
    results: dict[str, Any] = {"backend": what + "; 1,000 epochs, so the fine-tune runs throughout, then cancelled",
                               "senders": 8,
                               "webhook_every_s": 0.25, "seconds_per_phase": seconds}
    try:
        for runner in ("thread", "process"):
            project = ls.post(f"{ls_url}/api/projects", json={"title": runner, "label_config": DETECT_CONFIG}).json()["id"]
            files = []
            for i in range(4):
                buf = io.BytesIO()
                Image.fromarray(np.random.default_rng(i).integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(buf, "PNG")
                files.append((f"{i}.png", (f"{i}.png", buf.getvalue(), "image/png")))
            ls.post(f"{ls_url}/api/projects/{project}/import?commit_to_project=true", files=files).raise_for_status()
            tasks = ls.get(f"{ls_url}/api/tasks?project={project}").json()["tasks"]
            box = [{"from_name": "label", "to_name": "image", "type": "rectanglelabels", "original_width": 160,
                    "original_height": 120, "value": {"x": 10, "y": 10, "width": 30, "height": 30,
                                                      "rectanglelabels": ["person"]}}]
            for task in tasks:
                ls.post(f"{ls_url}/api/tasks/{task['id']}/annotations/", json={"result": box}).raise_for_status()
            port = free_port()
            env = {"DATA_DIR": str(work / runner), "LABEL_STUDIO_URL": ls_url, "LABEL_STUDIO_API_KEY": token,
                   "TRAIN_DEBOUNCE_S": "0.5", "LOG_LEVEL": "WARNING", "JOB_RUNNER": runner, **extra}
            backend = backend_process(module, port, env, work / f"{runner}.log").start(timeout=300)
            url = f"http://127.0.0.1:{port}"
            try:
                ls.post(f"{ls_url}/api/ml", json={"project": project, "url": url, "title": runner}).raise_for_status()
                body = {"tasks": [tasks[0]], "label_config": DETECT_CONFIG, "project": f"{project}.1"}
                requests.post(f"{url}/predict", json=body, timeout=300).raise_for_status()  # warm
                results[runner] = _jobs_phases(url, project, body, seconds)
                print(runner, json.dumps(results[runner]), flush=True)
            finally:
                backend.stop()
    finally:
        ls_proc.stop()
    return results


def _storm(url: str, project: int, journal: Path, sqlite3: Any, events: int = 2000, seconds: float = 10,
           clients: int = 20) -> dict[str, Any]:
    """``events`` ANNOTATION_CREATED webhooks spread evenly over ``seconds`` by ``clients`` threads."""
    from concurrent.futures import ThreadPoolExecutor

    before = _count_events(journal, sqlite3)
    start = time.time() + 0.5
    worst_jobs = {"running": 0, "pending": 0}
    stop = threading.Event()

    def watch_jobs() -> None:
        while not stop.is_set():
            jobs = requests.get(f"{url}/jobs?project={project}", timeout=10).json()["jobs"]
            for state in worst_jobs:
                worst_jobs[state] = max(worst_jobs[state], sum(j["state"] == state for j in jobs))
            time.sleep(0.2)

    def send(client: int) -> list[tuple[int, float]]:
        session, out = requests.Session(), []
        for i in range(client, events, clients):
            time.sleep(max(0.0, start + seconds * i / events - time.time()))
            payload = {"action": "ANNOTATION_CREATED", "project": {"id": project},
                       "annotation": {"id": 1_000_000 + i}, "task": {"id": 1}}
            t0 = time.perf_counter()
            reply = session.post(f"{url}/webhook", json=payload, timeout=30)
            out.append((reply.status_code, 1000 * (time.perf_counter() - t0)))
        return out

    watcher = threading.Thread(target=watch_jobs, daemon=True)
    watcher.start()
    with ThreadPoolExecutor(clients) as pool:
        replies = [r for f in [pool.submit(send, c) for c in range(clients)] for r in f.result()]
    elapsed = time.time() - start
    stop.set()
    watcher.join()
    acks = sorted(ms for status, ms in replies if status == 200)
    return {"events": events, "clients": clients, "seconds": round(elapsed, 1),
            "acknowledged": len(acks), "ack_p50_ms": round(acks[len(acks) // 2], 2),
            "ack_p99_ms": round(acks[int(0.99 * (len(acks) - 1))], 2),
            "journaled": _count_events(journal, sqlite3) - before,
            "most_running_jobs_seen": worst_jobs["running"], "most_pending_jobs_seen": worst_jobs["pending"]}


def _count_events(journal: Path, sqlite3: Any) -> int:
    with sqlite3.connect(journal) as db:
        return db.execute("SELECT COUNT(*) FROM events").fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", default="memory,load")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--backends", default="detector,active,segmenter", help="memory part: which backends")
    parser.add_argument("--segmenter", choices=SEGMENTER_MODES, default="one-image",
                        help="memory part: " + "; ".join(f"{k}: {v[1]}" for k, v in SEGMENTER_MODES.items()))
    parser.add_argument("--batch-tasks", default="", help="batch part: task counts instead of 10, 1000 and 12 big "
                        "images, e.g. 10,100 (a main from before chunked /predict needs ~29 MB per task)")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--load-backend", default="toy", choices=["toy", "detector"],
                        help="load part: the toy backend (plumbing + storm) or the detector (a real model)")
    args = parser.parse_args()
    out = RESULTS / "hardening.json"
    results: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    if "memory" in args.parts.split(","):
        results["memory"] = {**results.get("memory", {}), **part_memory(args.calls, args.backends.split(","), args.segmenter)}
    if "slow" in args.parts.split(","):
        results["slow_clients"] = part_slow()
    if "batch" in args.parts.split(","):
        cases = [(f"photo_{n}", int(n), "photo") for n in args.batch_tasks.split(",")] if args.batch_tasks else None
        results["predict_batch_memory"] = part_batch(cases)
    if "load" in args.parts.split(","):
        results.update(part_load(args.seconds, args.clients, args.load_backend))
    if "jobs" in args.parts.split(","):
        results["jobs_apart"] = part_jobs()
    results["machine"] = {"cpus": os.cpu_count()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
