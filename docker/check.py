"""``make docker-check``: build every image, start the compose stack, and do what a Docker user does.

Not part of ``make test`` (it needs a Docker daemon and ~15 GB of disk). It checks, in order:
every target builds (time and size each); every service turns healthy; the demo service creates the
demo project; a task gets the detector's pre-labels; one submitted annotation trains on the worker
and a new detector version serves the next pre-labels (seconds from submit to serving); a segmenter
click through Label Studio's interactive-annotating API returns a mask; the active backend writes
its queue. Figures go to ``bench/results/docker-check.json`` and are printed as a summary.

Offline-safe: the detector's base weights are a yolo11n checkpoint (random weights, COCO names)
served over HTTP from this process, so the image's own download path runs; SAM gets a vit_b
checkpoint file in ``WEIGHTS_DIR`` (random values, the official format), so its loading path runs.
The stack runs on host networking (docker-compose.check.yml), for daemons without a bridge.

Usage: ``python docker/check.py [--torch-variant cpu|cuda] [--skip-build] [--keep]``
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402 - after the path, like every import of the repository below

DOCKER = ROOT / "docker"
COMPOSE = [DOCKER / "docker-compose.yml", DOCKER / "docker-compose.check.yml"]
PROJECT = "label-loop-check"
# the first backend target builds the stages all four share (deps: the locked venv), the others reuse them
TARGETS = ("detector", "segmenter", "active", "worker", "label-studio")
SERVICES = ("label-studio", "redis", "detector", "segmenter", "active", "worker")
PORTS = {"CHECK_LS_PORT": 18080, "CHECK_REDIS_PORT": 16379, "CHECK_DETECTOR_PORT": 19090,
         "CHECK_SEGMENTER_PORT": 19091, "CHECK_ACTIVE_PORT": 19092}
LOGS = ROOT / "test-artifacts" / "docker-check"
RESULTS = ROOT / "bench" / "results" / "docker-check.json"


class CheckFailed(Exception):
    """A step did not hold: the message says what a user would have seen."""


class Report:
    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []
        self.figures: dict[str, Any] = {}

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        try:
            yield
        except Exception as exc:
            self.steps.append({"step": name, "ok": False, "seconds": _since(started), "error": str(exc)})
            print(f"FAIL {name}: {exc}", flush=True)
            raise
        self.steps.append({"step": name, "ok": True, "seconds": _since(started)})
        print(f"ok   {name} ({_since(started):.1f} s)", flush=True)


# -- docker -----------------------------------------------------------------------------------
def run(argv: list[str], log: Path | None = None, env: dict[str, str] | None = None, timeout: float = 1800) -> str:
    """Run a command; its output goes to ``log`` when given. A failure names the command and tail."""
    LOGS.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(argv, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                            timeout=timeout)
    if log is not None:
        log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise CheckFailed(f"{' '.join(argv[:4])} ... exited {result.returncode}:\n{(result.stdout + result.stderr)[-3000:]}")
    return result.stdout


def compose(*args: str, env: dict[str, str], timeout: float = 900) -> str:
    files = [arg for path in COMPOSE for arg in ("-f", str(path))]
    return run(["docker", "compose", "-p", PROJECT, *files, *args], env=env, timeout=timeout)


def image_names() -> dict[str, str]:
    """Compose service (= Dockerfile target) -> the image name compose runs."""
    services = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())["services"]
    return {target: services[target]["image"] for target in TARGETS}


def preflight(report: Report) -> None:
    run(["docker", "info"])
    version = run(["docker", "compose", "version", "--short"]).strip()
    if not version.lstrip("v").startswith("2"):
        raise CheckFailed(f"Docker Compose v2 is required, found {version!r}")
    base = {"PYTHON_IMAGE": "python:3.11-slim-bookworm", "UV_IMAGE": "ghcr.io/astral-sh/uv:0.13.9"}
    for name, default in base.items():
        image = os.environ.get(name, default)
        if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode != 0:
            print(f"   {image} is not here: docker build will pull it (no registry? docker/local-base-images.sh)")
    report.figures["compose_version"] = version


def build(report: Report, variant: str) -> None:
    buildkit = "1" if subprocess.run(["docker", "buildx", "version"], capture_output=True).returncode == 0 else "0"
    args = [f"TORCH_VARIANT={variant}"] + [f"{n}={os.environ[n]}" for n in ("PYTHON_IMAGE", "UV_IMAGE") if n in os.environ]
    seconds, sizes = {}, {}
    for target, image in image_names().items():
        started = time.perf_counter()
        run(["docker", "build", "--network", "host", "-f", str(DOCKER / "Dockerfile"), "--target", target, "-t", image,
             *[a for arg in args for a in ("--build-arg", arg)], "."], log=LOGS / f"build-{target}.log",
            env={"DOCKER_BUILDKIT": buildkit}, timeout=3600)
        seconds[target] = _since(started)
        sizes[target] = round(int(run(["docker", "image", "inspect", "-f", "{{.Size}}", image])) / 1e9, 2)
        print(f"   {target}: {seconds[target]:.0f} s, {sizes[target]} GB", flush=True)
    report.figures.update(build_seconds=seconds, image_gb=sizes, torch_variant=variant)


# -- what the stack is given ------------------------------------------------------------------
def served_weights(folder: Path) -> str:
    """yolo11n.pt (random weights, COCO names) over HTTP on loopback, for this process's life; its URL."""
    from backends.detector.training import save_checkpoint
    from backends.detector.weights import load_model
    from backends.stack.processes import free_port

    save_checkpoint(load_model("yolo11n.yaml").model.model, folder / "yolo11n.pt")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}/yolo11n.pt"


