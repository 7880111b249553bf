"""A video task in Label Studio's editor: the detector's tracked regions on the timeline."""

from __future__ import annotations

import pytest
import requests

from bench.moving_items import clip, fashion_movers
from tests.browser import ui
from tests.detector.conftest import one_class_checkpoint
from tests.detector.test_video import CONFIG, LOW
from tests.harness import ARTIFACTS, wait_until

pytestmark = pytest.mark.labelstudio

VIDEO_REGIONS = ("() => window.Htx.annotationStore.selected.regionStore.regions"
                 ".map(r => [r.type, r.sequence.length, r.labeling ? r.labeling.selectedLabels.map(l => l.value) : []])")
VIDEO_READY = "() => { const v = document.querySelector('video'); return v && v.readyState >= 2 }"
# the timeline under the video: one row per region, its name, and a point per keyframe
TIMELINE_ROWS = "document.querySelectorAll('.lsf-timeline-frames__keypoints .lsf-keypoints').length"
TIMELINE = ("() => [...document.querySelectorAll('.lsf-timeline-frames__keypoints .lsf-keypoints')].map(row => "
            "[row.dataset.id, row.querySelector('.lsf-keypoints__name').textContent.trim(), "
            "[...row.querySelectorAll('.lsf-keypoints__lifespan')].map(bar => bar.getBoundingClientRect().width)])")


def lifespans(sequence: list[dict]) -> int:
    """How many lifespan bars the timeline draws: one from each keyframe that turns the region on."""
    return sum(k["enabled"] and (i == 0 or not sequence[i - 1]["enabled"]) for i, k in enumerate(sequence))


def test_the_editor_of_a_video_task_shows_the_tracked_regions_on_the_timeline(label_studio, start_backend, tmp_path,
                                                                              page):
    from tests.browser.conftest import backend_env

    base = one_class_checkpoint("detect", tmp_path / "weights", {0: "trouser", 1: "bag"})
    _, detector = start_backend("backends.detector", {**backend_env(label_studio, tmp_path / "det"),
                                                      "DETECTOR_BASE_WEIGHTS": str(base)})
    project = label_studio.create_project(CONFIG.format(low=LOW), title="video in the editor")
    clip(tmp_path / "walk.webm", fashion_movers([1, 8]), frames=25)
    (task,) = label_studio.upload_images(project, {"walk.webm": (tmp_path / "walk.webm").read_bytes()}, "video/webm")
    assert ui.connect_model(page, label_studio.url, project, "detector", detector)["body"]["_status"] == 201
    requests.post(f"{detector}/jobs", json={"project": project, "kind": "prelabel"}, timeout=5).raise_for_status()
    wait_until(lambda: label_studio.predictions(task), 120, "the prelabel job's prediction", 1)
    (prediction,) = label_studio.predictions(task)
    assert prediction["result"] and {r["type"] for r in prediction["result"]} == {"videorectangle"}

    ui.open_task(page, label_studio.url, project, task)  # never opened before
    page.wait_for_function(f"() => {ui.REGION_COUNT} === {len(prediction['result'])}")
    shown = page.evaluate(VIDEO_REGIONS)
    expected = sorted([["videorectangleregion", len(r["value"]["sequence"]), r["value"]["labels"]]
                       for r in prediction["result"]])
    assert sorted(shown) == expected, shown
    page.wait_for_function(VIDEO_READY, timeout=30_000)  # the timeline draws once the video has loaded
    page.wait_for_function(f"() => {TIMELINE_ROWS} === {len(expected)}")
    rows = page.evaluate(TIMELINE)
    assert sorted((region, name, len(bars)) for region, name, bars in rows) == sorted(
        (r["id"], r["value"]["labels"][0], lifespans(r["value"]["sequence"])) for r in prediction["result"]), rows
    assert all(width > 0 for _, _, bars in rows for width in bars)  # bars span frames, not a point
    page.screenshot(path=str(ARTIFACTS / "browser-video-timeline.png"))
