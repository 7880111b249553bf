"""Each control turns a real ultralytics ``Results`` into regions: labels by class name,
``predicted_values`` and ``model_index``, checked region by region against the raw result."""

from __future__ import annotations

import io
import math
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st
from label_studio_sdk.label_interface import LabelInterface
from PIL import Image

from backends.detector.controls import CONTROL_MODELS
from backends.detector.weights import load_model
from tests.detector.conftest import one_class_checkpoint, scene


def control(config: str, tag: str):
    (found,) = [c for c in LabelInterface(config).controls if c.tag == tag]
    return CONTROL_MODELS[tag](found, 0.0)


def raw_result(path, seed=4):
    image = Image.open(io.BytesIO(scene(seed)[0])).convert("RGB")
    return load_model(str(path)).model.predict(image, imgsz=160, conf=0.0, max_det=40, verbose=False)[0]


def test_boxes_get_the_label_their_class_maps_to(detector_env):
    names = {0: "person", 1: "car", 2: "truck", 3: "dog"}
    path = one_class_checkpoint("detect", detector_env, names)
    config = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
              '<Label value="Person"/><Label value="vehicle" predicted_values="car,truck"/></RectangleLabels></View>')
    boxes = control(config, "RectangleLabels")
    assert boxes.label_map(names) == {0: "Person", 1: "vehicle", 2: "vehicle"}  # dog: no label, dropped
    result = raw_result(path)
    expected = [({0: "Person", 1: "vehicle", 2: "vehicle"}[int(c)], [round(100 * v, 6) for v in xyxyn])
                for c, xyxyn in zip(result.boxes.cls.tolist(), result.boxes.xyxyn.tolist()) if int(c) != 3]
    regions = boxes.regions(result, names, 160, 120)
    got = [(r["value"]["rectanglelabels"][0], [round(v, 6) for v in (
        r["value"]["x"], r["value"]["y"], r["value"]["x"] + r["value"]["width"], r["value"]["y"] + r["value"]["height"])])
        for r in regions]
    assert expected and got == expected


def test_keypoints_are_named_by_model_index(detector_env):
    path = one_class_checkpoint("pose", detector_env, {0: "person"})
    config = ('<View><Image name="image" value="$image"/><KeyPointLabels name="kp" toName="image">'
              '<Label value="nose" model_index="0"/><Label value="right_ankle" model_index="16"/></KeyPointLabels></View>')
    points = control(config, "KeyPointLabels")
    result = raw_result(path)
    expected = [(label, round(100 * xy[index][0], 6), round(100 * xy[index][1], 6))
                for xy in result.keypoints.xyn.tolist() for index, label in ((0, "nose"), (16, "right_ankle"))
                if xy[index] != [0.0, 0.0]]
    got = [(r["value"]["keypointlabels"][0], round(r["value"]["x"], 6), round(r["value"]["y"], 6))
           for r in points.regions(result, {0: "person"}, 160, 120)]
    assert expected and got == expected


def rotated_control():
    from backends.detector.controls import control_model_for

    config = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image" model_obb="true">'
              '<Label value="Ship"/></RectangleLabels></View>')
    (found,) = LabelInterface(config).controls
    return control_model_for(found)(found, 0.0)


def test_rotated_boxes_land_on_the_corners_ultralytics_found(detector_env):
    from backends.detector.controls.rotated import ls_rotated_box, ls_takes
    from backends.detector.dataset import rect_corners

    path = one_class_checkpoint("obb", detector_env, {0: "ship"})
    rotated = rotated_control()
    assert rotated.yolo_task == "obb"
    result = raw_result(path)
    regions = rotated.regions(result, {0: "ship"}, 160, 120)
    taken = [(cx, cy, w, h, r) for cx, cy, w, h, r in result.obb.xywhr.tolist()
             if ls_takes(ls_rotated_box(cx, cy, w, h, r, 160, 120))]
    found_by_ultralytics = {tuple(sorted((round(x, 4), round(y, 4)) for x, y in c))
                            for c in result.obb.xyxyxyxyn.tolist()}
    assert regions  # random weights: some as found, the others fitted onto the image
    exact = [tuple(sorted((round(x, 4), round(y, 4)) for x, y in rect_corners(region["value"], 160, 120)))
             for region in regions]
    assert sum(corners in found_by_ultralytics for corners in exact) == len(taken)  # as found, where LS takes them
    for region in regions:
        assert 0 <= region["value"]["rotation"] < 360 and region["value"]["width"] <= 100


