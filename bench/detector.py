"""Detector benchmarks -> bench/results/detector.json (+ detector.png).

(a) ``predict``: /predict end to end (real server process, cached image) vs the raw
    ``YOLO.predict`` call on the same image and weights, p50 ratio (goal <= 1.10); and ONNX Runtime
    vs PyTorch on CPU, raw calls, p50 speed-up (goal >= 1.5x).
(b) ``transfer``: Fashion-MNIST items composed onto 320x320 canvases with exact boxes. A base is
    pretrained on classes 0-4, then fine-tuned on classes 5-9 with 25/50/100 labeled images, from
    the base vs from scratch, same epochs; mAP50 on a fixed test set of classes 5-9.
(m) ``many_tasks``: one /predict of 8 tasks vs 8 sequential raw torch calls on the same weights and
    image (goal: the endpoint >= 1.2x faster), per runtime and with the default (auto).
(w) ``first_predict``: the first /predict after a server start vs a warm one, with the server's
    warm-up (a real inference in the background) and without it (goal: first <= 1.2x warm).
(d) ``transfer_tasks``: (b) for segment, pose, classify and OBB weights (bench/transfer_tasks.py),
    25/50/100 labeled images, each task scored by its own metric (mask, pose, OBB mAP50; top-1).
(e) ``corrections`` (inside (b), and for masks inside (d)'s segment runs, to 200 labels):
    corrections per test image (detector/corrections.py: deletes, draws, adjusts, relabels) for
    each of (b)'s fine-tuned models, at the serving score threshold,
    against labeling by hand (every box drawn); 25/50/100/200 labeled images. Goal: at 100 labels
    from base, at most 0.5x the corrections of labeling by hand.
(c) ``loop``: seconds from an annotation submit in a real Label Studio to a new version serving,
    for 50 labeled images at imgsz 320 on CPU.
(f) ``prelabel``: the prelabel job over 1,000 tasks through a real Label Studio, as a ratio of
    its throughput to raw batched ``YOLO.predict`` on the same images (bench/prelabel_throughput.py;
    goal >= 0.8).

    .venv/bin/python bench/detector.py [--parts a,m,w,b,c,d,f] [--quick] [--tasks 1000]
        [--kinds segment,pose,classify,obb]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("YOLO_OFFLINE", "1")

import requests  # noqa: E402

from backends.core.app import WARMUP_DONE  # noqa: E402
from backends.detector.corrections import Region, by_hand  # noqa: E402
from backends.detector.dataset import split, write_dataset  # noqa: E402
from backends.detector.settings import DetectorSettings  # noqa: E402
from backends.detector.training import adapt_head, evaluate, fine_tune, save_checkpoint  # noqa: E402
from backends.detector.weights import configure_ultralytics, load_model, onnx_for  # noqa: E402
from backends.stack.processes import backend_process, free_port, label_studio_process  # noqa: E402
from bench import fmnist  # noqa: E402
from bench.prelabel_throughput import part_prelabel  # noqa: E402
from bench.protocol import serve_image  # noqa: E402
from bench.timing import timed  # noqa: E402
from bench.transfer_tasks import THRESHOLDS, at_threshold, part_tasks, sweep  # noqa: E402

RESULTS = ROOT / "bench" / "results"
FIRST_CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
                '<Label value="cat"/><Label value="person"/></RectangleLabels></View>')


def p50(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def coco_checkpoint(work: Path) -> Path:
    """yolo11n's architecture with the COCO names as a local .pt (pretrained weights where a network
    exists would be the same call path; offline the weights are random, which does not change cost)."""
    model = load_model("yolo11n.yaml").model.model
    return save_checkpoint(model, work / "yolo11n-local.pt")


# -- (a) ------------------------------------------------------------------------------------------
def part_predict(work: Path, n: int) -> dict[str, Any]:
    from PIL import Image
    from ultralytics import YOLO

    weights = coco_checkpoint(work)
    url, image_server = serve_image()
    image = Image.open(io.BytesIO(requests.get(url, timeout=10).content)).convert("RGB")
    torch_model = YOLO(str(weights))
    raw_torch = timed(lambda: torch_model.predict(image, conf=0.25, imgsz=640, verbose=False), n)
    onnx_model = YOLO(onnx_for(str(weights), 640), task="detect")
    raw_onnx = timed(lambda: onnx_model.predict(image, conf=0.25, imgsz=640, verbose=False), n)
    config = ('<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
              '<Label value="cat"/><Label value="person"/></RectangleLabels></View>')
    body = {"tasks": [{"id": 1, "data": {"image": url}}], "label_config": config, "project": "1.1"}
    served = {}
    for runtime in ("torch", "onnx"):
        port = free_port()
        env = {"DATA_DIR": str(work / f"server-{runtime}"), "DETECTOR_BASE_WEIGHTS": str(weights),
               "DETECTOR_RUNTIME": runtime, "ALLOWED_MEDIA_HOSTS": "127.0.0.1", "LOG_LEVEL": "WARNING",
               "EMBEDDED_WORKER": "false", "DETECTOR_WEIGHTS_DIRS": json.dumps([str(work)])}
        proc = backend_process("backends.detector", port, env, work / f"server-{runtime}.log").start(timeout=120)
        session = requests.Session()
        try:
            url = f"http://127.0.0.1:{port}/predict"
            served[runtime] = timed(lambda s=session, u=url: s.post(u, json=body, timeout=60).raise_for_status(), n)
        finally:
            proc.stop()
    image_server.shutdown()
    result = {
        "image": f"chelsea.jpg {image.width}x{image.height}", "requests": n,
        "raw_torch_p50_ms": p50(raw_torch), "predict_endpoint_torch_p50_ms": p50(served["torch"]),
        "ratio_endpoint_vs_raw_p50": p50(served["torch"]) / p50(raw_torch),
        "raw_onnx_p50_ms": p50(raw_onnx), "onnx_speedup_vs_torch_raw_p50": p50(raw_torch) / p50(raw_onnx),
        "predict_endpoint_onnx_p50_ms": p50(served["onnx"]),
        "onnx_speedup_vs_torch_endpoint_p50": p50(served["torch"]) / p50(served["onnx"]),
        "note": "ONNX is exported with dynamic axes, so both runtimes get the same rectangular letterbox",
    }
    print(json.dumps(result, indent=2))
    return result


def part_many(work: Path, n: int, tasks: int = 8) -> dict[str, Any]:
    """(m) One /predict of ``tasks`` tasks vs ``tasks`` sequential raw ``YOLO.predict`` calls (torch,
    one image each) and one batched raw call, same weights and image, one run; the server under
    each runtime, its default (auto: ONNX Runtime, one image per call on a CPU) and auto with all
    the tasks in one call."""
    from PIL import Image
    from ultralytics import YOLO

    weights = coco_checkpoint(work)
    url, image_server = serve_image()
    image = Image.open(io.BytesIO(requests.get(url, timeout=10).content)).convert("RGB")
    torch_model = YOLO(str(weights))
    sequential = timed(lambda: [torch_model.predict(image, conf=0.25, imgsz=640, verbose=False) for _ in range(tasks)], n)
    batched = timed(lambda: torch_model.predict([image] * tasks, conf=0.25, imgsz=640, verbose=False), n)
    body = {"tasks": [{"id": i + 1, "data": {"image": f"{url}?task={i}"}} for i in range(tasks)],
            "label_config": FIRST_CONFIG, "project": "1.1"}
    result: dict[str, Any] = {"image": f"chelsea.jpg {image.width}x{image.height}", "tasks": tasks, "requests": n,
                              "raw_torch_sequential_p50_ms": p50(sequential), "raw_torch_batched_p50_ms": p50(batched)}
    variants = {"torch": {"DETECTOR_RUNTIME": "torch"}, "onnx": {"DETECTOR_RUNTIME": "onnx"}, "auto": {},
                f"auto_batch{tasks}": {"DETECTOR_PREDICT_BATCH": str(tasks)}}
    for runtime, overrides in variants.items():
        port = free_port()
        env = {"DATA_DIR": str(work / f"many-{runtime}"), "DETECTOR_BASE_WEIGHTS": str(weights),
               "ALLOWED_MEDIA_HOSTS": "127.0.0.1", "LOG_LEVEL": "WARNING", "EMBEDDED_WORKER": "false",
               "DETECTOR_WEIGHTS_DIRS": json.dumps([str(work)]), **overrides}
        proc = backend_process("backends.detector", port, env, work / f"many-{runtime}.log").start(timeout=120)
        session = requests.Session()
        try:
            url = f"http://127.0.0.1:{port}/predict"
            served = p50(timed(lambda s=session, u=url: s.post(u, json=body, timeout=120).raise_for_status(), n))
        finally:
            proc.stop()
        result[f"predict_endpoint_{runtime}_p50_ms"] = served
        result[f"speedup_{runtime}_vs_raw_torch_sequential"] = p50(sequential) / served
    image_server.shutdown()
    print(json.dumps(result, indent=2))
    return result


def part_first_predict(work: Path, n: int, starts: int = 3) -> dict[str, Any]:
    """(w) The first /predict after a start vs a warm one, with and without the server's warm-up
    (WARMUP), same weights, one run. With it on, the first request is sent once the log says the
    warm-up is done, as when a labeler opens the first task a moment after the start. One first
    request is one noisy sample, so the server is started ``starts`` times and the median taken."""
    weights = coco_checkpoint(work)
    url, image_server = serve_image()
    opened = iter(range(10**6))  # every request opens a task not seen before, as a labeler does
    result: dict[str, Any] = {"image": "chelsea.jpg", "warm_requests": n, "starts_with_warmup": starts,
                              "note": "each request a task not seen before (its image downloaded); /setup first, "
                                      "as Label Studio does"}
    for warmup, runs in (("false", 1), ("true", starts)):
        samples = [_first_and_warm(work, weights, url, warmup, n, opened, k) for k in range(runs)]
        first, warm = statistics.median(f for f, _ in samples), statistics.median(w for _, w in samples)
        result["with_warmup" if warmup == "true" else "without_warmup"] = {
            "first_ms": first, "warm_p50_ms": warm, "first_vs_warm": first / warm,
            "first_ms_each_start": [round(f, 1) for f, _ in samples]}
    image_server.shutdown()
    print(json.dumps(result, indent=2))
    return result


def _first_and_warm(work: Path, weights: Path, url: str, warmup: str, n: int, opened: Any, k: int) -> tuple[float, float]:
    port, log = free_port(), work / f"first-{warmup}-{k}.log"
    env = {"DATA_DIR": str(work / f"first-{warmup}-{k}"), "DETECTOR_BASE_WEIGHTS": str(weights), "WARMUP": warmup,
           "ALLOWED_MEDIA_HOSTS": "127.0.0.1", "EMBEDDED_WORKER": "false", "DETECTOR_WEIGHTS_DIRS": json.dumps([str(work)])}
    proc = backend_process("backends.detector", port, env, log).start(timeout=120)
    try:
        deadline = time.monotonic() + 120
        while warmup == "true" and WARMUP_DONE not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        session = requests.Session()
        session.post(f"http://127.0.0.1:{port}/setup", timeout=30,  # parses the label config, as before a task opens
                     json={"project": "1.1", "schema": FIRST_CONFIG, "extra_params": ""}).raise_for_status()

        def call() -> None:
            i = next(opened)
            body = {"tasks": [{"id": i, "data": {"image": f"{url}?task={i}"}}], "label_config": FIRST_CONFIG,
                    "project": "1.1"}
            session.post(f"http://127.0.0.1:{port}/predict", json=body, timeout=120).raise_for_status()

        first = timed_once(call)
        return first, p50(timed(call, n))
    finally:
        proc.stop()


def timed_once(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


# -- (b) ------------------------------------------------------------------------------------------
def yolo_set(root: Path, items: list[Any], names: list[str], seed: int, val_ratio: float = 0.2) -> Path:
    images, samples = {}, []
    from backends.detector.dataset import Sample

    for i, (img, boxes) in enumerate(items):
        w, h = img.size
        samples.append(Sample(i, "", [(c, (x + bw / 2) / w, (y + bh / 2) / h, bw / w, bh / h) for c, x, y, bw, bh in boxes]))
        images[i] = img
    train, val = split(list(images), val_ratio, seed)
    return write_dataset(root, samples, images, names, train, val)


def val_curve(trainer: Any) -> list[float]:
    """mAP50 on the fine-tuning set's val split after each epoch, from ultralytics' results.csv."""
    import csv

    with open(Path(trainer.save_dir) / "results.csv") as f:
        return [round(float(row["metrics/mAP50(B)"]), 4) for row in csv.DictReader(f)]


def transfer_weights(work: Path, label: str, n: int) -> tuple[Path, Path]:
    """(start, best) checkpoints of one run of part (b): what the notebook draws predictions with."""
    prefix = {"from_base": "b", "from_scratch": "s"}[label]
    return work / f"{prefix}{n}.pt", work / f"{label}-{n}" / "runs" / "train" / "weights" / "best.pt"


def part_transfer(work: Path, quick: bool, budgets: list[int] | None = None) -> dict[str, Any]:
    x, y = fmnist.load("train")
    xt, yt = fmnist.load("test")
    base_classes, new_classes = [0, 1, 2, 3, 4], [5, 6, 7, 8, 9]
    base_names = [fmnist.NAMES[c] for c in base_classes]
    new_names = [fmnist.NAMES[c] for c in new_classes]
    n_base, base_epochs = (60, 3) if quick else (400, 15)
    default_budgets, epochs = ([25], 2) if quick else ([25, 50, 100, 200], 15)
    budgets = budgets or default_budgets
    settings = DetectorSettings(imgsz=320, batch=16, epochs=base_epochs, freeze=0, patience=0, lr0=0.01)
    started = time.time()
    base_data = yolo_set(work / "base-data", fmnist.canvases(x, y, base_classes, n_base, seed=1), base_names, 0)
    scratch = save_checkpoint(adapt_head(load_model("yolo11n.yaml").model.model, base_names), work / "scratch5.pt")
    base_trainer = fine_tune(scratch, base_data, work / "base", settings)
    base = Path(base_trainer.best)
    base_map = evaluate(base, base_data, settings, base_names, workdir=work / "base")["map50"]
    print(f"base pretrained on classes 0-4: mAP50 {base_map:.3f} ({time.time() - started:.0f} s)")
    test = fmnist.canvases(xt, yt, new_classes, 40 if quick else 150, seed=99)
    test_data = yolo_set(work / "test-data", test, new_names, 0, val_ratio=0.999)
    tune = settings.model_copy(update={"epochs": epochs, "freeze": 10})
    scratch_settings = settings.model_copy(update={"epochs": epochs, "freeze": 0})
    rows = []
    for n in budgets:
        data = yolo_set(work / f"ft-{n}", fmnist.canvases(x, y, new_classes, n, seed=10 + n), new_names, 0)
        row: dict[str, Any] = {"labeled_images": n}
        for label, start, cfg in (
            ("from_base", save_checkpoint(adapt_head(load_model(str(base)).model.model, new_names),
                                          transfer_weights(work, "from_base", n)[0]), tune),
            ("from_scratch", save_checkpoint(adapt_head(load_model("yolo11n.yaml").model.model, new_names),
                                             transfer_weights(work, "from_scratch", n)[0]), scratch_settings),
        ):
            t0 = time.time()
            trainer = fine_tune(start, data, work / f"{label}-{n}", cfg)
            row[f"{label}_map50"] = evaluate(Path(trainer.best), test_data, cfg, new_names,
                                               workdir=work / f"{label}-{n}")["map50"]
            row[f"{label}_seconds"] = round(time.time() - t0, 1)
            row[f"{label}_val_curve"] = val_curve(trainer)
            row[f"{label}_corrections"] = corrections_on_test_set(Path(trainer.best), test, new_names)
        row["by_hand_corrections"] = by_hand([truth_regions(boxes, new_names, img.size) for img, boxes in test]).to_json()
        row["from_base_over_by_hand"] = round(row["from_base_corrections"]["per_image"]
                                              / row["by_hand_corrections"]["per_image"], 3)
        print(row)
        rows.append(row)
    return {"base_images": n_base, "base_epochs": base_epochs, "base_map50_on_own_classes": base_map,
            "finetune_epochs": epochs, "freeze_from_base": 10, "imgsz": 320, "test_images": len(test), "rows": rows,
            "new_names": new_names, "test_canvases_seed": 99}


def truth_regions(boxes: list[Any], names: list[str], size: tuple[int, int]) -> list[Region]:
    w, h = size
    return [Region(names[c], (x / w, y / h, (x + bw) / w, (y + bh) / h)) for c, x, y, bw, bh in boxes]


def corrections_on_test_set(weights: Path, test: list[Any], names: list[str]) -> dict[str, Any]:
    """(e) Corrections per test image for ``weights`` at the serving score threshold, and per
    image at each of ``THRESHOLDS`` (``by_threshold``): one inference at the lowest, filtered."""
    from ultralytics import YOLO

    model, threshold = YOLO(str(weights)), DetectorSettings().score_threshold
    scored = []
    for img, boxes in test:
        (result,) = model.predict(img, conf=min(THRESHOLDS), imgsz=320, verbose=False)
        predicted = [(Region(names[int(c)], tuple(b)), s) for b, c, s in
                     zip(result.boxes.xyxyn.tolist(), result.boxes.cls.tolist(), result.boxes.conf.tolist())]
        scored.append((predicted, truth_regions(boxes, names, img.size)))
    return {**at_threshold(scored, threshold).to_json(), "by_threshold": sweep(scored)}


# -- (c) ------------------------------------------------------------------------------------------
def part_loop(work: Path, quick: bool) -> dict[str, Any]:
    x, y = fmnist.load("train")
    names = [fmnist.NAMES[c] for c in range(5)]
    n = 10 if quick else 50
    items = fmnist.canvases(x, y, list(range(5)), n, seed=5)
    token, port = secrets.token_hex(20), free_port()
    ls = label_studio_process(work / "ls", port, "bench@example.com", secrets.token_urlsafe(12), token).start(timeout=300)
    det_port = free_port()
    env = {"DATA_DIR": str(work / "det"), "LABEL_STUDIO_URL": f"http://127.0.0.1:{port}", "LABEL_STUDIO_API_KEY": token,
           "DETECTOR_BASE_WEIGHTS": "yolo11n.yaml", "DETECTOR_IMGSZ": "320", "DETECTOR_EPOCHS": "3" if quick else "10",
           "DETECTOR_PUBLISH": "always", "TRAIN_DEBOUNCE_S": "1", "LOG_LEVEL": "WARNING"}
    det = backend_process("backends.detector", det_port, env, work / "det.log").start(timeout=120)
    http = requests.Session()
    http.headers["Authorization"] = f"Token {token}"
    base, det_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{det_port}"
    try:
        config = ('<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
                  + "".join(f'<Label value="{n}"/>' for n in names) + "</RectangleLabels></View>")
        project = http.post(f"{base}/api/projects", json={"title": "bench loop", "label_config": config}).json()["id"]
        files = []
        for i, (img, _) in enumerate(items):
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            files.append((f"c{i}.png", (f"c{i}.png", buf.getvalue(), "image/png")))
        http.post(f"{base}/api/projects/{project}/import?commit_to_project=true", files=files).raise_for_status()
        tasks = sorted(t["id"] for t in http.get(f"{base}/api/tasks?project={project}&page_size=1000").json()["tasks"])

        def result(boxes: list[Any]) -> list[dict[str, Any]]:
            return [{"from_name": "label", "to_name": "image", "type": "rectanglelabels", "original_width": 320,
                     "original_height": 320, "value": {"x": bx / 3.2, "y": by / 3.2, "width": bw / 3.2,
                                                       "height": bh / 3.2, "rotation": 0,
                                                       "rectanglelabels": [names[c]]}} for c, bx, by, bw, bh in boxes]

        for task, (_, boxes) in zip(tasks[:-1], items[:-1]):  # labeled before the backend is connected
            http.post(f"{base}/api/tasks/{task}/annotations/", json={"result": result(boxes)}).raise_for_status()
        http.post(f"{base}/api/ml", json={"project": project, "url": det_url, "title": "detector",
                                           "auto_update": True}).raise_for_status()
        http.patch(f"{base}/api/projects/{project}", json={"start_training_on_annotation_update": True})
        submitted = time.time()
        http.post(f"{base}/api/tasks/{tasks[-1]}/annotations/", json={"result": result(items[-1][1])}).raise_for_status()
        submit_s = time.time() - submitted
        while True:
            current = requests.get(f"{det_url}/versions?project={project}", timeout=5).json()["current"]
            if current != "detector-base-yolo11n":
                break
            if time.time() - submitted > 1800:
                raise TimeoutError("no version after 30 minutes")
            time.sleep(0.5)
        serving = time.time() - submitted
        meta = requests.get(f"{det_url}/versions?project={project}", timeout=5).json()["details"][-1]
        return {"labeled_images": n, "imgsz": 320, "epochs": int(env["DETECTOR_EPOCHS"]),
                "submit_request_seconds": round(submit_s, 3), "seconds_submit_to_serving": round(serving, 1),
                "timings": meta["timings"], "version": current}
    finally:
        det.stop()
        ls.stop()


def plot(results: dict[str, Any], path: Path) -> None:
    """(b) mAP vs labels; (e) corrections per image vs labels for boxes and masks; (d) each task's
    metric from base vs from scratch; (a) inference latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    if "transfer" in results:
        rows = results["transfer"]["rows"]
        ns = [r["labeled_images"] for r in rows]
        axes[0][0].plot(ns, [r["from_base_map50"] for r in rows], "o-", label="fine-tuned from base")
        axes[0][0].plot(ns, [r["from_scratch_map50"] for r in rows], "s--", label="from scratch")
        axes[0][0].set(xlabel="labeled images (classes 5-9)", ylabel="mAP50 on test canvases",
                       title="(b) Transfer learning, boxes")
        axes[0][0].legend()
    plot_corrections(axes[0][1], results)
    plot_tasks(axes[1][0], results.get("transfer_tasks", {}))
    if "predict" in results:
        p = results["predict"]
        labels = ["raw torch", "/predict torch", "raw onnx", "/predict onnx"]
        values = [p["raw_torch_p50_ms"], p["predict_endpoint_torch_p50_ms"], p["raw_onnx_p50_ms"], p["predict_endpoint_onnx_p50_ms"]]
        axes[1][1].bar(labels, values)
        axes[1][1].set(ylabel="p50 ms", title="(a) Inference latency (CPU)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_corrections(ax: Any, results: dict[str, Any]) -> None:
    """(e): corrections per test image, boxes (b) and masks (d's segment rows), vs labels."""
    series = [("boxes", results.get("transfer", {}).get("rows", []), "C0"),
              ("masks", results.get("transfer_tasks", {}).get("segment", {}).get("rows", []), "C1")]
    for what, rows, colour in series:
        rows = [r for r in rows if all((r.get(f"{k}_corrections") or {}).get("per_image") is not None
                                       for k in ("from_base", "from_scratch", "by_hand"))]
        if not rows:
            continue
        ns = [r["labeled_images"] for r in rows]
        ax.plot(ns, [r["from_base_corrections"]["per_image"] for r in rows], "o-", color=colour,
                label=f"{what}: from base")
        ax.plot(ns, [r["from_scratch_corrections"]["per_image"] for r in rows], "s--", color=colour,
                label=f"{what}: from scratch")
        ax.plot(ns, [r["by_hand_corrections"]["per_image"] for r in rows], ":", color=colour,
                label=f"{what}: no model (all by hand)")
    ax.set(xlabel="labeled images", ylabel="corrections per test image", title="(e) Corrections per image")
    if ax.lines:
        ax.legend(fontsize=8)


def plot_tasks(ax: Any, tasks: dict[str, Any]) -> None:
    """(d): each task's own metric on its test canvases, from base vs from scratch."""
    for i, (kind, found) in enumerate(sorted(tasks.items())):
        metric = found.get("metric", "")
        rows = [r for r in found.get("rows", []) if f"from_base_{metric}" in r and f"from_scratch_{metric}" in r]
        ns = [r["labeled_images"] for r in rows]
        ax.plot(ns, [r[f"from_base_{metric}"] for r in rows], "o-", color=f"C{i}", label=f"{kind} {metric}: from base")
        ax.plot(ns, [r[f"from_scratch_{metric}"] for r in rows], "s--", color=f"C{i}", label=f"{kind}: from scratch")
    ax.set(xlabel="labeled images (classes 5-9)", ylabel="metric on test canvases",
           title="(d) Segment, pose, classify, OBB")
    if ax.lines:
        ax.legend(fontsize=7)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", default="a,b,c")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--tasks", type=int, default=1000, help="(f): tasks the prelabel job writes")
    parser.add_argument("--kinds", default="segment,pose,classify,obb", help="(d): the YOLO tasks to run")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-detector-"))
    configure_ultralytics(work)
    out = RESULTS / "detector.json"
    results: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    parts = set(args.parts.split(","))
    if "a" in parts:
        results["predict"] = part_predict(work, args.requests)
    if "m" in parts:
        results["many_tasks"] = part_many(work, args.requests)
    if "w" in parts:
        results["first_predict"] = part_first_predict(work, args.requests)
    if "b" in parts:
        results["transfer"] = part_transfer(work, args.quick)
    if "d" in parts:
        kinds = args.kinds.split(",")
        results["transfer_tasks"] = {**results.get("transfer_tasks", {}), **part_tasks(work, args.quick, kinds)}
    if "c" in parts:
        results["loop"] = part_loop(work, args.quick)
        print(json.dumps(results["loop"], indent=2))
    if "f" in parts:
        results["prelabel"] = part_prelabel(work, 50 if args.quick else args.tasks, coco_checkpoint(work))
        print(json.dumps(results["prelabel"], indent=2))
    results["machine"] = {"cpus": os.cpu_count(), "quick": args.quick}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    plot(results, RESULTS / "detector.png")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
