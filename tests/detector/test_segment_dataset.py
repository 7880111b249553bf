"""Polygons and brush masks from Label Studio annotations to YOLO segment labels
(detector/segment_dataset.py): what is kept, what is dropped and counted, and that a brush mask's
polygon covers the mask."""

from __future__ import annotations

import numpy as np
import pytest

from backends.core.rle import mask2rle
from backends.detector.dataset import write_dataset
from backends.detector.segment_dataset import SegmentReport, brush_polygon, polygon_points, segment_samples

CLASSES = {"Cat": 0, "Dog": 1}


def polygon(points, label="Cat", from_name="poly"):
    return {"from_name": from_name, "to_name": "image", "type": "polygonlabels",
            "value": {"points": points, "polygonlabels": [label]}, "original_width": 100, "original_height": 50}


def brush(mask, label="Cat", from_name="poly"):
    return {"from_name": from_name, "to_name": "image", "type": "brushlabels",
            "value": {"format": "rle", "rle": mask2rle(mask.astype(np.uint8) * 255), "brushlabels": [label]},
            "original_width": mask.shape[1], "original_height": mask.shape[0]}


def task(task_id, result):
    return {"id": task_id, "data": {"image": f"http://x/{task_id}.png"}, "annotations": [{"id": task_id, "result": result}]}


def test_polygons_are_kept_clipped_and_degenerate_ones_dropped():
    assert polygon_points({"points": [[10, 10], [50, 10], [50, 120]]}) == [(0.1, 0.1), (0.5, 0.1), (0.5, 1.0)]
    for bad in ([[10, 10], [50, 10]], [[10, 10], [10, 10], [10, 10]], [[1, 1], [2, 2], [3, 3]], [["a", 1]] * 3, [5] * 3):
        assert polygon_points({"points": bad}) is None, bad


def polygon_area(points, width, height):
    xs, ys = np.array([p[0] for p in points]) * width, np.array([p[1] for p in points]) * height
    return abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))) / 2


def test_a_brush_mask_becomes_one_polygon_of_all_its_islands():
    mask = np.zeros((60, 80), bool)
    mask[5:25, 5:30] = True  # 500 px
    mask[40:55, 50:75] = True  # 375 px, a second island of the same object
    mask[58, 2] = True  # a stray pixel: noise
    points = brush_polygon(brush(mask)["value"], 60, 80)
    xs, ys = [p[0] * 80 for p in points], [p[1] * 60 for p in points]
    assert min(xs) < 6 and max(xs) > 73 and min(ys) < 6 and max(ys) > 53, "both islands are in the polygon"
    # the hairline joining them adds no area: the polygon covers the two islands' outlines
    assert abs(polygon_area(points, 80, 60) - (19 * 24 + 14 * 24)) < 40


def test_brush_holes_are_filled():
    ring = np.zeros((40, 40), bool)
    ring[5:35, 5:35] = True
    ring[15:25, 15:25] = False
    points = brush_polygon(brush(ring)["value"], 40, 40)
    assert abs(polygon_area(points, 40, 40) - 29 * 29) < 5


def test_samples_count_every_drop_and_keep_negatives():
    mask = np.zeros((50, 100), bool)
    mask[10:30, 20:60] = True
    broken = brush(mask)
    broken["value"]["rle"] = broken["value"]["rle"][:10]
    wrong_size = brush(mask)
    wrong_size["original_height"] = 51
    tasks = [
        task(1, [polygon([[10, 10], [50, 10], [50, 40]]), polygon([[1, 1], [2, 2]]), polygon([[1, 1], [9, 1], [9, 9]], "Gone")]),
        task(2, [brush(mask, "Dog"), broken, wrong_size]),
        task(3, []),  # nothing on the image: a negative
        task(4, [{"from_name": "box", "to_name": "image", "type": "rectanglelabels",
                  "value": {"x": 1, "y": 1, "width": 5, "height": 5, "rectanglelabels": ["Cat"]}}]),
    ]
    report = SegmentReport()
    polygons = segment_samples(tasks[:1] + tasks[2:], "poly", "image", "polygonlabels", "image", CLASSES, report)
    assert [(s.task_id, len(s.objects)) for s in polygons] == [(1, 1), (3, 0)]
    assert dict(report.dropped) == {"polygon with fewer than 3 points": 1, "unknown label": 1}
    assert "rectanglelabels" in report.skipped_tasks[4], "a box of a class is not a negative for masks"
    report = SegmentReport()
    (masks,) = segment_samples(tasks[1:2], "poly", "image", "brushlabels", "image", CLASSES, report)
    assert [c for c, _ in masks.objects] == [1] and sum(report.dropped.values()) == 2
    assert all(why.startswith("undecodable brush mask") for why in report.dropped), report.dropped
    assert report.to_json()["n_objects"] == 1


def test_written_labels_are_yolo_segment_lines(tmp_path):
    from PIL import Image

    (sample,) = segment_samples([task(1, [polygon([[10, 10], [50, 10], [50, 40]], "Dog")])], "poly", "image",
                                "polygonlabels", "image", CLASSES, SegmentReport())
    write_dataset(tmp_path, [sample], {1: Image.new("RGB", (100, 50))}, ["Cat", "Dog"], {1}, set())
    line = (tmp_path / "labels" / "train" / "1.txt").read_text().split()
    assert line[0] == "1" and [float(v) for v in line[1:]] == pytest.approx([0.1, 0.1, 0.5, 0.1, 0.5, 0.4])
