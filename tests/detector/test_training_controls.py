"""One fine-tune, every trainable control (detector/training.py, trainable.py): boxes and polygons
of one project train into one version that serves both; a control whose annotations did not change
since is carried over, not trained again; versions of one box control (published before, or
imported) keep serving."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import numpy as np

from backends.detector import model as detector_model
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


def train(services, monkeypatch, tasks, config=CONFIG, project=3):
    model = DetectorModel(project_id=project, label_config=config, services=services, extra_params=SMALL)
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
    assert v1.metadata["from_name"] == "box" and set(v1.metadata["corrections"]) == {"box", "outline"}
    outlines = v1.metadata["corrections"]["outline"]  # every val polygon drawn by hand; the version's edits
    val_objects = sum(len(scene(t - 1)[1]) for t in controls["outline"]["val_task_ids"])
    assert outlines["by_hand"]["draws"] == val_objects and outlines["version"]["images"] == controls["outline"]["n_val"]

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


CLASS_CONFIG = ('<View><Image name="image" value="$image"/>'
                '<RectangleLabels name="box" toName="image" model_score_threshold="0"><Label value="Widget"/>'
                '</RectangleLabels><Choices name="kind" toName="image" model_score_threshold="0">'
                '<Choice value="One"/><Choice value="Two"/></Choices></View>')


def class_tasks(n):
    """Each scene's box, and its class: how many widgets it shows."""
    out = []
    for task in tasks_of(n):
        count = len(scene(task["id"] - 1)[1])
        result = [r for r in task["annotations"][0]["result"] if r["from_name"] == "box"]
        result.append({"from_name": "kind", "to_name": "image", "type": "choices",
                       "value": {"choices": ["One" if count == 1 else "Two"]}})
        task["annotations"][0]["result"] = result
        out.append(task)
    return out


def test_choices_train_classify_weights_that_serve_beside_the_boxes(services, detector_env, monkeypatch):
    tasks = class_tasks(6)
    model, result = train(services, monkeypatch, tasks, CLASS_CONFIG, 5)
    v1 = model.registry.current()
    kind = v1.metadata["controls"]["kind"]
    assert result["serving"] and kind["trained"] and (kind["task"], kind["weights"]) == ("classify", "controls/kind.pt")
    assert set(kind["metrics"]) == {"top1", "top5"} and kind["names"] == ["One", "Two"]
    assert kind["report"]["n_annotated"] == 6
    classes = v1.metadata["corrections"]["kind"]  # one class per val image: a draw by hand, else 0 or 1 relabel
    assert classes["by_hand"]["draws"] == kind["n_val"] and classes["version"]["deletes"] == 0
    assert classes["version"]["edits"] == classes["version"]["relabels"] + classes["version"]["draws"] <= kind["n_val"]

    fresh = DetectorModel(project_id=5, label_config=CLASS_CONFIG, services=services, extra_params=SMALL)
    prediction = fresh.predict([{"id": 99, "data": {"image": data_uri(scene(9)[0])}}])[0]
    chosen = [r for r in prediction["result"] if r["from_name"] == "kind"]
    assert prediction["model_version"] == v1.name
    assert len(chosen) == 1 and chosen[0]["type"] == "choices" and chosen[0]["value"]["choices"][0] in ("One", "Two")

    # only boxes moved: the classes are carried over, not trained again
    tasks[0]["annotations"][0]["result"][0]["value"]["x"] += 1
    second = FineTuner(model, None).run()
    assert second["controls"]["kind"]["trained"] is False and second["controls"]["kind"]["carried_from"] == v1.name


def test_a_choices_control_that_cannot_train_says_why(services, detector_env):
    import pytest

    from backends.core.errors import LabelConfigError
    from backends.detector.trainable import TRAINABLE

    assert "two classes" in TRAINABLE[("Choices", "classify")].refusal(["Yes"])
    multiple = CLASS_CONFIG.replace('name="kind"', 'name="kind" choice="multiple"')
    with pytest.raises(LabelConfigError, match='choice="multiple"'):
        DetectorModel(project_id=6, label_config=multiple, services=services).setup()
    for allowed in ('model_skip="true"', 'model_path="yolo11n-cls.yaml"'):
        DetectorModel(project_id=6, label_config=multiple.replace('choice="multiple"', f'choice="multiple" {allowed}'),
                      services=services).setup()


