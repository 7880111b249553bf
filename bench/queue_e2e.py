"""The loop through Label Studio -> bench/results/queue_e2e.json.

A simulated annotator labels Fashion-MNIST tasks with their true class in the order a real Label
Studio's ``GET /api/projects/{id}/next`` serves them, in two projects with the same tasks:
- ``active``: the active backend connected (real server process, training on submit, margin
  strategy): the queue is reordered after every new classifier version;
- ``sequential``: no backend, "Sequential sampling" (task id order, i.e. import order).
Both start from the same first labels and stop at the same budget. Then the same classifier
(same code, epochs, seed) is trained on each project's labels and evaluated on the 10k test set.

    .venv/bin/python bench/queue_e2e.py [--tasks 300] [--budget 100] [--rounds 4]
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import requests  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from backends.active.classifier import TaskClassifier, TrainConfig, infer, train  # noqa: E402
from backends.stack.processes import backend_process, free_port, label_studio_process  # noqa: E402
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


def make_project(ls: LS, title: str, images: np.ndarray) -> list[int]:
    project = ls.api("POST", "/api/projects", json={"title": title, "label_config": CONFIG})["id"]
    files = [(f"f{i:04d}.png", (f"f{i:04d}.png", io.BytesIO(png(img)), "image/png")) for i, img in enumerate(images)]
    for start in range(0, len(files), 50):  # Django refuses more than 100 files per request (a 500)
        ls.api("POST", f"/api/projects/{project}/import?commit_to_project=true", files=files[start:start + 50])
    tasks = ls.api("GET", f"/api/tasks?project={project}&page_size=10000")
    tasks = tasks["tasks"] if isinstance(tasks, dict) else tasks
    return project, {t["id"]: int(t["data"]["image"].rsplit("f", 1)[1][:4]) for t in tasks}


def annotate(ls: LS, task_id: int, label: str) -> None:
    ls.api("POST", f"/api/tasks/{task_id}/annotations/", json={
        "result": [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]})


def wait_idle(url: str, project: int, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    time.sleep(2)
    while time.time() < deadline:
        jobs = requests.get(f"{url}/jobs?project={project}", timeout=5).json()["jobs"]
        if jobs and all(j["state"] not in ("pending", "running") for j in jobs):
            return
        time.sleep(0.5)
    raise TimeoutError("active backend jobs did not finish")


def label_by_next(ls: LS, project: int, index: dict[int, int], labels: np.ndarray, n: int) -> list[int]:
    served = []
    for _ in range(n):
        task = ls.api("GET", f"/api/projects/{project}/next")
        served.append(index[task["id"]])
        annotate(ls, task["id"], fmnist.NAMES[labels[index[task["id"]]]])
    return served


def accuracy_of(picked: list[int], x: torch.Tensor, y: np.ndarray, x_test: torch.Tensor, y_test: np.ndarray) -> float:
    scores = []
    for seed in range(3):
        torch.manual_seed(seed)
        model = train(TaskClassifier(10, "small_cnn", in_channels=1), x[picked], torch.from_numpy(y[picked]).long(),
                      TrainConfig(epochs=30, batch=32, lr=0.02, seed=seed))
        scores.append(float((infer(model, x_test).probs.argmax(1) == y_test).mean()))
    return float(np.mean(scores))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--initial", type=int, default=40)
    parser.add_argument("--budget", type=int, default=120, help="labels in total, initial ones included")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    images, labels = fmnist.load("train")
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(images), args.tasks, replace=False)
    images, labels = images[chosen], labels[chosen]
    x_test_raw, y_test = fmnist.load("test")
    work = Path(tempfile.mkdtemp(prefix="queue-e2e-"))
    token = secrets.token_hex(20)
    ls_port, backend_port = free_port(), free_port()
    ls_proc = label_studio_process(work / "ls", ls_port, "bench@example.com", secrets.token_urlsafe(12), token)
    ls_proc.start(timeout=300)
    env = {"DATA_DIR": str(work / "active"), "LABEL_STUDIO_URL": f"http://127.0.0.1:{ls_port}",
           "LABEL_STUDIO_API_KEY": token, "TRAIN_DEBOUNCE_S": "1", "ACTIVE_BACKBONE": "small_cnn",
           "ACTIVE_IMGSZ": "28", "ACTIVE_EPOCHS": "15", "ACTIVE_BATCH": "32", "ACTIVE_LR": "0.02",
           "ACTIVE_STRATEGY": "margin", "ACTIVE_MIN_ANNOTATIONS": "10", "ACTIVE_VAL_RATIO": "0"}
    backend = backend_process("backends.active", backend_port, env, work / "active.log")
    backend.start(timeout=120)
    url = f"http://127.0.0.1:{backend_port}"
    try:
        ls = LS(f"http://127.0.0.1:{ls_port}", token)
        started = time.time()
        seq, seq_index = make_project(ls, "sequential", images)
        act, act_index = make_project(ls, "active", images)
        ls.api("POST", "/api/ml", json={"project": act, "url": url, "title": "active", "auto_update": True})
        ls.api("PATCH", f"/api/projects/{seq}", json={"sampling": "Sequential sampling"})
        # Same first labels in both: the first `initial` images by import order.
        seq_picked = label_by_next(ls, seq, seq_index, labels, args.budget)
        by_image = {v: k for k, v in act_index.items()}
        for i in range(args.initial):
            annotate(ls, by_image[i], fmnist.NAMES[labels[i]])
        act_picked = list(range(args.initial))
        per_round = (args.budget - args.initial) // args.rounds
        for r in range(args.rounds):
            wait_idle(url, act)  # each submit's webhook queued training; its scoring job reorders the queue
            take = per_round if r < args.rounds - 1 else args.budget - len(act_picked)
            act_picked += label_by_next(ls, act, act_index, labels, take)
            print(f"round {r + 1}: {len(act_picked)} labels", flush=True)
        loop_s = time.time() - started
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
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "queue_e2e.json").write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))
    finally:
        backend.stop()
        ls_proc.stop()


if __name__ == "__main__":
    main()
