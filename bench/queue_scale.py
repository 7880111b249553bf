"""The active queue at project scale, through a real Label Studio -> bench/results/queue_scale.json.

For each size (tasks of 64 px Fashion-MNIST images, as data: URIs) and for Label Studio with and
without its linear prediction-import flag (``LABEL_STUDIO_FLAGS`` in backends/stack/processes.py):
a project, the active backend connected (margin, a first ``small_cnn`` version from 20 labels),
then a full scoring (``POST /jobs``), a re-score after importing 10 % more tasks, and whether
``/next`` serves the top-ranked task. Each job's time is its runs' (``tries``) from the journal, so
a retried attempt counts; peak RSS of both server processes is sampled every 0.5 s. After the
re-score, the queue tab's first task is compared with the job's (``/next`` would hand back the task
it locked for the bench's user at the first check).

Goals (issue 23): time(8,000) / time(2,000) <= 4.4 and time(32,000) / time(8,000) <= 4.4 with the
flag; a re-score after a 10 % import <= 0.25 x a full scoring; no attempt fails on a timeout.

    .venv/bin/python bench/queue_scale.py [--sizes 2000,8000,32000] [--flag on,off]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import requests  # noqa: E402
from PIL import Image  # noqa: E402

from backends.stack.processes import LABEL_STUDIO_FLAGS, backend_process, free_port, label_studio_process  # noqa: E402
from bench import fmnist  # noqa: E402
from bench.queue_e2e import CONFIG, LS, wait_idle  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "queue_scale.json"
SEED_LABELS = 20
IMPORT_CHUNK = 1000


def data_uri(image: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(image).resize((64, 64)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


class PeakRSS:
    """The largest resident set of each process tree (children included), sampled every 0.5 s."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids, self.peak_mib = pids, {name: 0.0 for name in pids}
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            for name, pid in self.pids.items():
                try:
                    root = psutil.Process(pid)
                    rss = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
                except psutil.Error:
                    continue
                self.peak_mib[name] = max(self.peak_mib[name], rss / 2**20)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        return {name: round(value) for name, value in self.peak_mib.items()}


def import_tasks(ls: LS, project: int, images: np.ndarray, labels: np.ndarray, offset: int) -> None:
    tasks = [{"image": data_uri(img), "truth": fmnist.NAMES[int(lab)], "n": offset + i}
             for i, (img, lab) in enumerate(zip(images, labels))]
    for start in range(0, len(tasks), IMPORT_CHUNK):
        ls.api("POST", f"/api/projects/{project}/import?commit_to_project=true", json=tasks[start:start + IMPORT_CHUNK])


def some_tasks(ls: LS, project: int, n: int) -> list[dict[str, Any]]:
    """``n`` tasks of the project (one page) with their data."""
    reply = ls.api("GET", f"/api/tasks?project={project}&page_size={n}&page=1")
    return reply["tasks"] if isinstance(reply, dict) else reply


def queue_tab_first(ls: LS, project: int) -> int:
    """The first task of the "Active learning queue" tab, in Label Studio's own order (by prediction
    score, of the project's model_version): what "Label tasks as displayed" opens first."""
    (tab,) = [v for v in ls.api("GET", f"/api/dm/views?project={project}") if v["data"]["title"] == "Active learning queue"]
    reply = ls.api("GET", f"/api/tasks?view={tab['id']}&project={project}&page=1&page_size=1")
    return (reply["tasks"] if isinstance(reply, dict) else reply)[0]["id"]


def jobs(backend: str, project: int) -> list[dict[str, Any]]:
    return requests.get(f"{backend}/jobs?project={project}", timeout=30).json()["jobs"]


