import math

import pytest

from backends.detector.dataset import BuildReport, pick_annotation, rect_to_yolo, samples_from_tasks, split


def test_rect_to_yolo_plain_rotated_and_clipped():
    assert rect_to_yolo({"x": 10, "y": 20, "width": 30, "height": 40}) == pytest.approx((0.25, 0.4, 0.3, 0.4))
    # rotated 90 degrees about the top-left corner: the box swings to the left of x
    cx, cy, w, h = rect_to_yolo({"x": 50, "y": 10, "width": 20, "height": 10, "rotation": 90})
    assert (cx, cy, w, h) == pytest.approx((0.45, 0.2, 0.1, 0.2))
    assert rect_to_yolo({"x": 90, "y": 90, "width": 30, "height": 30}) == pytest.approx((0.95, 0.95, 0.1, 0.1))
    assert rect_to_yolo({"x": 120, "y": 10, "width": 10, "height": 10}) is None
    assert rect_to_yolo({"x": 10, "y": 10, "width": 0, "height": 10}) is None


def test_a_rotated_box_turns_in_pixels_on_a_non_square_image():
    # 200x100 px image, a box 40x20 px at (100, 10) px turned 90 degrees: it spans x 80..100 px and y 10..50 px
    value = {"x": 50, "y": 10, "width": 20, "height": 20, "rotation": 90}
    assert rect_to_yolo(value, 200, 100) == pytest.approx((0.45, 0.3, 0.1, 0.4))
    # 30 degrees on 16:9, against the pixel geometry worked out by hand
    value = {"x": 20, "y": 30, "width": 25, "height": 20, "rotation": 30}
    w, h, c, s = 0.25 * 1600, 0.2 * 900, math.cos(math.radians(30)), math.sin(math.radians(30))
    xs = [320 + dx * c - dy * s for dx, dy in ((0, 0), (w, 0), (w, h), (0, h))]
    ys = [270 + dx * s + dy * c for dx, dy in ((0, 0), (w, 0), (w, h), (0, h))]
    expected = ((min(xs) + max(xs)) / 3200, (min(ys) + max(ys)) / 1800, (max(xs) - min(xs)) / 1600,
                (max(ys) - min(ys)) / 900)
    assert rect_to_yolo(value, 1600, 900) == pytest.approx(expected)


def test_pick_annotation_prefers_ground_truth_then_latest_and_ignores_skips():
    task = {"annotations": [
        {"id": 1, "updated_at": "2026-01-02", "result": []},
        {"id": 2, "updated_at": "2026-01-03", "was_cancelled": True},
        {"id": 3, "updated_at": "2026-01-01", "ground_truth": True},
    ]}
    assert pick_annotation(task)["id"] == 3
    task["annotations"][2]["ground_truth"] = False
    assert pick_annotation(task)["id"] == 1
    assert pick_annotation({"annotations": [{"id": 4, "was_cancelled": True}]}) is None


def test_samples_count_negatives_and_dropped_boxes():
    def box(label, x):
        return {"from_name": "label", "type": "rectanglelabels",
                "value": {"x": x, "y": 10, "width": 20, "height": 20, "rectanglelabels": [label]}}

    tasks = [
        {"id": 1, "data": {"image": "a"}, "annotations": [{"id": 1, "result": [box("Cat", 10), box("Cat", 150)]}]},
        {"id": 2, "data": {"image": "b"}, "annotations": [{"id": 2, "result": []}]},
        {"id": 3, "data": {"image": "c"}, "annotations": [{"id": 3, "result": [box("Zebra", 10)]}]},
        {"id": 4, "data": {"image": "d"}, "annotations": []},
    ]
    report = BuildReport()
    samples = samples_from_tasks(tasks, "label", "image", "image", {"Cat": 0, "Dog": 1}, report)
    assert [len(s.boxes) for s in samples] == [1, 0, 0]
    assert (report.n_annotated, report.n_negatives, report.dropped_outside, report.dropped_unknown_label) == (3, 2, 1, 1)


def test_split_is_deterministic_and_never_empty():
    ids = list(range(1, 101))
    train, val = split(ids, 0.2)
    assert split(list(reversed(ids)), 0.2) == (train, val)
    assert train.isdisjoint(val) and train | val == set(ids) and 10 < len(val) < 30
    grown_train, grown_val = split(ids + list(range(101, 201)), 0.2)
    assert val <= grown_val, "a task never changes side as the project grows"
    assert split([7], 0.2) == ({7}, {7})
    assert split([7, 8], 0.01)[1], "at least one val image"


def test_objects_outlined_with_another_region_type_are_not_taught_as_background():
    polygon = {"from_name": "outline", "to_name": "image", "type": "polygonlabels",
               "value": {"points": [[10, 10], [30, 10], [30, 30]], "polygonlabels": ["Cat"]}}
    other_image = {**polygon, "to_name": "thumbnail"}
    not_a_class = {**polygon, "value": {**polygon["value"], "polygonlabels": ["Zebra"]}}
    tasks = [
        {"id": 1, "data": {"image": "a"}, "annotations": [{"id": 1, "result": [polygon]}]},
        {"id": 2, "data": {"image": "b"}, "annotations": [{"id": 2, "result": [other_image, not_a_class]}]},
    ]
    report = BuildReport()
    samples = samples_from_tasks(tasks, "label", "image", "image", {"Cat": 0}, report)
    assert [s.task_id for s in samples] == [2] and report.n_negatives == 1
    assert "polygonlabels" in report.skipped_tasks[1]


def test_rotated_boxes_keep_their_four_corners_for_obb():
    from backends.detector.dataset import rect_to_obb

    plain = {"x": 10, "y": 20, "width": 30, "height": 40, "rotation": 0}
    assert rect_to_obb(plain) == pytest.approx((0.1, 0.2, 0.4, 0.2, 0.4, 0.6, 0.1, 0.6))
    # 90 degrees clockwise about the top-left corner, in pixels of a 200 x 100 image
    turned = rect_to_obb({"x": 50, "y": 10, "width": 10, "height": 20, "rotation": 90}, 200, 100)
    assert turned == pytest.approx((0.5, 0.1, 0.5, 0.3, 0.4, 0.3, 0.4, 0.1))
    assert min(rect_to_obb({"x": 90, "y": 0, "width": 20, "height": 10, "rotation": 30}, 100, 100)) >= 0
    assert max(rect_to_obb({"x": 90, "y": 0, "width": 20, "height": 10, "rotation": 30}, 100, 100)) <= 1
    assert rect_to_obb({"x": 120, "y": 0, "width": 10, "height": 10, "rotation": 0}) is None
