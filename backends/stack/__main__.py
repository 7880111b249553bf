"""``python -m backends.stack up|down|status``: the local stack behind ``make up`` / ``make down``.

``up`` starts Label Studio (SQLite, 127.0.0.1:8080) unless ``LABEL_STUDIO_URL`` and
``LABEL_STUDIO_API_KEY`` point at an existing one, starts the backends on 9090-9092, creates the
demo project, and prints the URL and login. Processes run detached; their pids and logs are under
``.run/``. Running ``up`` again reuses the data and the running processes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import sys
from typing import Any

import requests

from backends.core.labelstudio import LabelStudioClient

from .demo import ensure_demo_project
from .processes import ROOT, backend_process, label_studio_process

log = logging.getLogger("stack")
RUN = ROOT / ".run"
DATA = ROOT / ".data"
#: backend module -> port; extended as backends land.
BACKENDS = {"detector": 9090, "segmenter": 9091, "active": 9092}


class LabelStudioRest:
    """The few Label Studio REST calls the stack and the quickstart notebook make, with either kind of key."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.http = requests.Session()
        # The backends' client: tells a legacy token from a PAT and refreshes the PAT's 5-minute
        # access tokens before they expire, so a long notebook session keeps working.
        self.client = LabelStudioClient(self.url, token)

    def api(self, method: str, path: str, **kw: Any) -> Any:
        response = self.http.request(method, self.url + path, timeout=120, headers=self.client.auth_headers(), **kw)
        if response.status_code >= 400:
            raise SystemExit(f"Label Studio {method} {path} -> {response.status_code}: {response.text[:300]}")
        return response.json() if response.content else None


def _credentials() -> tuple[dict[str, str], bool]:
    path = RUN / "credentials.json"
    if path.exists():
        return json.loads(path.read_text()), False
    creds = {"username": "admin@labelloop.local", "password": secrets.token_urlsafe(12), "token": secrets.token_hex(20)}
    RUN.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(creds, indent=2))
    path.chmod(0o600)
    return creds, True


def _pids() -> dict[str, int]:
    path = RUN / "pids.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _save_pid(name: str, pid: int | None) -> None:
    assert pid is not None, f"{name}'s pid is saved after ManagedProcess.start(), which sets it"
    pids = _pids()
    pids[name] = pid
    (RUN / "pids.json").write_text(json.dumps(pids, indent=2))


def _alive(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _offline_defaults(env: dict[str, str]) -> None:
    """No network (or hub) here: random-init weights so the loop still runs end to end."""
    if "SAM_CHECKPOINT" not in os.environ:
        log.warning("SAM_CHECKPOINT is not set: the segmenter runs MobileSAM (SAM 2.1 on a GPU) with RANDOM weights "
                    "(masks are noise, latency is real). Download mobile_sam.pt (or sam2.1_t.pt) from the ultralytics "
                    "assets release and set SAM_CHECKPOINT to it")
        env["SAM_ALLOW_RANDOM"] = "1"
    if "DETECTOR_BASE_WEIGHTS" in os.environ:
        return
    from ultralytics.utils import is_online

    if not is_online():
        log.warning("no network: the detector starts from random weights (yolo11n.yaml) and shows low-confidence "
                    "boxes until trained; set DETECTOR_BASE_WEIGHTS to a local .pt for real pre-labels")
        env.update(DETECTOR_BASE_WEIGHTS="yolo11n.yaml", DETECTOR_SCORE_THRESHOLD="0.0", DETECTOR_MAX_DET="10",
                   YOLO_OFFLINE="1")


def up() -> None:
    RUN.mkdir(parents=True, exist_ok=True)
    external = os.environ.get("LABEL_STUDIO_URL") and os.environ.get("LABEL_STUDIO_API_KEY")
    creds, fresh = _credentials()
    if external:
        ls_url, token = os.environ["LABEL_STUDIO_URL"].rstrip("/"), os.environ["LABEL_STUDIO_API_KEY"]
    else:
        ls_url, token = "http://127.0.0.1:8080", creds["token"]
        if not _alive(ls_url + "/health"):
            log.info("starting Label Studio on %s (first start runs migrations, ~1 min)", ls_url)
            proc = label_studio_process(DATA / "label-studio", 8080, creds["username"], creds["password"], creds["token"])
            proc.log_path = RUN / "logs" / "label-studio.log"
            proc.start(timeout=300)
            _save_pid("label-studio", proc.pid)
    env = {"DATA_DIR": str(DATA), "LABEL_STUDIO_URL": ls_url, "LABEL_STUDIO_API_KEY": token}
    _offline_defaults(env)
    urls = {}
    for name, port in BACKENDS.items():
        url = f"http://127.0.0.1:{port}"
        urls[name] = url
        if not _alive(url + "/health"):
            log.info("starting %s on %s", name, url)
            proc = backend_process(f"backends.{name}", port, env, RUN / "logs" / f"{name}.log")
            proc.start(timeout=120)
            _save_pid(name, proc.pid)
    project = ensure_demo_project(LabelStudioRest(ls_url, token), urls)
    print(f"\nLabel Studio: {ls_url}/projects/{project}")
    if not external:
        if fresh:
            print(f"login: {creds['username']}  password: {creds['password']}  (shown once; kept in .run/credentials.json)")
        else:
            print(f"login: {creds['username']}  (password in .run/credentials.json)")
    for name, url in urls.items():
        print(f"{name}: {url}  (logs: .run/logs/{name}.log)")
    print("Open a task to see pre-labels; submit annotations to train. Stop with 'make down'.")


def down() -> None:
    pids = _pids()
    for name, pid in pids.items():
        try:
            os.killpg(pid, signal.SIGTERM)
            print(f"stopped {name} (pid {pid})")
        except ProcessLookupError:
            print(f"{name} was not running")
    (RUN / "pids.json").unlink(missing_ok=True)


def demo(backends: list[str]) -> None:
    """Create the demo project in the Label Studio of ``LABEL_STUDIO_URL`` and connect running backends.

    For stacks started elsewhere (the compose file's one-shot ``demo`` service): nothing is started here.
    """
    url, token = os.environ.get("LABEL_STUDIO_URL"), os.environ.get("LABEL_STUDIO_API_KEY")
    if not url or not token:
        raise SystemExit("demo needs LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY")
    urls = {}
    for item in backends or [f"{name}=http://127.0.0.1:{port}" for name, port in BACKENDS.items()]:
        name, sep, backend_url = item.partition("=")
        if not sep or name not in BACKENDS:
            raise SystemExit(f"--backend wants NAME=URL with NAME one of {sorted(BACKENDS)}, got {item!r}")
        urls[name] = backend_url
    project = ensure_demo_project(LabelStudioRest(url, token), urls)
    print(f"Label Studio: {url.rstrip('/')}/projects/{project}")


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(prog="python -m backends.stack")
    parser.add_argument("command", choices=["up", "down", "demo"])
    parser.add_argument("--backend", action="append", default=[], metavar="NAME=URL",
                        help="demo only: a running backend to connect (repeatable; default: the local ports)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo(args.backend)
    else:
        {"up": up, "down": down}[args.command]()


if __name__ == "__main__":
    main(sys.argv[1:])
