"""KeyPointLabels -> a YOLO pose dataset (detector/pose_dataset.py): points grouped into objects by
the boxes that hold them, placed in the skeleton by model_index, every dropped point counted."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from backends.detector.dataset import write_dataset
from backends.detector.pose_dataset import PoseReport, PoseSample, pose_samples

INDEX = {"nose": 0, "tail": 2}  # K = 3: keypoint 1 has no label in this config
CONFIG_LABELS = ["nose", "whisker", "tail"]  # whisker: a label without model_index


def point(label, x, y, from_name="pts"):
    return {"from_name": from_name, "to_name": "image", "type": "keypointlabels",
            "value": {"x": x, "y": y, "width": 1, "keypointlabels": [label]}}


def box(x, y, w, h):
    return {"from_name": "box", "to_name": "image", "type": "rectanglelabels", "original_width": 100,
            "original_height": 100, "value": {"x": x, "y": y, "width": w, "height": h, "rectanglelabels": ["Cat"]}}


def task(i, result):
    return {"id": i, "data": {"image": f"http://x/{i}.png"}, "annotations": [{"id": i, "result": result}]}


def samples(*tasks):
    report = PoseReport()
    return pose_samples(tasks, "pts", "image", "image", INDEX, report, CONFIG_LABELS), report


def test_points_go_to_the_smallest_box_that_holds_them():
    found, report = samples(task(1, [box(0, 0, 100, 100), box(10, 10, 20, 20), point("nose", 15, 15),
                                     point("tail", 50, 50), point("nose", 60, 60), box(80, 80, 10, 10)]))
    (sample,) = found
    inner, outer = sorted(sample.objects, key=lambda o: o[0][2])
    assert inner[0] == pytest.approx((0.2, 0.2, 0.2, 0.2)) and inner[1] == [(0.15, 0.15), None, None]
    assert outer[1] == [(0.6, 0.6), None, (0.5, 0.5)]  # the big box; the empty small box is no object
    assert report.n_objects == 2 and report.n_points == 3 and not report.dropped


def test_with_no_box_the_image_is_one_object_boxed_by_its_points():
    (sample,), _ = samples(task(1, [point("nose", 20, 40), point("tail", 60, 40)]))
    (object_box, points), = sample.objects
    assert points == [(0.2, 0.4), None, (0.6, 0.4)]
    cx, cy, w, h = object_box
    assert (round(cx, 6), round(cy, 6), round(w, 6), round(h, 6)) == (0.4, 0.4, 0.48, 0.02)
    assert sample.label_lines().startswith("0 0.400000 0.400000 0.480000 0.020000 0.200000 0.400000 2 0 0 0 ")


def test_every_point_that_fits_no_object_is_dropped_and_counted():
    found, report = samples(
        task(1, [box(0, 0, 10, 10), point("nose", 5, 5), point("nose", 6, 6), point("tail", 50, 50),
                 point("ear", 5, 5), point("whisker", 5, 5), point("nose", 5, 5, from_name="other"),
                 {**point("nose", 5, 5), "value": {"x": 5, "y": 5, "width": 1, "keypointlabels": []}}]),
        task(2, [box(0, 0, 10, 10)]),  # no points: not a sample, not a negative
        task(3, [box(0, 0, 10, 10), point("tail", 90, 90)]))  # every point outside: skipped, said why
    assert [s.task_id for s in found] == [1]
    assert report.dropped == {"second point of one keypoint": 1, "outside every box": 2, "label without model_index": 1,
                              "label not in the config": 1, "point without label": 1}
    assert report.n_unannotated == 1 and report.skipped_tasks == {3: "no keypoint inside a box"}


@given(st.lists(st.tuples(st.sampled_from(list(INDEX)), st.floats(-10, 110), st.floats(-10, 110)), min_size=1,
                max_size=12))
def test_any_loose_points_make_one_object_inside_the_image(points):
    found, report = samples(task(1, [point(label, x, y) for label, x, y in points]))
    (object_box, placed), = found[0].objects
    cx, cy, w, h = object_box
    assert 0 <= cx - w / 2 and cx + w / 2 <= 1 + 1e-9 and 0 <= cy - h / 2 and cy + h / 2 <= 1 + 1e-9 and w > 0 and h > 0
    assert all(abs(p[0] - cx) <= w / 2 + 1e-9 and abs(p[1] - cy) <= h / 2 + 1e-9 for p in placed if p)
    assert report.n_points + report.dropped["second point of one keypoint"] == len(points)


def test_the_data_yaml_gives_ultralytics_the_skeletons_shape(tmp_path):
    from PIL import Image

    sample = PoseSample(1, "u", [((0.5, 0.5, 0.2, 0.2), [(0.5, 0.5), None, (0.55, 0.45)])])
    path = write_dataset(tmp_path, [sample], {1: Image.new("RGB", (8, 8))}, ["object"], {1}, {1}, {"kpt_shape": [3, 3]})
    assert yaml.safe_load(path.read_text())["kpt_shape"] == [3, 3]
    line = (tmp_path / "labels" / "train" / "1.txt").read_text().split()
    assert len(line) == 5 + 3 * 3 and line[8:11] == ["0", "0", "0"]
