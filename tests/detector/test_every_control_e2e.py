"""Every control the detector serves, through a real Label Studio: one project with boxes,
polygons, brush masks, keypoints and classes on one image; annotations of each kind submitted
through the API train one version that serves all five, each with predictions of its own."""

from __future__ import annotations

import numpy as np
import pytest
import requests

from backends.core.rle import mask2rle, rle2mask
from tests.detector.conftest import OFFLINE_ENV, one_class_checkpoint, scene
from tests.harness import wait_until

pytestmark = pytest.mark.labelstudio

W, H = 160, 120
CONFIG = ('<View><Image name="image" value="$image"/>'
          '<RectangleLabels name="box" toName="image"><Label value="Widget"/></RectangleLabels>'
          '<PolygonLabels name="outline" toName="image"><Label value="Widget"/></PolygonLabels>'
          '<BrushLabels name="paint" toName="image"><Label value="Widget"/></BrushLabels>'
          '<KeyPointLabels name="corners" toName="image"><Label value="top left" model_index="0"/>'
          '<Label value="bottom right" model_index="1"/></KeyPointLabels>'
          '<Choices name="count" toName="image"><Choice value="One"/><Choice value="Two"/></Choices></View>')
CONTROLS = {"box": "rectanglelabels", "outline": "polygonlabels", "paint": "brushlabels",
            "corners": "keypointlabels", "count": "choices"}


def region(from_name, value):
    return {"from_name": from_name, "to_name": "image", "type": CONTROLS[from_name], "original_width": W,
            "original_height": H, "value": value}


def annotation(boxes):
    """Each widget as a box, a diamond outline, a painted mask and its two corners; the count."""
    out = []
    for x, y, w, h in boxes:
        px, py, pw, ph = 100 * x / W, 100 * y / H, 100 * w / W, 100 * h / H
        mask = np.zeros((H, W), dtype=np.uint8)
        mask[y:y + h, x:x + w] = 255
        out += [region("box", {"x": px, "y": py, "width": pw, "height": ph, "rotation": 0,
                               "rectanglelabels": ["Widget"]}),
                region("outline", {"points": [[px + pw / 2, py], [px + pw, py + ph / 2], [px + pw / 2, py + ph],
                                              [px, py + ph / 2]], "polygonlabels": ["Widget"]}),
                region("paint", {"format": "rle", "rle": mask2rle(mask), "brushlabels": ["Widget"]}),
                region("corners", {"x": px + 1, "y": py + 1, "width": 1, "keypointlabels": ["top left"]}),
                region("corners", {"x": px + pw - 1, "y": py + ph - 1, "width": 1, "keypointlabels": ["bottom right"]})]
    out.append(region("count", {"choices": ["One" if len(boxes) == 1 else "Two"]}))
    return out


def by_control(prediction):
    """Each control's regions and scores, without the ids Label Studio and the SDK give them."""
    found: dict[str, list] = {}
    for r in prediction["result"]:
        value = sorted((k, str(v)) for k, v in r["value"].items())
        found.setdefault(r["from_name"], []).append((r["type"], value, r.get("score")))
    return found


@pytest.fixture
def detector(label_studio, start_backend, tmp_path):
    weights = tmp_path / "weights"
    # bases whose classes are the project's, so every base prediction maps (the pose base is COCO's)
    env = {**OFFLINE_ENV, "DETECTOR_BASE_WEIGHTS": one_class_checkpoint("detect", weights, {0: "widget"}),
           "DETECTOR_SEG_WEIGHTS": one_class_checkpoint("segment", weights, {0: "widget"}),
           "DETECTOR_CLS_WEIGHTS": one_class_checkpoint("classify", weights, {0: "one", 1: "two"}),
           "DETECTOR_OBB_WEIGHTS": one_class_checkpoint("obb", weights, {0: "widget"}),
           "DATA_DIR": tmp_path / "det", "LABEL_STUDIO_URL": label_studio.url,
           "LABEL_STUDIO_API_KEY": label_studio.token, "TRAIN_DEBOUNCE_S": 2, "DETECTOR_EPOCHS": 1,
           "DETECTOR_IMGSZ": 64, "DETECTOR_BATCH": 4, "DETECTOR_SCORE_THRESHOLD": 0, "DETECTOR_MAX_DET": 5,
           "DETECTOR_PUBLISH": "always"}
    return start_backend("backends.detector", env)[1]


