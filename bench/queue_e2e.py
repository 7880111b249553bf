"""The loop through Label Studio -> bench/results/queue_e2e.json (classification) and
bench/results/queue_e2e_detection.json (detection).

A simulated annotator labels tasks with their ground truth in the order a real Label Studio's
``GET /api/projects/{id}/next`` serves them, in two projects with the same tasks:
- ``active``: the backends connected (real server processes, training on submit): the queue is
  reordered after every new model version;
- ``sequential``: no backend, "Sequential sampling" (task id order, i.e. import order).
Both start from the same first labels and stop at the same budget. Then the same model (same code,
epochs, seed) is trained on each project's labels and measured on held-out images.

- ``--task classification`` (default): Fashion-MNIST images, a ``<Choices>``; the active backend
  trains its own classifier (margin strategy); accuracy on the 10k test set, mean of 3 trainings.
- ``--task detection``: ``bench/scenes.py`` canvases (Fashion-MNIST items on photos, Bag rare), a
  ``<RectangleLabels>``; the detector trains on submit (from ``bench/active_detection.py``'s base,
  at 320 px) and publishes, and the active backend ranks with the detector's versions (``--strategy``);
  the annotator draws each canvas's true boxes. Measured: mAP50-95, mAP50 and the rare class's AP of
  ``bench/active_detection.py``'s fine-tuning from the base on each project's labels, on test canvases,
  per seed (a seed draws other tasks).

    .venv/bin/python bench/queue_e2e.py [--tasks 300] [--budget 120] [--rounds 4]
    .venv/bin/python bench/queue_e2e.py --task detection --seeds 2 [--tasks 400] [--budget 150] [--rounds 4]
"""

from __future__ import annotations

import argparse
import io
import json
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import requests  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from backends.active.classifier import TaskClassifier, TrainConfig, infer, train  # noqa: E402
from backends.active.settings import DEFAULT_STRATEGY  # noqa: E402
from backends.stack.processes import ManagedProcess, backend_process, free_port, label_studio_process  # noqa: E402
from bench import fmnist  # noqa: E402
from bench.active_learning import tensors  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CONFIG = ('<View><Image name="image" value="$image"/><Choices name="label" toName="image">'
          + "".join(f'<Choice value="{n}"/>' for n in fmnist.NAMES) + "</Choices></View>")


class LS:
    def __init__(self, url: str, token: str) -> None:
        self.url, self.http = url, requests.Session()
        self.http.headers["Authorization"] = f"Token {token}"

    def api(self, method: str, path: str, **kw):
        response = self.http.request(method, self.url + path, timeout=120, **kw)
        response.raise_for_status()
        return response.json() if response.content else None


def png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def make_project(ls: LS, title: str, images: np.ndarray, config: str = CONFIG) -> tuple[int, dict[int, int]]:
    """A project of ``images`` (imported in order); returns it and task id -> image index."""
    project = ls.api("POST", "/api/projects", json={"title": title, "label_config": config})["id"]
    files = [(f"f{i:04d}.png", (f"f{i:04d}.png", io.BytesIO(png(img)), "image/png")) for i, img in enumerate(images)]
    for start in range(0, len(files), 50):  # Django refuses more than 100 files per request (a 500)
        ls.api("POST", f"/api/projects/{project}/import?commit_to_project=true", files=files[start:start + 50])
    tasks = ls.api("GET", f"/api/tasks?project={project}&page_size=10000")
    tasks = tasks["tasks"] if isinstance(tasks, dict) else tasks
    return project, {t["id"]: int(t["data"]["image"].rsplit("f", 1)[1][:4]) for t in tasks}


def annotate(ls: LS, task_id: int, result: list[dict[str, Any]]) -> None:
    ls.api("POST", f"/api/tasks/{task_id}/annotations/", json={"result": result})


def choice(label: str) -> list[dict[str, Any]]:
    return [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]


