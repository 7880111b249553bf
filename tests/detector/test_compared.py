"""What corrections compares (detector/compared.py): a pre-label and the annotation it stands for
become the same shape, so a perfect pre-label of every kind costs no edit."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from backends.core.rle import mask2rle
from backends.detector.class_dataset import ClassSample
from backends.detector.compared import predicted_shape, truth_shapes
from backends.detector.corrections import image_corrections
from backends.detector.dataset import Sample, rect_to_obb
from backends.detector.pose_dataset import PoseSample
from backends.detector.segment_dataset import SegmentSample

W, H = 200, 100


def result(kind, value):
    return {"type": kind, "original_width": W, "original_height": H, "value": value}


def data(task, names=("Cat",), control=None):
    return SimpleNamespace(task=task, names=list(names), control=control)


def test_a_box_prelabel_matches_its_annotation():
    box = result("rectanglelabels", {"x": 10, "y": 20, "width": 30, "height": 40, "rotation": 0,
                                     "rectanglelabels": ["Cat"]})
    truth = truth_shapes(Sample(1, "", [(0, 0.25, 0.4, 0.3, 0.4)]), data("detect"))
    assert image_corrections([predicted_shape(box, "detect")], truth).edits == 0


def test_a_rotated_prelabel_at_the_wrong_angle_is_an_adjust():
    value = {"x": 30, "y": 20, "width": 30, "height": 40, "rotation": 30, "rectanglelabels": ["Cat"]}
    truth = truth_shapes(Sample(1, "", [(0, *rect_to_obb(value, W, H))]), data("obb"))
    assert image_corrections([predicted_shape(result("rectanglelabels", value), "obb")], truth).edits == 0
    turned = {**value, "rotation": 50}
    assert image_corrections([predicted_shape(result("rectanglelabels", turned), "obb")], truth).adjusts == 1


def test_polygon_and_brush_prelabels_match_the_outline_they_trace():
    points = [(0.1, 0.2), (0.5, 0.2), (0.5, 0.6), (0.1, 0.6)]
    truth = truth_shapes(SegmentSample(1, "", [(0, points)]), data("segment"))
    polygon = result("polygonlabels", {"points": [[100 * x, 100 * y] for x, y in points], "polygonlabels": ["Cat"]})
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[20:60, 20:100] = 255
    brush = result("brushlabels", {"format": "rle", "rle": mask2rle(mask), "brushlabels": ["Cat"]})
    for prelabel in (polygon, brush):
        assert image_corrections([predicted_shape(prelabel, "segment")], truth).edits == 0


def test_keypoints_are_named_by_the_labels_of_their_index_and_absent_ones_are_not_regions():
    control = SimpleNamespace(index_to_label={0: "nose", 1: "tail"})
    truth = truth_shapes(PoseSample(1, "", [((0.5, 0.5, 0.4, 0.4), [(0.4, 0.5), None])]), data("pose", control=control))
    assert [t.label for t in truth] == ["nose"]
    nose = result("keypointlabels", {"x": 40, "y": 50, "width": 1, "keypointlabels": ["nose"]})
    tail = result("keypointlabels", {"x": 40, "y": 50, "width": 1, "keypointlabels": ["tail"]})
    assert image_corrections([predicted_shape(nose, "pose")], truth).edits == 0
    assert image_corrections([predicted_shape(tail, "pose")], truth).relabels == 1


def test_a_class_prelabel_is_right_or_a_relabel():
    truth = truth_shapes(ClassSample(1, "", 1), data("classify", ("One", "Two")))
    assert image_corrections([predicted_shape(result("choices", {"choices": ["Two"]}), "classify")], truth).edits == 0
    assert image_corrections([predicted_shape(result("choices", {"choices": ["One"]}), "classify")], truth).relabels == 1


def test_an_unknown_result_type_is_named():
    with pytest.raises(ValueError, match="textarea"):
        predicted_shape(result("textarea", {"text": ["hi"]}), "detect")
