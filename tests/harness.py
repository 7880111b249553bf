"""Integration harness: a real Label Studio 1.23.2 and real backend processes on loopback.

``label_studio`` (session scope) starts Label Studio from its own environment in a temporary data
dir on a free port and yields a :class:`LabelStudioHarness` with REST helpers. ``start_backend``
starts ``python -m <module>`` servers with the environment a test gives, and stops them after.
"""

from __future__ import annotations

import io
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from backends.stack.processes import LABEL_STUDIO_BIN, ManagedProcess, backend_process, free_port, label_studio_process

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


class LabelStudioHarness:
    def __init__(self, proc: ManagedProcess, url: str, token: str, username: str, password: str) -> None:
        self.proc, self.url, self.token = proc, url, token
        self.username, self.password = username, password
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Token {token}"

    def api(self, method: str, path: str, expect: int | tuple[int, ...] = (200, 201, 204), **kw: Any) -> Any:
        response = self.http.request(method, self.url + path, timeout=120, **kw)
        expected = (expect,) if isinstance(expect, int) else expect
        assert response.status_code in expected, f"{method} {path} -> {response.status_code}: {response.text[:500]}"
        return response.json() if response.content and "json" in response.headers.get("content-type", "") else None

    def personal_access_token(self) -> str:
        """This user's PAT, created once per session (Label Studio allows one per user)."""
        if not getattr(self, "_pat", None):
            self.api("POST", "/api/jwt/settings", json={"api_tokens_enabled": True, "legacy_api_tokens_enabled": True})
            response = self.http.post(self.url + "/api/token/", timeout=30)
            if response.status_code == 409:  # only with a reused TEST_LABEL_STUDIO_URL server
                if not os.environ.get("TEST_LABEL_STUDIO_PAT"):
                    pytest.skip("this Label Studio user already has a PAT: set TEST_LABEL_STUDIO_PAT to it")
                self._pat = os.environ["TEST_LABEL_STUDIO_PAT"]
            else:
                assert response.status_code == 201, response.text
                self._pat = response.json()["token"]
        return self._pat

    def create_project(self, label_config: str, title: str = "test", **fields: Any) -> int:
        return self.api("POST", "/api/projects", json={"title": title, "label_config": label_config, **fields})["id"]

    def upload_images(self, project: int, images: dict[str, bytes], content_type: str = "image/png") -> list[int]:
        """Upload files as the Import dialog does: one task per file (videos too, ``content_type``)."""
        files = [(name, (name, io.BytesIO(data), content_type)) for name, data in images.items()]  # one field per file
        result = self.api("POST", f"/api/projects/{project}/import?commit_to_project=true", files=files)
        return self.task_ids(project)[-len(images):] if result else []

    def task_ids(self, project: int) -> list[int]:
        tasks = self.api("GET", f"/api/tasks?project={project}&page_size=1000")
        tasks = tasks["tasks"] if isinstance(tasks, dict) else tasks
        return sorted(t["id"] for t in tasks)

    def task(self, task_id: int) -> dict[str, Any]:
        return self.api("GET", f"/api/tasks/{task_id}")

    def connect_backend(self, project: int, url: str, title: str, *, interactive: bool = False,
                        train_on_submit: bool = True, extra_params: dict[str, Any] | None = None) -> int:
        ml = self.api("POST", "/api/ml", json={
            "project": project, "url": url, "title": title, "is_interactive": interactive,
            "auto_update": True, "extra_params": extra_params or {},
        })
        if train_on_submit:
            self.api("PATCH", f"/api/projects/{project}", json={"start_training_on_annotation_update": True})
        return ml["id"]

    def retrieve_predictions(self, project: int, task_ids: list[int] | None = None) -> None:
        """The Data Manager action that makes Label Studio call the backend's /predict."""
        selected = {"all": False, "included": task_ids} if task_ids else {"all": True, "excluded": []}
        self.api("POST", f"/api/dm/actions?id=retrieve_tasks_predictions&project={project}",
                 json={"selectedItems": selected, "project": project})

    def predictions(self, task_id: int) -> list[dict[str, Any]]:
        return self.api("GET", f"/api/predictions?task={task_id}")

    def annotate(self, task_id: int, result: list[dict[str, Any]]) -> dict[str, Any]:
        return self.api("POST", f"/api/tasks/{task_id}/annotations/", json={"result": result, "was_cancelled": False})


def missing_system_dependency(reason: str) -> None:
    """A system package the suite needs is absent: a skip on a developer's machine, a failure in
    CI (``CI`` set), where a green run must mean every test ran."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason}; CI must run this test (see the Makefile's system-deps)", pytrace=False)
    pytest.skip(reason)


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioHarness]:
    # Developers may point the tests at a Label Studio they keep running (saves ~40 s of migrations).
    if os.environ.get("TEST_LABEL_STUDIO_URL"):
        yield LabelStudioHarness(None, os.environ["TEST_LABEL_STUDIO_URL"].rstrip("/"),  # type: ignore[arg-type]
                                 os.environ["TEST_LABEL_STUDIO_TOKEN"], "", "")
        return
    if not LABEL_STUDIO_BIN.exists():
        pytest.fail(f"Label Studio is not installed at {LABEL_STUDIO_BIN}: run 'make test' (it installs it)")
    data_dir = tmp_path_factory.mktemp("label-studio")
    port, token = free_port(), secrets.token_hex(20)
    username, password = "tester@example.com", secrets.token_urlsafe(12)
    proc = label_studio_process(data_dir, port, username, password, token)
    proc.start(timeout=300)
    harness = LabelStudioHarness(proc, f"http://127.0.0.1:{port}", token, username, password)
    yield harness
    proc.stop()
    ARTIFACTS.mkdir(exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # one Label Studio per test worker, one log each
    (ARTIFACTS / f"label-studio{'-' + worker if worker else ''}.log").write_text(proc.log_tail(200_000))


@pytest.fixture
def start_backend(tmp_path: Path) -> Iterator[Callable[..., tuple[ManagedProcess, str]]]:
    started: list[ManagedProcess] = []

    def start(module: str, env: dict[str, str], port: int | None = None) -> tuple[ManagedProcess, str]:
        port = port or free_port()
        proc = backend_process(module, port, {k: str(v) for k, v in env.items()}, tmp_path / f"{module}-{port}.log")
        proc.start(timeout=120)
        started.append(proc)
        return proc, f"http://127.0.0.1:{port}"

    yield start
    for proc in started:
        proc.stop()
        print(f"--- {proc.name} log tail ---\n{proc.log_tail(3000)}")
