"""The browser suite's shared pieces: one chromium for the whole run, logged in once, and one
server per backend for every test that does not need settings of its own.

Every test here does what a person does in Label Studio's screens (tests/browser/ui.py): the
request bodies are the ones the UI really sends, which is how the Connect Model form's string
``extra_params`` was found. Screenshots land in ``test-artifacts/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backends.stack.processes import ManagedProcess, backend_process, free_port
from tests.detector.conftest import OFFLINE_ENV
from tests.harness import ARTIFACTS, LabelStudioHarness

CHROMIUM = Path("/usr/bin/chromium")
# Headless in a sandbox without network: the flags that keep chromium from phoning home, which the
# closed network here refuses, many connections at a time.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def browser(label_studio: LabelStudioHarness) -> Iterator[Any]:
    if not CHROMIUM.exists():
        # make test installs it; a missing browser is a broken environment, not a reason to pass
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium with apt")
    if not label_studio.password:
        pytest.skip("a reused TEST_LABEL_STUDIO_URL server has no password to log in with")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def logged_in(browser: Any, label_studio: LabelStudioHarness, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session cookie of one login through the login page, reused by every test's page."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{label_studio.url}/user/login/")
    page.fill("input[name=email]", label_studio.username)
    page.fill("input[name=password]", label_studio.password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/user/login" not in url)
    state = tmp_path_factory.mktemp("browser") / "state.json"
    context.storage_state(path=str(state))
    context.close()
    return state


@pytest.fixture
def page(browser: Any, logged_in: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(storage_state=str(logged_in), viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"browser-{request.node.name}-last.png"))
    context.close()


def backend_env(label_studio: LabelStudioHarness, data_dir: Path) -> dict[str, str]:
    """Small, fast settings every backend understands (each reads only its own prefix)."""
    env = {**OFFLINE_ENV, "DATA_DIR": data_dir, "LABEL_STUDIO_URL": label_studio.url,
           "LABEL_STUDIO_API_KEY": label_studio.token, "DETECTOR_SCORE_THRESHOLD": 0, "DETECTOR_MAX_DET": 3,
           "DETECTOR_PREDICT_IMGSZ": 320, "SAM_ALLOW_RANDOM": 1, "WARMUP": 0, "TRAIN_DEBOUNCE_S": 0.2,
           "ACTIVE_BACKBONE": "small_cnn", "ACTIVE_IMGSZ": 32, "ACTIVE_EPOCHS": 1, "ACTIVE_BATCH": 8}
    return {k: str(v) for k, v in env.items()}


class Served:
    """A backend server shared by the suite: its URL and its data dir (whose journal holds what
    /setup told it, per project)."""

    def __init__(self, proc: ManagedProcess, url: str, data_dir: Path) -> None:
        self.proc, self.url, self.data_dir = proc, url, data_dir


@pytest.fixture(scope="session")
def served(label_studio: LabelStudioHarness, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Served]]:
    """detector, segmenter and active, started once for the suite (each test uses its own project)."""
    started: dict[str, Served] = {}
    root = tmp_path_factory.mktemp("served")
    try:
        for name in ("detector", "segmenter", "active"):
            port, data_dir = free_port(), root / name
            proc = backend_process(f"backends.{name}", port, backend_env(label_studio, data_dir), root / f"{name}.log")
            proc.start(timeout=120)
            started[name] = Served(proc, f"http://127.0.0.1:{port}", data_dir)
        yield started
    finally:
        for one in started.values():
            one.proc.stop()
            print(f"--- {one.proc.name} log tail ---\n{one.proc.log_tail(3000)}")