def wait_idle(url: str, project: int, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    time.sleep(2)
    while time.time() < deadline:
        jobs = requests.get(f"{url}/jobs?project={project}", timeout=5).json()["jobs"]
        if jobs and all(j["state"] not in ("pending", "running") for j in jobs):
            return
        time.sleep(0.5)
    raise TimeoutError("active backend jobs did not finish")


def label_by_next(ls: LS, project: int, index: dict[int, int], result_of: Callable[[int], list[dict[str, Any]]],
                  n: int) -> list[int]:
    """Label ``n`` tasks in the order ``/next`` serves them; the image indices labeled."""
    served = []
    for _ in range(n):
        task = ls.api("GET", f"/api/projects/{project}/next")
        served.append(index[task["id"]])
        annotate(ls, task["id"], result_of(index[task["id"]]))
    return served


@contextmanager
def label_studio(work: Path) -> Iterator[tuple[LS, str]]:
    """A Label Studio on loopback for the run; its client and token."""
    token = secrets.token_hex(20)
    port = free_port()
    proc = label_studio_process(work / "ls", port, "bench@example.com", secrets.token_urlsafe(12), token)
    proc.start(timeout=300)
    try:
        yield LS(f"http://127.0.0.1:{port}", token), token
    finally:
        proc.stop()


def start_backend(name: str, env: dict[str, str], work: Path, started: list[ManagedProcess]) -> str:
    port = free_port()
    proc = backend_process(f"backends.{name}", port, env, work / f"{name}.log")
    proc.start(timeout=120)
    started.append(proc)
    return f"http://127.0.0.1:{port}"


def wait_queue_of(detector: str, active: str, project: int, timeout: float = 600) -> None:
    """Until the active backend's queue ranks with the detector's current version: it starts scoring
    a few seconds after a publish (its watcher), so "no job running" alone may be the queue before."""
    current = requests.get(f"{detector}/versions?project={project}", timeout=10).json()["current"]
    deadline = time.time() + timeout
    while time.time() < deadline:
        jobs = requests.get(f"{active}/jobs?project={project}", timeout=5).json()["jobs"]
        if any(j["state"] == "done" and f"@{current}" in str((j.get("result") or {}).get("queue_version"))
               for j in jobs):
            return wait_idle(active, project, timeout)
        time.sleep(0.5)
    raise TimeoutError(f"the active backend did not rank with {current}")


def loop(ls: LS, active: int, index: dict[int, int], result_of: Callable[[int], list[dict[str, Any]]],
         wait: Callable[[], None], initial: int, budget: int, rounds: int) -> list[int]:
    """The active project: the first ``initial`` images by import order, then ``rounds`` rounds
    served by ``/next``, each after ``wait`` (the backends' training and scoring done)."""
    by_image = {v: k for k, v in index.items()}
    for i in range(initial):
        annotate(ls, by_image[i], result_of(i))
    picked = list(range(initial))
    per_round = (budget - initial) // rounds
    for r in range(rounds):
        wait()  # each submit's webhook queued training; a new version's scoring reorders the queue
        take = per_round if r < rounds - 1 else budget - len(picked)
        picked += label_by_next(ls, active, index, result_of, take)
        print(f"round {r + 1}: {len(picked)} labels", flush=True)
    return picked


# -- classification -------------------------------------------------------------------------------
def accuracy_of(picked: list[int], x: torch.Tensor, y: np.ndarray, x_test: torch.Tensor, y_test: np.ndarray) -> float:
    scores = []
    for seed in range(3):
        torch.manual_seed(seed)
        model = train(TaskClassifier(10, "small_cnn", in_channels=1), x[picked], torch.from_numpy(y[picked]).long(),
                      TrainConfig(epochs=30, batch=32, lr=0.02, seed=seed))
        scores.append(float((infer(model, x_test).probs.argmax(1) == y_test).mean()))
    return float(np.mean(scores))


def classification(args: argparse.Namespace) -> dict[str, Any]:
    images, labels = fmnist.load("train")
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(images), args.tasks, replace=False)
    images, labels = images[chosen], labels[chosen]
    x_test_raw, y_test = fmnist.load("test")
    work = Path(tempfile.mkdtemp(prefix="queue-e2e-"))
    started_procs: list[ManagedProcess] = []
    with label_studio(work) as (ls, token):
        try:
            env = {"DATA_DIR": str(work / "active"), "LABEL_STUDIO_URL": ls.url, "LABEL_STUDIO_API_KEY": token,
                   "TRAIN_DEBOUNCE_S": "1", "ACTIVE_BACKBONE": "small_cnn", "ACTIVE_IMGSZ": "28",
                   "ACTIVE_EPOCHS": "15", "ACTIVE_BATCH": "32", "ACTIVE_LR": "0.02", "ACTIVE_STRATEGY": "margin",
                   "ACTIVE_MIN_ANNOTATIONS": "10", "ACTIVE_VAL_RATIO": "0"}
            url = start_backend("active", env, work, started_procs)
            started = time.time()
            seq, seq_index = make_project(ls, "sequential", images)
            act, act_index = make_project(ls, "active", images)
            ls.api("POST", "/api/ml", json={"project": act, "url": url, "title": "active", "auto_update": True})
            ls.api("PATCH", f"/api/projects/{seq}", json={"sampling": "Sequential sampling"})

            def result_of(i: int) -> list[dict[str, Any]]:
                return choice(fmnist.NAMES[labels[i]])

            seq_picked = label_by_next(ls, seq, seq_index, result_of, args.budget)
            act_picked = loop(ls, act, act_index, result_of, lambda: wait_idle(url, act), args.initial, args.budget,
                              args.rounds)
            loop_s = time.time() - started
        finally:
            for proc in started_procs:
                proc.stop()
    x, x_test = tensors(images), tensors(x_test_raw)
    y = labels.astype(np.int64)
    result = {
        "tasks": args.tasks, "budget": args.budget, "initial": args.initial, "rounds": args.rounds,
        "strategy": "margin", "sequential_accuracy": round(accuracy_of(seq_picked, x, y, x_test, y_test), 4),
        "active_queue_accuracy": round(accuracy_of(act_picked, x, y, x_test, y_test), 4),
        "classes_covered": {"sequential": len(set(labels[seq_picked])), "active": len(set(labels[act_picked]))},
        "loop_seconds": round(loop_s, 1),
        "note": "accuracy: the same classifier (small_cnn, 30 epochs) trained on each project's labels, "
                "mean of 3 seeds, Fashion-MNIST 10k test set",
    }
    result["gain_points"] = round((result["active_queue_accuracy"] - result["sequential_accuracy"]) * 100, 2)
    return result