def test_one_version_serves_and_changes_all_five_controls(label_studio, detector):
    project = label_studio.create_project(CONFIG, title="five controls")
    scenes = {f"s{i}.png": scene(i) for i in range(7)}
    tasks = label_studio.upload_images(project, {name: png for name, (png, _) in scenes.items()})
    label_studio.connect_backend(project, detector, "detector")
    probe = tasks[-1]
    label_studio.retrieve_predictions(project, [probe])
    (before,) = label_studio.predictions(probe)
    assert set(by_control(before)) == {"box", "outline", "corners", "count"}  # no brush from base weights

    for task, (_, boxes) in zip(tasks[:-1], scenes.values()):
        label_studio.annotate(task, annotation(boxes))
    wait_until(lambda: requests.get(f"{detector}/versions?project={project}", timeout=5).json().get("details"), 600,
               "a version", interval=2)
    versions = requests.get(f"{detector}/versions?project={project}", timeout=5).json()
    current = next(v for v in versions["details"] if v["name"] == versions["current"])
    controls = current["controls"]
    assert {n: (c["task"], c["trained"]) for n, c in controls.items()} == {
        "box": ("detect", True), "outline": ("segment", True), "paint": ("segment", True),
        "corners": ("pose", True), "count": ("classify", True)}
    assert current["not_trained"] == {}
    # each control's own metrics, and its corrections per val image, as GET /versions lists them
    assert {n: {"map50", "map50_95"} <= set(c["metrics"]) for n, c in controls.items() if n != "count"} == {
        "box": True, "outline": True, "paint": True, "corners": True}
    assert {"top1", "top5"} <= set(controls["count"]["metrics"])
    assert set(current["corrections"]) == set(CONTROLS)
    assert all(c["version"]["images"] == controls[n]["n_val"] for n, c in current["corrections"].items())

    label_studio.retrieve_predictions(project, [probe])
    after = next(p for p in label_studio.predictions(probe) if p["model_version"] == versions["current"])
    old, new = by_control(before), by_control(after)
    assert set(new) == set(CONTROLS), new.keys()
    for name in CONTROLS:
        assert new[name] != old.get(name), f"{name}: the same predictions as the base weights'"
    for r in after["result"]:
        if r["type"] == "brushlabels":
            assert rle2mask(r["value"]["rle"], H, W).any()


OBB_CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image" '
              'model_obb="true"><Label value="Widget"/></RectangleLabels></View>')


def test_an_obb_project_trains_on_rotated_boxes_and_prelabels_rotations(label_studio, detector):
    project = label_studio.create_project(OBB_CONFIG, title="rotated boxes")
    scenes = {f"r{i}.png": scene(i) for i in range(7)}
    tasks = label_studio.upload_images(project, {name: png for name, (png, _) in scenes.items()})
    label_studio.connect_backend(project, detector, "detector")
    label_studio.retrieve_predictions(project, [tasks[-1]])
    (before,) = label_studio.predictions(tasks[-1])
    for task, (_, boxes) in zip(tasks[:-1], scenes.values()):
        turned = [r for r in annotation(boxes) if r["from_name"] == "box"]
        for i, r in enumerate(turned):
            r["value"]["rotation"] = 10.0 * (i + 1)
        label_studio.annotate(task, turned)
    wait_until(lambda: requests.get(f"{detector}/versions?project={project}", timeout=5).json().get("details"), 600,
               "a version", interval=2)
    versions = requests.get(f"{detector}/versions?project={project}", timeout=5).json()
    current = next(v for v in versions["details"] if v["name"] == versions["current"])
    assert current["controls"]["box"]["task"] == "obb" and current["controls"]["box"]["trained"]
    assert current["controls"]["box"]["report"]["n_boxes"] == sum(len(b) for _, b in list(scenes.values())[:-1])

    label_studio.retrieve_predictions(project, [tasks[-1]])
    after = next(p for p in label_studio.predictions(tasks[-1]) if p["model_version"] == versions["current"])
    assert after["result"] and all("rotation" in r["value"] for r in after["result"])
    assert by_control(after) != by_control(before), "the same rotated boxes as the base weights'"
    # every box one Label Studio stored (it refuses a side over 100 % or a turning corner past 100 %)
    assert all(max(r["value"][k] for k in ("x", "y", "width", "height")) <= 100 for r in after["result"])