def test_a_box_past_the_images_edge_comes_back_fitted_onto_it():
    """ultralytics does not clip rotated boxes: one wider than the image, and one turned 180°
    about a corner past the right edge, are boxes Label Studio refuses; both come back on the image."""
    import torch

    from backends.detector.dataset import rect_corners

    boxes = torch.tensor([[100.0, 60.0, 200.0, 30.0, 0.0], [150.0, 60.0, 40.0, 30.0, math.pi], [80.0, 60.0, 40.0, 20.0, 0.3]])
    result = SimpleNamespace(orig_shape=(120, 160), obb=SimpleNamespace(
        xywhr=boxes, conf=torch.tensor([0.9, 0.8, 0.7]), cls=torch.zeros(3)))
    regions = rotated_control().regions(result, {0: "ship"}, 160, 120)
    assert len(regions) == 3
    wide, turned, inside = (r["value"] for r in regions)
    assert (round(wide["x"], 4), round(wide["width"], 4), round(wide["height"], 4)) == (0, 100, 25)  # clipped
    assert (round(turned["x"], 4), round(turned["width"], 4), round(turned["rotation"], 3)) == (100, 18.75, 180)
    assert math.isclose(inside["width"], 25) and math.isclose(inside["height"], 100 * 20 / 120)  # untouched
    for value in (wide, turned):
        assert all(-1e-6 <= x <= 1 + 1e-6 and -1e-6 <= y <= 1 + 1e-6 for x, y in rect_corners(value, 160, 120))


@settings(max_examples=300, deadline=None)
@given(cx=st.floats(-50, 250), cy=st.floats(-50, 200), w=st.floats(0.5, 400), h=st.floats(0.5, 400),
       r=st.floats(-4, 4))
def test_every_rotated_box_is_one_label_studio_takes_and_the_model_s_own_where_it_can_be(cx, cy, w, h, r):
    from backends.detector.controls.rotated import ls_rotated_box, ls_takes, ls_value
    from backends.detector.dataset import rect_corners

    predicted = ls_rotated_box(cx, cy, w, h, r, 160, 120)
    value = ls_value((cx, cy, w, h), r, 160, 120)
    if ls_takes(predicted):
        assert value == predicted  # the model's own box wherever Label Studio takes it
        return
    if value is None:
        return  # nothing of it on the image, or a sliver under a pixel
    assert ls_takes(value) and math.isclose(value["rotation"], predicted["rotation"])
    corners = [(160 * x, 120 * y) for x, y in rect_corners(value, 160, 120)]
    assert all(-1e-6 <= x <= 160 + 1e-6 and -1e-6 <= y <= 120 + 1e-6 for x, y in corners)  # on the image
    # and inside the predicted box: in its frame, every corner lies within its half-sizes
    cos, sin = math.cos(r), math.sin(r)
    for x, y in corners:
        along, across = (x - cx) * cos + (y - cy) * sin, -(x - cx) * sin + (y - cy) * cos
        assert abs(along) <= w / 2 + 1e-6 * max(w, 160) and abs(across) <= h / 2 + 1e-6 * max(h, 160)
    # fitted tight: a corner touches an edge of the image, or a side is as long as the image's
    tight = any(min(x, 160 - x, y, 120 - y) < 1e-3 for x, y in corners)
    assert tight or math.isclose(value["width"], 100, rel_tol=1e-6) or math.isclose(value["height"], 100, rel_tol=1e-6)


def test_brush_masks_are_rle_of_the_task_image_inside_each_objects_box(detector_env):
    from backends.core.rle import rle2mask

    path = one_class_checkpoint("segment", detector_env, {0: "cat"})
    config = ('<View><Image name="image" value="$image"/><BrushLabels name="mask" toName="image">'
              '<Label value="Cat"/></BrushLabels></View>')
    brush = control(config, "BrushLabels")
    result = raw_result(path)
    regions = brush.regions(result, {0: "cat"}, 320, 240)  # the task image: twice the inferred copy
    assert regions and len(regions) <= len(result.boxes)
    boxes = result.boxes.xyxyn.tolist()
    for region in regions:
        mask = rle2mask(region["value"]["rle"], 240, 320)
        ys, xs = mask.nonzero()
        assert region["value"]["brushlabels"] == ["Cat"] and region["type"] == "brushlabels" and len(xs)
        x1, y1, x2, y2 = xs.min() / 320, ys.min() / 240, (xs.max() + 1) / 320, (ys.max() + 1) / 240
        assert any(x1 >= bx1 - 0.02 and y1 >= by1 - 0.02 and x2 <= bx2 + 0.02 and y2 <= by2 + 0.02
                   for bx1, by1, bx2, by2 in boxes), "a mask outside every box"