# -- detection ------------------------------------------------------------------------------------
def boxes_result(boxes: list[Any], size: int, names: list[str]) -> list[dict[str, Any]]:
    """A canvas's true boxes as the editor submits rectangles (percent of the image)."""
    return [{"from_name": "label", "to_name": "image", "type": "rectanglelabels", "original_width": size,
             "original_height": size, "image_rotation": 0,
             "value": {"x": 100 * x / size, "y": 100 * y / size, "width": 100 * w / size, "height": 100 * h / size,
                       "rotation": 0, "rectanglelabels": [names[k]]}} for k, x, y, w, h in boxes]


def detection(args: argparse.Namespace) -> dict[str, Any]:
    from bench import active_detection as ad

    protocol = ad.Protocol(epochs=args.epochs, pool=args.tasks, test=args.test, validation=0)
    cache = ROOT / "bench" / ".cache" / "active_detection"
    work = Path(tempfile.mkdtemp(prefix="queue-e2e-detection-", dir=cache if cache.exists() else None))
    base = ad.train_base(protocol, work)  # beside the active_detection runs' bases: the same one when it exists
    runs = [detection_seed(args, seed, protocol, base, work / f"seed{seed}") for seed in range(args.seeds)]
    result: dict[str, Any] = {"tasks": args.tasks, "budget": args.budget, "initial": args.initial,
                              "rounds": args.rounds, "strategy": args.strategy or DEFAULT_STRATEGY["detection"],
                              "seeds": runs}
    for arm in ("sequential", "active"):
        result[arm] = {m: round(float(np.mean([r[arm][m] for r in runs])), 4) for m in ad.METRICS}
    result["gain_points"] = {m: round(100 * (result["active"][m] - result["sequential"][m]), 2) for m in ad.METRICS}
    result["note"] = (f"the benchmark's fine-tuning from the base ({protocol.epochs} epochs, {protocol.imgsz} px) on "
                      f"each project's labeled canvases, measured on {args.test} test canvases; the same code and "
                      "seed for both arms; mean over seeds")
    return result