def job_figures(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The scoring jobs' figures, summed over every job and attempt (an import of several chunks may
    start more than one job); the listing, outputs and predictions of the newest."""
    tries = [t for job in runs for t in job.get("tries") or []]
    result = runs[0].get("result") or {}
    return {"seconds": round(sum(t.get("seconds", 0) for t in tries), 1), "jobs": len(runs), "attempts": len(tries),
            "errors": [t["error"] for t in tries if t.get("error")], "state": runs[0]["state"],
            "scored": sum((job.get("result") or {}).get("scored") or 0 for job in runs),
            "listed": result.get("listed"), "predictions": result.get("predictions"),
            "older_versions_deleted": result.get("older_versions_deleted"), "queue_version": result.get("queue_version"),
            "timings": result.get("timings"),
            "first": (result.get("first") or [None])[0]}


def score_jobs_after(backend: str, project: int, after: int) -> list[dict[str, Any]]:
    """The scoring jobs with an id above ``after``, newest first."""
    scored = [j for j in jobs(backend, project) if j["kind"] == "score" and j["id"] > after]
    if not scored:
        raise RuntimeError("no scoring job ran")
    return scored


def run_size(ls: LS, backend: str, n: int, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    project = ls.api("POST", "/api/projects", json={"title": f"scale {n}", "label_config": CONFIG})["id"]
    started = time.perf_counter()
    import_tasks(ls, project, x[:n], y[:n], 0)
    imported_s = time.perf_counter() - started
    for task in some_tasks(ls, project, SEED_LABELS):  # before the backend is connected: no webhook, no training
        ls.api("POST", f"/api/tasks/{task['id']}/annotations/", json={"result": [
            {"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [task["data"]["truth"]]}}]})
    ls.api("POST", "/api/ml", json={"project": project, "url": backend, "title": "active", "auto_update": True})
    # one version, then the scoring it starts: every unlabeled task's prediction written from scratch
    requests.post(f"{backend}/jobs", json={"project": project, "kind": "train"}, timeout=30).raise_for_status()
    wait_idle(backend, project, timeout=7200)
    full = job_figures(score_jobs_after(backend, project, 0))
    served = ls.api("GET", f"/api/projects/{project}/next")["id"]
    last = max(j["id"] for j in jobs(backend, project))
    extra = n // 10
    import_tasks(ls, project, x[n:n + extra], y[n:n + extra], n)  # TASKS_CREATED starts the re-score
    wait_idle(backend, project, timeout=7200)
    rescore = job_figures(score_jobs_after(backend, project, last))
    # not /next again: Label Studio hands a user the task it locked for them at the first call
    served_after = queue_tab_first(ls, project)
    row = {"tasks": n, "import_s": round(imported_s, 1), "full": full, "rescore_after_10pct_import": rescore,
           "next_serves_top": served == full["first"], "queue_tab_serves_top_after_rescore": served_after == rescore["first"],
           "rescore_over_full": round(rescore["seconds"] / full["seconds"], 3) if full["seconds"] else None}
    print(json.dumps(row), flush=True)
    return row


def run_flag(flag: bool, sizes: list[int], x: np.ndarray, y: np.ndarray, work: Path,
             save: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    port, token = free_port(), secrets.token_hex(20)
    ls_proc = label_studio_process(work / f"ls-{flag}", port, "bench@example.com", secrets.token_urlsafe(12), token)
    for name in LABEL_STUDIO_FLAGS:
        ls_proc.env[name] = "true" if flag else "false"
    ls_proc.start(timeout=300)
    ls_url = f"http://127.0.0.1:{port}"
    env = {"DATA_DIR": str(work / f"active-{flag}"), "LABEL_STUDIO_URL": ls_url, "LABEL_STUDIO_API_KEY": token,
           "TRAIN_DEBOUNCE_S": "1", "ACTIVE_BACKBONE": "small_cnn", "ACTIVE_IMGSZ": "32", "ACTIVE_EPOCHS": "3",
           "ACTIVE_BATCH": "16", "ACTIVE_MIN_ANNOTATIONS": "10", "ACTIVE_STRATEGY": "margin"}
    backend_port = free_port()
    active = backend_process("backends.active", backend_port, env, work / f"active-{flag}.log").start(timeout=180)
    rss = PeakRSS({"label_studio": ls_proc.pid, "active": active.pid})
    try:
        rows = []
        for n in sizes:  # each size saved as it ends: the largest take an hour without the flag
            rows.append(run_size(LS(ls_url, token), f"http://127.0.0.1:{backend_port}", n, x, y))
            save({"flag": flag, "sizes": [row["tasks"] for row in rows], "rows": rows, "ratios": ratios(rows)})
    finally:
        peak = rss.stop()
        active.stop()
        ls_proc.stop()
    return {"flag": flag, "sizes": [row["tasks"] for row in rows], "rows": rows, "peak_rss_mib": peak,
            "ratios": ratios(rows)}


def ratios(rows: list[dict[str, Any]]) -> dict[str, float]:
    """time(next size) / time(size) for consecutive sizes: linear scaling gives the size ratio."""
    out = {}
    for small, big in zip(rows, rows[1:]):
        if small["full"]["seconds"]:
            out[f"{big['tasks']}/{small['tasks']}"] = round(big["full"]["seconds"] / small["full"]["seconds"], 2)
    return out


def kept_runs(flags: list[str]) -> dict[str, Any]:
    """The results file with the runs of the flags not measured now (one flag's run takes long)."""
    try:
        runs = json.loads(RESULTS.read_text()).get("runs", [])
    except (FileNotFoundError, json.JSONDecodeError):
        runs = []
    measured = {flag == "on" for flag in flags}
    return {"runs": [r for r in runs if r.get("flag") not in measured and "when" in r]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="2000,8000,32000")
    parser.add_argument("--flag", default="on,off", help="Label Studio's import flag: on, off or both")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    x, y = fmnist.load("train")
    need = max(sizes) + max(sizes) // 10
    x, y = x[:need], y[:need]
    results = kept_runs(args.flag.split(","))
    with tempfile.TemporaryDirectory(prefix="queue-scale-") as tmp:
        for flag in args.flag.split(","):
            kept = list(results["runs"])

            def save(run: dict[str, Any], kept: list[dict[str, Any]] = kept) -> None:  # partial results survive a failure
                results["runs"] = sorted([*kept, {"when": time.strftime("%Y-%m-%d %H:%M"), **run}],
                                         key=lambda r: not r["flag"])
                RESULTS.write_text(json.dumps(results, indent=2) + "\n")
            save(run_flag(flag == "on", sizes, x, y, Path(tmp), save))
    print(json.dumps([{k: r[k] for k in ("flag", "ratios", "peak_rss_mib")} for r in results["runs"]], indent=2))


if __name__ == "__main__":
    main()