POSE_CONFIG = ('<View><Image name="image" value="$image"/>'
               '<RectangleLabels name="box" toName="image" model_score_threshold="0"><Label value="Widget"/>'
               '</RectangleLabels><KeyPointLabels name="corners" toName="image" model_score_threshold="0">'
               '<Label value="top left" model_index="0"/><Label value="bottom right" model_index="1"/>'
               '</KeyPointLabels></View>')


def pose_tasks(n):
    """Each scene's boxes, and two keypoints per box: its top-left and bottom-right corners."""
    out = tasks_of(n)
    for task in out:
        result = task["annotations"][0]["result"] = [r for r in task["annotations"][0]["result"]
                                                     if r["from_name"] == "box"]
        for region in list(result):
            v = region["value"]
            for label, x, y in (("top left", v["x"] + 1, v["y"] + 1),
                                ("bottom right", v["x"] + v["width"] - 1, v["y"] + v["height"] - 1)):
                result.append({"from_name": "corners", "to_name": "image", "type": "keypointlabels",
                               "original_width": 160, "original_height": 120,
                               "value": {"x": x, "y": y, "width": 1, "keypointlabels": [label]}})
    return out


def test_keypoints_train_pose_weights_grouped_by_their_boxes(services, detector_env, monkeypatch):
    tasks = pose_tasks(6)
    model, result = train(services, monkeypatch, tasks, POSE_CONFIG, 7)
    v1 = model.registry.current()
    corners = v1.metadata["controls"]["corners"]
    # two keypoints of the config, trained among the base's 17 so that its keypoint branch carries over
    assert result["serving"] and corners["trained"] and corners["task"] == "pose" and corners["kpt_shape"] == [17, 3]
    assert set(corners["metrics"]) >= {"map50", "map50_95", "box"}  # keypoint (OKS) mAP, and the boxes'
    boxes = sum(len(scene(i)[1]) for i in range(6))
    assert corners["report"]["n_objects"] == boxes and corners["report"]["n_points"] == 2 * boxes

    fresh = DetectorModel(project_id=7, label_config=POSE_CONFIG, services=services, extra_params=SMALL)
    plans = {p.control.from_name: p for p in fresh.plans()}
    assert plans["corners"].weights == str(Path(v1.path) / "controls" / "corners.pt")
    prediction = fresh.predict([{"id": 99, "data": {"image": data_uri(scene(9)[0])}}])[0]
    assert prediction["model_version"] == v1.name
    predicted = {r["value"]["keypointlabels"][0] for r in prediction["result"] if r["from_name"] == "corners"}
    assert predicted == {"top left", "bottom right"}  # threshold 0: every object's points come back


OBB_CONFIG = ('<View><Image name="image" value="$image"/>'
              '<RectangleLabels name="ships" toName="image" model_obb="true" model_score_threshold="0">'
              '<Label value="Widget"/></RectangleLabels></View>')


def test_rotated_boxes_train_obb_weights_that_predict_rotations(services, detector_env, monkeypatch):
    tasks = tasks_of(6)
    for task in tasks:  # each scene's boxes, turned by a few degrees about their top-left corner
        for i, region in enumerate(task["annotations"][0]["result"]):
            region.update(from_name="ships", type="rectanglelabels")
            region["value"]["rotation"] = 5.0 * (i + 1)
        task["annotations"][0]["result"] = [r for r in task["annotations"][0]["result"] if "rotation" in r["value"]]
    model, result = train(services, monkeypatch, tasks, OBB_CONFIG, 8)
    v1 = model.registry.current()
    ships = v1.metadata["controls"]["ships"]
    assert result["serving"] and ships["task"] == "obb" and ships["weights"] == "weights.pt"
    assert set(ships["metrics"]) >= {"map50", "map50_95"} and ships["report"]["n_boxes"] > 0

    fresh = DetectorModel(project_id=8, label_config=OBB_CONFIG, services=services, extra_params=SMALL)
    prediction = fresh.predict([{"id": 99, "data": {"image": data_uri(scene(9)[0])}}])[0]
    assert prediction["model_version"] == v1.name and prediction["result"]
    assert all("rotation" in r["value"] and r["value"]["rectanglelabels"] == ["Widget"] for r in prediction["result"])


BRUSH_CONFIG = ('<View><Image name="image" value="$image"/>'
                '<BrushLabels name="mask" toName="image" model_score_threshold="0"><Label value="Widget"/>'
                '</BrushLabels></View>')


