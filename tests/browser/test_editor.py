"""A real browser (Debian chromium driven by Playwright) on the real Label Studio from the harness.

Users' most frequent complaint in Label Studio's tracker is "predictions posted, nothing shown". This
checks what a labeler sees: the detector's boxes rendered as regions in the editor, and a click with
the smart keypoint tool, answered by the segmenter, becoming a mask region. Screenshots of both land in
``test-artifacts/`` for a human to look at.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from backends.stack.demo import DEMO_CONFIG, demo_images
from tests.browser.ui import REGION_TYPES, STORE_READY
from tests.detector.conftest import OFFLINE_ENV
from tests.harness import ARTIFACTS, LabelStudioHarness, wait_until

pytestmark = pytest.mark.labelstudio


def _project_with_both_backends(label_studio: LabelStudioHarness, start_backend: Any, tmp_path: Path) -> dict:
    env = {**OFFLINE_ENV, "DATA_DIR": tmp_path / "data", "LABEL_STUDIO_URL": label_studio.url,
           "LABEL_STUDIO_API_KEY": label_studio.token, "DETECTOR_SCORE_THRESHOLD": 0, "DETECTOR_MAX_DET": 5,
           "DETECTOR_PREDICT_IMGSZ": 320, "SAM_ALLOW_RANDOM": 1, "WARMUP": 0, "TRAIN_DEBOUNCE_S": 0.2}
    _, detector = start_backend("backends.detector", env)
    _, segmenter = start_backend("backends.segmenter", env)
    project = label_studio.create_project(DEMO_CONFIG, title="browser")
    label_studio.connect_backend(project, detector, "detector", train_on_submit=False)
    label_studio.connect_backend(project, segmenter, "segmenter", interactive=True, train_on_submit=False)
    # Imported after connecting: TASKS_CREATED makes the segmenter embed the photo before anyone clicks.
    (task,) = label_studio.upload_images(project, {"bus.jpg": demo_images()["bus.jpg"]})
    wait_until(lambda: [j for j in requests.get(f"{segmenter}/jobs?project={project}", timeout=5).json()["jobs"]
                        if j["kind"] == "prefetch" and j["state"] == "done"], 300, "the segmenter's prefetch", 1)
    label_studio.retrieve_predictions(project, [task])
    (prediction,) = wait_until(lambda: label_studio.predictions(task), 120, "the detector's prediction")
    assert prediction["model_version"].startswith("detector-") and prediction["result"], prediction
    return {"project": project, "task": task, "prediction": prediction, "segmenter": segmenter}


def test_prelabels_render_and_a_smart_click_becomes_a_mask(label_studio, start_backend, tmp_path, page):
    setup = _project_with_both_backends(label_studio, start_backend, tmp_path)
    boxes = len(setup["prediction"]["result"])

    page.goto(f"{label_studio.url}/projects/{setup['project']}/data?tab=&task={setup['task']}")
    page.wait_for_function(STORE_READY)
    page.wait_for_selector(".lsf-outliner-item")
    assert page.locator(".lsf-tree__node_type_rectangleregion").count() == boxes, "every predicted box is listed"
    assert page.evaluate(REGION_TYPES) == ["rectangleregion"] * boxes
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-prelabels.png"))

    # What a labeler does: turn on smart tools, accept their suggestions as regions, hide the boxes
    # (a click on a box would select it), pick the smart keypoint tool and a label of its control.
    page.get_by_text("Auto-Annotation").click()
    page.get_by_text("Auto-Accept Suggestions").click()
    page.get_by_role("button", name="Hide all regions").click()
    _choose_smart_tool(page, "key-point-tool")
    page.locator(".lsf-labels_inline").nth(1).get_by_text("Person", exact=True).click()  # KeyPointLabels "click"
    canvas = page.locator(".konvajs-content").first.bounding_box()
    page.mouse.click(canvas["x"] + canvas["width"] * 0.45, canvas["y"] + canvas["height"] * 0.5)

    page.wait_for_function("() => window.Htx.annotationStore.selected.regionStore.regions"
                           ".some(r => r.type === 'brushregion')", timeout=120_000)
    assert page.locator(".lsf-tree__node_type_brushregion").count() == 1, "the mask is listed as a region"
    page.screenshot(path=str(ARTIFACTS / "browser-smart-click.png"))
    metrics = requests.get(f"{setup['segmenter']}/metrics", timeout=5).text
    assert 'labelloop_sam_embeddings_total{source="memory"} 1.0' in metrics, "the click used the prefetched embedding"


def _choose_smart_tool(page: Any, name: str) -> None:
    """The smart tools share one toolbar button; each click moves to the next of them."""
    for _ in range(6):
        if page.locator(f".lsf-tool_smart.lsf-tool_active[aria-label={name}]").count():
            return
        page.locator(".lsf-tool_smart:visible").first.click()
    raise AssertionError(f"the smart {name} never became active")

