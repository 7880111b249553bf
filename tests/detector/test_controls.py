"""Each control turns a real ultralytics ``Results`` into regions: labels by class name,
``predicted_values`` and ``model_index``, checked region by region against the raw result."""

from __future__ import annotations

import io
import math

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


def test_rotated_boxes_land_on_the_corners_ultralytics_found(detector_env):
    from backends.detector.controls import control_model_for
    from backends.detector.dataset import rect_corners

    path = one_class_checkpoint("obb", detector_env, {0: "ship"})
    config = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image" model_obb="true">'
              '<Label value="Ship"/></RectangleLabels></View>')
    (found,) = LabelInterface(config).controls
    rotated = control_model_for(found)(found, 0.0)
    assert rotated.yolo_task == "obb"
    result = raw_result(path)
    regions = rotated.regions(result, {0: "ship"}, 160, 120)
    by_centre = {(round(cx, 3), round(cy, 3), round(r, 5)): (w, h) for cx, cy, w, h, r in result.obb.xywhr.tolist()}
    assert regions
    for region in regions:
        corners = [(160 * x, 120 * y) for x, y in rect_corners(region["value"], 160, 120)]
        cx, cy = sum(x for x, _ in corners) / 4, sum(y for _, y in corners) / 4
        r = math.radians(region["value"]["rotation"])
        key = next(k for k in by_centre if abs(k[0] - cx) < 1e-3 and abs(k[1] - cy) < 1e-3
                   and abs(math.sin(k[2] - r)) < 1e-4)
        w, h = by_centre[key]  # ultralytics' centre and angle, its size or that size shrunk to fit
        assert region["value"]["width"] <= 100 * w / 160 + 1e-6
        assert abs(region["value"]["width"] / region["value"]["height"] - (w / 160) / (h / 120)) < 1e-6
        assert all(-1e-6 <= x <= 160 + 1e-6 and -1e-6 <= y <= 120 + 1e-6 for x, y in corners)
        assert 0 <= region["value"]["rotation"] < 360


@settings(max_examples=300, deadline=None)
@given(cx=st.floats(-50, 250), cy=st.floats(-50, 200), w=st.floats(0.5, 400), h=st.floats(0.5, 400),
       r=st.floats(-4, 4))
def test_a_rotated_box_fits_the_image_or_is_left_out(cx, cy, w, h, r):
    from backends.detector.controls.rotated import fit_inside, ls_rotated_box
    from backends.detector.dataset import rect_corners

    fitted = fit_inside(cx, cy, w, h, r, 160, 120)
    if not (0 < cx < 160 and 0 < cy < 120):
        assert fitted is None or cx in (0, 160) or cy in (0, 120)
        return
    assert fitted is not None
    fw, fh = fitted
    assert fw <= w and fh <= h and abs(fw * h - fh * w) <= 1e-6 * w * h  # shrunk, never grown, shape kept
    value = ls_rotated_box(cx, cy, fw, fh, r, 160, 120)
    assert all(0 <= value[k] <= 100 for k in ("x", "y", "width", "height")), value
    corners = rect_corners(value, 160, 120)
    assert all(-1e-6 <= x <= 1 + 1e-6 and -1e-6 <= y <= 1 + 1e-6 for x, y in corners)
    inside = all(0 <= x <= 1 and 0 <= y <= 1 for x, y in rect_corners(ls_rotated_box(cx, cy, w, h, r, 160, 120),
                                                                         160, 120))
    if inside and w <= 160 and h <= 120:
        assert math.isclose(fw, w, rel_tol=1e-6)  # a box already on the image keeps its size


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