def brush_tasks(n):
    """Each scene's widgets painted with the brush, as the segmenter's masks are submitted."""
    import numpy as np

    from backends.core.rle import mask2rle

    out = []
    for i in range(n):
        image, boxes = scene(i)
        result = []
        for x, y, w, h in boxes:
            mask = np.zeros((120, 160), dtype=np.uint8)
            mask[y:y + h, x:x + w] = 255
            result.append({"from_name": "mask", "to_name": "image", "type": "brushlabels", "original_width": 160,
                           "original_height": 120,
                           "value": {"format": "rle", "rle": mask2rle(mask), "brushlabels": ["Widget"]}})
        out.append({"id": i + 1, "data": {"image": data_uri(image)},
                    "annotations": [{"id": i + 1, "result": result, "was_cancelled": False}]})
    return out


def test_brush_masks_train_segment_weights_that_then_predict_masks(services, detector_env, monkeypatch):
    from backends.core.rle import rle2mask

    model = DetectorModel(project_id=9, label_config=BRUSH_CONFIG, services=services, extra_params=SMALL)
    task = {"id": 99, "data": {"image": data_uri(scene(9)[0])}}
    before = model.predict([task])[0]
    assert before["result"] == []  # the base weights do not paint: <BrushLabels> is often the segmenter's
    tasks = brush_tasks(6)
    monkeypatch.setattr(FineTuner, "_fetch_tasks", lambda self: tasks)
    result = FineTuner(model, None).run()
    mask = model.registry.current().metadata["controls"]["mask"]
    assert result["serving"] and mask["task"] == "segment" and mask["report"]["n_objects"] == sum(
        len(scene(i)[1]) for i in range(6))

    after = DetectorModel(project_id=9, label_config=BRUSH_CONFIG, services=services, extra_params=SMALL).predict([task])[0]
    assert after["model_version"] == result["version"] and after["result"]
    for region in after["result"]:
        assert region["type"] == "brushlabels" and rle2mask(region["value"]["rle"], 120, 160).any()


PEOPLE_CONFIG = CONFIG.replace("</View>", '<RectangleLabels name="people" toName="image" model_score_threshold="0">'
                                          '<Label value="Person"/></RectangleLabels></View>')


def test_a_store_from_before_controls_were_listed_serves_and_trains_on(services, detector_env, monkeypatch):
    """A version as the one-box-control code published it (``names``, ``from_name``, ``metrics``,
    weights.pt; no ``controls``), trained on the *second* box control, keeps serving that control,
    and a job of today's code starts from it without losing it."""
    # bases whose class is the project's, so the controls the legacy version does not serve predict too
    monkeypatch.setenv("DETECTOR_BASE_WEIGHTS", str(one_class_checkpoint("detect", detector_env, {0: "Widget"})))
    monkeypatch.setenv("DETECTOR_SEG_WEIGHTS", str(one_class_checkpoint("segment", detector_env, {0: "Widget"})))
    detector_model.env_settings.cache_clear()
    model = DetectorModel(project_id=5, label_config=PEOPLE_CONFIG, services=services, extra_params=SMALL)
    person = one_class_checkpoint("detect", detector_env / "legacy", {0: "Person"})  # (named by kind and size)
    with model.registry.stage() as staged:
        (Path(staged.path) / "weights.pt").write_bytes(person.read_bytes())
        legacy = staged.publish({"names": ["Person"], "from_name": "people", "decision": "publish=always",
                                 "metrics": {"map50": 0.1, "map50_95": 0.05}, "current_metrics": None,
                                 "n_annotations": 6, "start_weights": "yolo11n.pt", "job": 1})
    plans = {p.control.from_name: p for p in model.plans()}
    assert plans["people"].version == legacy.name and plans["box"].version is None
    prediction = model.predict([{"id": 99, "data": {"image": data_uri(scene(9)[0])}}])[0]
    assert prediction["model_version"] == legacy.name
    assert {r["from_name"] for r in prediction["result"]} >= {"people"}

    _, result = train(services, monkeypatch, tasks_of(6), config=PEOPLE_CONFIG, project=5)
    new = model.registry.current()
    assert result["serving"] and new.name != legacy.name
    controls = new.metadata["controls"]
    assert controls["box"]["trained"] and controls["outline"]["trained"]
    people = controls["people"]  # no region of its own, only negatives: the legacy weights serve it on
    assert people["trained"] is False and people["carried_from"] == legacy.name
    assert "no usable RectangleLabels region of 'people'" in result["not_trained"]["people"]
    assert filecmp.cmp(Path(new.path) / people["weights"], person, shallow=False)
    assert people["weights"] != controls["box"]["weights"]
    served = {p.control.from_name: p.weights for p in DetectorModel(project_id=5, label_config=PEOPLE_CONFIG,
                                                                      services=services).plans()}
    assert served["people"] == str(Path(new.path) / people["weights"])