def sam_checkpoint(folder: Path) -> None:
    """A vit_b state dict in the official checkpoint's format (the values are random)."""
    import torch
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    torch.save(sam_model_registry["vit_b"](checkpoint=None).state_dict(), folder / "sam_vit_b_01ec64.pth")
    folder.chmod(0o755)
    (folder / "sam_vit_b_01ec64.pth").chmod(0o644)


def stack_env(weights_url: str, weights_dir: Path, variant: str) -> dict[str, str]:
    return {"LABEL_STUDIO_TOKEN": secrets.token_hex(20), "LABEL_STUDIO_PASSWORD": secrets.token_urlsafe(12),
            "TORCH_VARIANT": variant, "WEIGHTS_DIR": str(weights_dir), "DETECTOR_BASE_WEIGHTS": weights_url,
            "SAM_CHECKPOINT": "/weights/sam_vit_b_01ec64.pth", **{k: str(v) for k, v in PORTS.items()}}


def wait(check: Callable[[], Any], timeout: float, what: str, interval: float = 2.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(interval)
    raise CheckFailed(f"timed out after {timeout:.0f} s waiting for {what}")


def health(env: dict[str, str]) -> dict[str, str]:
    rows = [json.loads(line) for line in compose("ps", "--all", "--format", "json", env=env).splitlines() if line.strip()]
    return {row["Service"]: row.get("Health") or row.get("State", "") for row in rows}


def all_healthy(env: dict[str, str]) -> dict[str, str] | None:
    states = health(env)
    return states if all(states.get(name) == "healthy" for name in SERVICES) else None


# -- the checks -------------------------------------------------------------------------------
def check_stack(report: Report, env: dict[str, str]) -> None:
    from backends.stack.__main__ import LabelStudioRest

    ls = LabelStudioRest(f"http://127.0.0.1:{PORTS['CHECK_LS_PORT']}", env["LABEL_STUDIO_TOKEN"])
    backend = {name: f"http://127.0.0.1:{PORTS[f'CHECK_{name.upper()}_PORT']}" for name in ("detector", "segmenter", "active")}
    with report.step("every service healthy"):
        started = time.perf_counter()
        states = wait(lambda: all_healthy(env), 600, "every service to be healthy", interval=3)
        report.figures["healthy_seconds"] = _since(started)
        print(f"   {states}")
    with report.step("demo project created (docker compose run --rm demo)"):
        compose("--profile", "demo", "run", "--rm", "demo", env=env, timeout=600)
        project = next(p["id"] for p in ls.api("GET", "/api/projects")["results"] if p["title"] == "Label Loop demo")
        listed = ls.api("GET", f"/api/tasks?project={project}&page_size=100")
        tasks = sorted(t["id"] for t in (listed["tasks"] if isinstance(listed, dict) else listed))
    with report.step("pre-labels on a task"):
        base = prelabel(ls, project, tasks[0], "detector-base-")
        print(f"   {base['model_version']}: {len(base['result'])} regions")
    with report.step("one submitted annotation -> a new detector version serving"):
        report.figures["submit_to_new_version_seconds"] = submit_and_wait(ls, backend["detector"], project, tasks[1])
        newer = prelabel(ls, project, tasks[2], "detector-v1")
        print(f"   {newer['model_version']} serves task {tasks[2]}")
    with report.step("one segmenter click"):
        report.figures["segmenter_click_seconds"] = click(ls, project, tasks[3])
    with report.step("active queue written"):
        report.figures["active_queue"] = active_queue(ls, backend["active"], project)


def prelabel(ls: Any, project: int, task: int, version_prefix: str) -> dict[str, Any]:
    ls.api("POST", f"/api/dm/actions?id=retrieve_tasks_predictions&project={project}",
           json={"selectedItems": {"all": False, "included": [task]}, "project": project})
    found = [p for p in ls.api("GET", f"/api/predictions?task={task}") if p["model_version"].startswith(version_prefix)]
    if not found:
        raise CheckFailed(f"task {task} has no prediction of {version_prefix}*")
    return found[-1]


def submit_and_wait(ls: Any, detector: str, project: int, task: int) -> float:
    import requests

    box = {"from_name": "label", "to_name": "image", "type": "rectanglelabels", "original_width": 512,
           "original_height": 512, "value": {"x": 20, "y": 10, "width": 40, "height": 60, "rotation": 0,
                                             "rectanglelabels": ["Person"]}}
    started = time.perf_counter()
    ls.api("POST", f"/api/tasks/{task}/annotations/", json={"result": [box], "was_cancelled": False})

    def published() -> bool:
        jobs = requests.get(f"{detector}/jobs?project={project}", timeout=10).json()["jobs"]
        failed = [j for j in jobs if j["state"] == "failed"]
        if failed:
            raise CheckFailed(f"the training job failed: {failed[0].get('error')}")
        return requests.get(f"{detector}/versions?project={project}", timeout=10).json().get("current") == "detector-v1"

    wait(published, 1200, "detector-v1 to be published", interval=3)
    seconds = _since(started)
    print(f"   submit -> detector-v1 serving: {seconds:.0f} s")
    return seconds


def click(ls: Any, project: int, task: int) -> float:
    (ml,) = [m["id"] for m in ls.api("GET", f"/api/ml?project={project}") if m["title"] == "segmenter"]
    context = {"result": [{"type": "keypointlabels", "from_name": "click", "to_name": "image", "is_positive": True,
                           "original_width": 512, "original_height": 512,
                           "value": {"x": 50, "y": 50, "keypointlabels": ["Person"]}}]}
    started = time.perf_counter()
    reply = ls.api("POST", f"/api/ml/{ml}/interactive-annotating", json={"task": task, "context": context})
    seconds = _since(started)
    regions = (reply or {}).get("data", {}).get("result") or []
    if not regions or regions[0]["type"] != "brushlabels":
        raise CheckFailed(f"the click returned no mask: {str(reply)[:500]}")
    print(f"   a brushlabels mask in {seconds:.1f} s")
    return seconds


def active_queue(ls: Any, active: str, project: int) -> dict[str, Any]:
    """Ask the active backend for a scoring job (POST /jobs) and find the queue it wrote."""
    import requests

    queued = requests.post(f"{active}/jobs", json={"project": project, "kind": "score"}, timeout=10)
    queued.raise_for_status()
    job_id = queued.json()["job"]

    def scored() -> dict[str, Any] | None:
        job = requests.get(f"{active}/jobs/{job_id}", timeout=10).json()
        if job["state"] == "failed":
            raise CheckFailed(f"the scoring job failed: {job.get('error')}")
        return job["result"] if job["state"] == "done" else None

    result = wait(scored, 600, "the active queue to be scored")
    version, first = result["queue_version"], result["first"][0]
    if not [p for p in ls.api("GET", f"/api/predictions?task={first}") if p["model_version"] == version]:
        raise CheckFailed(f"task {first} has no queue prediction {version}")
    print(f"   job {job_id}: {result['scored']} tasks scored as {version}; first {result['first'][:5]}")
    return {"scored": result["scored"], "queue_version": version}


# -- main -------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make docker-check")
    parser.add_argument("--torch-variant", default=os.environ.get("TORCH_VARIANT", "cpu"), choices=["cpu", "cuda"])
    parser.add_argument("--skip-build", action="store_true", help="use the images already built")
    parser.add_argument("--keep", action="store_true", help="leave the stack running (docker compose -p label-loop-check)")
    args = parser.parse_args(argv)
    report, started = Report(), time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="docker-check-"))
    env: dict[str, str] = {}
    try:
        with report.step("preflight: docker, compose v2, base images"):
            preflight(report)
        if not args.skip_build:
            with report.step(f"build every target (TORCH_VARIANT={args.torch_variant})"):
                build(report, args.torch_variant)
        with report.step("weights: yolo11n.pt served over HTTP, a SAM checkpoint in WEIGHTS_DIR"):
            (work / "served").mkdir()
            (work / "weights").mkdir()
            url = served_weights(work / "served")
            sam_checkpoint(work / "weights")
        env = stack_env(url, work / "weights", args.torch_variant)
        with report.step("docker compose up"):
            compose("up", "-d", "--no-build", env=env)
        check_stack(report, env)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - whatever broke: torn down, report written
        print(f"\ndocker-check FAILED: {type(exc).__name__}: {exc}")
        return _finish(report, started, env, args.keep, ok=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return _finish(report, started, env, args.keep, ok=True)


def _finish(report: Report, started: float, env: dict[str, str], keep: bool, ok: bool) -> int:
    if env:
        with contextlib.suppress(Exception):
            for service in SERVICES:
                (LOGS / f"{service}.log").write_text(compose("logs", "--no-color", service, env=env))
        if not keep:
            with contextlib.suppress(Exception):
                compose("down", "-v", "--remove-orphans", env=env)
    report.figures["total_seconds"] = _since(started)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"ok": ok, "when": time.strftime("%Y-%m-%d %H:%M"), "figures": report.figures,
                                   "steps": report.steps}, indent=2) + "\n")
    print("\n== docker-check summary")
    for step in report.steps:
        print(f"{'ok  ' if step['ok'] else 'FAIL'} {step['seconds']:7.1f} s  {step['step']}")
    print(json.dumps(report.figures, indent=2))
    print(f"docker-check {'passed' if ok else 'FAILED'} in {report.figures['total_seconds']:.0f} s "
          f"(logs: {LOGS.relative_to(ROOT)}, figures: {RESULTS.relative_to(ROOT)})")
    return 0 if ok else 1


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 1)


if __name__ == "__main__":
    sys.exit(main())
