"""One fine-tune, every trainable control (detector/training.py, trainable.py): boxes and polygons
of one project train into one version that serves both; a control whose annotations did not change
since is carried over, not trained again; versions of one box control (published before, or
imported) keep serving."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

from backends.detector.model import DetectorModel
from backends.detector.training import FineTuner
from tests.detector.conftest import data_uri, one_class_checkpoint, scene

CONFIG = ('<View><Image name="image" value="$image"/>'
          '<RectangleLabels name="box" toName="image" model_score_threshold="0"><Label value="Widget"/></RectangleLabels>'
          '<PolygonLabels name="outline" toName="image" model_score_threshold="0"><Label value="Widget"/></PolygonLabels>'
          '</View>')
SMALL = {"epochs": 1, "imgsz": 64, "batch": 2, "publish": "always"}


def regions(boxes, kinds=("box", "outline")):
    out = []
    for x, y, w, h in boxes:
        px, py, pw, ph = 100 * x / 160, 100 * y / 120, 100 * w / 160, 100 * h / 120
        if "box" in kinds:
            out.append({"from_name": "box", "to_name": "image", "type": "rectanglelabels", "original_width": 160,
                        "original_height": 120, "value": {"x": px, "y": py, "width": pw, "height": ph, "rotation": 0,
                                                          "rectanglelabels": ["Widget"]}})
        if "outline" in kinds:  # a diamond inside the box
            points = [[px + pw / 2, py], [px + pw, py + ph / 2], [px + pw / 2, py + ph], [px, py + ph / 2]]
            out.append({"from_name": "outline", "to_name": "image", "type": "polygonlabels", "original_width": 160,
                        "original_height": 120, "value": {"points": points, "polygonlabels": ["Widget"]}})
    return out


def tasks_of(n):
    return [{"id": i + 1, "data": {"image": data_uri(scene(i)[0])},
             "annotations": [{"id": i + 1, "result": regions(scene(i)[1]), "was_cancelled": False}]} for i in range(n)]


def train(services, monkeypatch, tasks):
    model = DetectorModel(project_id=3, label_config=CONFIG, services=services, extra_params=SMALL)
    monkeypatch.setattr(FineTuner, "_fetch_tasks", lambda self: tasks)
    return model, FineTuner(model, None).run()


def test_boxes_and_polygons_train_into_one_version_and_an_unchanged_control_is_carried(services, detector_env,
                                                                                        monkeypatch):
    tasks = tasks_of(6)
    model, first = train(services, monkeypatch, tasks)
    v1 = model.registry.current()
    controls = v1.metadata["controls"]
    assert first["serving"] and set(controls) == {"box", "outline"} and all(c["trained"] for c in controls.values())
    assert (controls["box"]["weights"], controls["outline"]["weights"]) == ("weights.pt", "controls/outline.pt")
    assert (controls["box"]["task"], controls["outline"]["task"]) == ("detect", "segment")
    assert set(controls["outline"]["metrics"]) >= {"map50", "map50_95", "box", "per_class"}  # mask mAP, box mAP
    assert controls["outline"]["report"]["n_objects"] == sum(len(scene(i)[1]) for i in range(6))
    assert v1.metadata["from_name"] == "box" and set(v1.metadata["corrections"]) == {"box"}

    fresh = DetectorModel(project_id=3, label_config=CONFIG, services=services, extra_params=SMALL)
    plans = {p.control.from_name: p for p in fresh.plans()}
    assert plans["outline"].weights == str(Path(v1.path) / "controls" / "outline.pt")
    assert plans["box"].weights == str(Path(v1.path) / "weights.pt") and plans["box"].version == v1.name
    prediction = fresh.predict([{"id": 99, "data": {"image": data_uri(scene(9)[0])}}])[0]
    assert prediction["model_version"] == v1.name

    # a labeler moves boxes only: the outlines' training set is unchanged, so they are carried over
    tasks[0]["annotations"][0]["result"] = regions(scene(0)[1][:1], ("box",)) + regions(scene(0)[1], ("outline",))
    _, second = train(services, monkeypatch, tasks)
    v2 = model.registry.current()
    assert v2.name != v1.name and second["controls"]["box"]["trained"] is True
    carried = v2.metadata["controls"]["outline"]
    assert carried["trained"] is False and carried["carried_from"] == v1.name
    assert filecmp.cmp(Path(v1.path) / "controls" / "outline.pt", Path(v2.path) / "controls" / "outline.pt", shallow=False)
    json.dumps(v2.metadata)  # what GET /versions returns

    # every outline deleted: boxes train, the outlines keep the weights they had, and the job says why
    for task in tasks:
        task["annotations"][0]["result"] = [r for r in task["annotations"][0]["result"] if r["from_name"] == "box"]
    tasks[1]["annotations"][0]["result"] = tasks[1]["annotations"][0]["result"][:1]
    _, third = train(services, monkeypatch, tasks)
    assert "fewer than min_annotations" in third["not_trained"]["outline"]
    assert model.registry.current().metadata["controls"]["outline"]["carried_from"] == v1.name


def test_a_version_of_one_box_control_keeps_serving_it(services, detector_env):
    """Versions published before controls were listed, and imported weights, hold weights.pt only."""
    model = DetectorModel(project_id=4, label_config=CONFIG, services=services, extra_params=SMALL)
    imported = model.import_version(path=str(one_class_checkpoint("detect", detector_env, {0: "Widget"})))
    assert "controls" not in imported.metadata
    plans = {p.control.from_name: p for p in model.plans()}
    assert plans["box"].version == imported.name and plans["box"].weights == str(Path(imported.path) / "weights.pt")
    assert plans["outline"].version is None  # the base segment weights: the version knows nothing of outlines