BAD_CONFIG = ('<View><Image name="image" value="$image"/>'
              '<RectangleLabels name="box" toName="image" model_score_threshold="0"><Label value="Widget"/>'
              '</RectangleLabels><PolygonLabels name="outline" toName="image"><Label value="Widget"/></PolygonLabels>'
              '<BrushLabels name="paint" toName="image"><Label value="Widget"/></BrushLabels>'
              '<KeyPointLabels name="corners" toName="image"><Label value="top left" model_index="0"/>'
              '<Label value="bottom right" model_index="1"/><Label value="centre"/></KeyPointLabels>'
              '<Choices name="only" toName="image"><Choice value="Yes"/></Choices></View>')


def bad_input_tasks(n):
    """Good boxes, outlines, masks and corners on every scene; and on each, every kind of bad
    input a real project accumulates: a two-point polygon, a brush RLE that does not decode, a
    keypoint whose label has no model_index, regions of a label since removed from the config,
    and a choice of the config's only class."""
    from backends.core.rle import mask2rle

    out = pose_tasks(n)
    for task in out:
        result = task["annotations"][0]["result"]
        for x, y, w, h in scene(task["id"] - 1)[1]:
            mask = np.zeros((120, 160), dtype=np.uint8)
            mask[y:y + h, x:x + w] = 255
            result.append({"from_name": "paint", "to_name": "image", "type": "brushlabels", "original_width": 160,
                           "original_height": 120, "value": {"format": "rle", "rle": mask2rle(mask),
                                                             "brushlabels": ["Widget"]}})
        result += regions(scene(task["id"] - 1)[1], ("outline",))
        region = {"to_name": "image", "original_width": 160, "original_height": 120}
        result += [
            {**region, "from_name": "outline", "type": "polygonlabels",
             "value": {"points": [[1, 1], [20, 20]], "polygonlabels": ["Widget"]}},
            {**region, "from_name": "paint", "type": "brushlabels",
             "value": {"format": "rle", "rle": [7, 7, 7], "brushlabels": ["Widget"]}},
            {**region, "from_name": "corners", "type": "keypointlabels",
             "value": {"x": 50, "y": 50, "width": 1, "keypointlabels": ["centre"]}},
            {**region, "from_name": "box", "type": "rectanglelabels",
             "value": {"x": 5, "y": 5, "width": 10, "height": 10, "rotation": 0, "rectanglelabels": ["Gadget"]}},
            {**region, "from_name": "outline", "type": "polygonlabels",
             "value": {"points": [[1, 1], [20, 1], [20, 20]], "polygonlabels": ["Gadget"]}},
            {"from_name": "only", "to_name": "image", "type": "choices", "value": {"choices": ["Yes"]}}]
    return out


def test_bad_input_is_dropped_counted_and_named_and_the_job_still_publishes(services, detector_env, monkeypatch):
    monkeypatch.setenv("DETECTOR_SEG_WEIGHTS", str(one_class_checkpoint("segment", detector_env, {0: "Widget"})))
    detector_model.env_settings.cache_clear()
    n = 6
    model, result = train(services, monkeypatch, bad_input_tasks(n), BAD_CONFIG, 11)
    assert result["serving"], result
    controls = model.registry.current().metadata["controls"]
    assert {name for name, c in controls.items() if c["trained"]} == {"box", "outline", "paint", "corners"}
    assert "two classes" in result["not_trained"]["only"]  # one class: nothing to classify, and it says so
    assert controls["box"]["report"]["dropped_unknown_label"] == n
    assert controls["outline"]["report"]["dropped"] == {"polygon with fewer than 3 points": n, "unknown label": n}
    (undecodable,) = controls["paint"]["report"]["dropped"]
    assert undecodable.startswith("undecodable brush mask") and controls["paint"]["report"]["dropped"][undecodable] == n
    assert controls["corners"]["report"]["dropped"] == {"label without model_index": n}
    # every annotation's good regions were kept: nothing else was lost with the bad ones
    objects = sum(len(scene(i)[1]) for i in range(n))
    assert controls["box"]["report"]["n_boxes"] == objects
    assert controls["outline"]["report"]["n_objects"] == controls["paint"]["report"]["n_objects"] == objects
    assert controls["corners"]["report"]["n_objects"] == objects