def detection_seed(args: argparse.Namespace, seed: int, protocol: Any, base: Path, work: Path) -> dict[str, Any]:
    from bench import active_detection as ad

    work.mkdir(parents=True)
    x, y = fmnist.load("train")
    xt, yt = fmnist.load("test")
    weights = [protocol.rare_share if n == ad.RARE else (1 - protocol.rare_share) / 4 for n in ad.NAMES]
    pool = ad.Canvases(*ad.scenes.scenes(x[:50_000], y[:50_000], ad.TARGET_CLASSES, args.tasks, weights=weights,
                                         seed=100 + seed))
    test = ad.Canvases(*ad.scenes.scenes(xt, yt, ad.TARGET_CLASSES, args.test, weights=weights, seed=2))
    data = ad.Data(pool=pool, test=test, validation=ad.Canvases(pool.images[:0], []))
    data.test_yaml = ad.yolo_set(work / "test-data", test.items(range(args.test)), ad.NAMES, val_ratio=0.999)
    picked, loop_s = label_both(args, pool, base, work)
    start = ad.target_start(base, work)
    out: dict[str, Any] = {"seed": seed, "loop_seconds": round(loop_s, 1), "labeled": picked}
    for arm, labeled in picked.items():
        trained = ad.train_cycle(start, data, labeled, protocol, work / f"train-{arm}", seed)
        out[arm] = ad.measure(trained, data, protocol, work / f"train-{arm}")
        out[arm]["rare_objects_labeled"] = sum(k == ad.NAMES.index(ad.RARE) for i in labeled for k, *_ in pool.boxes[i])
    print(json.dumps(out), flush=True)
    return out


def label_both(args: argparse.Namespace, pool: Any, base: Path, work: Path) -> tuple[dict[str, list[int]], float]:
    """Both projects labeled to the budget through Label Studio; the image indices each labeled."""
    from bench import active_detection as ad

    size = pool.images.shape[1]
    started_procs: list[ManagedProcess] = []
    with label_studio(work) as (ls, token):
        try:
            # DETECTOR_PREDICT_IMGSZ in both: the active backend scores the detector's versions at it
            common = {"LABEL_STUDIO_URL": ls.url, "LABEL_STUDIO_API_KEY": token, "MODEL_DIR": str(work / "models"),
                      "TRAIN_DEBOUNCE_S": "1", "YOLO_OFFLINE": "1", "DETECTOR_PREDICT_IMGSZ": "320"}
            detector = start_backend("detector", {**common, "DATA_DIR": str(work / "detector"),
                                                  "DETECTOR_BASE_WEIGHTS": str(base),
                                                  "DETECTOR_WEIGHTS_DIRS": json.dumps([str(base.parent)]),
                                                  "DETECTOR_IMGSZ": "320",
                                                  "DETECTOR_EPOCHS": str(args.epochs), "DETECTOR_PRELABEL": "request",
                                                  "DETECTOR_MIN_ANNOTATIONS": str(args.initial)}, work, started_procs)
            active = start_backend("active", {**common, "DATA_DIR": str(work / "active"),
                                              "ACTIVE_STRATEGY": args.strategy or ""}, work, started_procs)
            started = time.time()
            seq, seq_index = make_project(ls, "sequential", pool.images, ad.CONFIG)
            act, act_index = make_project(ls, "active", pool.images, ad.CONFIG)
            for title, url in (("detector", detector), ("active", active)):
                ls.api("POST", "/api/ml", json={"project": act, "url": url, "title": title, "auto_update": True})
            ls.api("PATCH", f"/api/projects/{seq}", json={"sampling": "Sequential sampling"})

            def result_of(i: int) -> list[dict[str, Any]]:
                return boxes_result(pool.boxes[i], size, ad.NAMES)

            picked = {"sequential": label_by_next(ls, seq, seq_index, result_of, args.budget),
                      "active": loop(ls, act, act_index, result_of, lambda: trained_and_ranked(detector, active, act),
                                     args.initial, args.budget, args.rounds)}
            return picked, time.time() - started
        finally:
            for proc in started_procs:
                proc.stop()


def trained_and_ranked(detector: str, active: str, project: int) -> None:
    wait_idle(detector, project)
    wait_queue_of(detector, active, project)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", choices=["classification", "detection"], default="classification")
    parser.add_argument("--tasks", type=int, help="tasks per project (default 300; detection 400)")
    parser.add_argument("--initial", type=int, default=40, help="labels by import order before the queue serves")
    parser.add_argument("--budget", type=int, help="labels in total, initial ones included (default 120; "
                                                   "detection 150)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=2, help="detection: runs, each on other tasks")
    parser.add_argument("--test", type=int, default=500, help="detection: test canvases")
    parser.add_argument("--epochs", type=int, default=10, help="detection: fine-tuning epochs, in the loop and after")
    parser.add_argument("--strategy", help="detection: ACTIVE_STRATEGY of the active backend (default: its "
                                           "default for detection)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    detect = args.task == "detection"
    args.tasks = args.tasks or (400 if detect else 300)
    args.budget = args.budget or (150 if detect else 120)
    result = detection(args) if detect else classification(args)
    out = args.out or RESULTS / ("queue_e2e_detection.json" if detect else "queue_e2e.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
