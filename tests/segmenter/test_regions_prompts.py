import numpy as np
import pytest
from label_studio_sdk.converter.brush import decode_rle

from backends.core.errors import BadRequest
from backends.segmenter.prompts import parse_context
from backends.segmenter.regions import brush_region, polygon_points


def test_brush_rle_round_trip_at_original_size():
    mask = np.zeros((48, 64), dtype=bool)
    mask[10:30, 5:40] = True
    region = brush_region(mask, "brush", "image", "Cat", 0.9)
    decoded = decode_rle(region["value"]["rle"]).reshape(48, 64, 4)[:, :, 3]
    assert np.array_equal(decoded > 0, mask)
    assert (region["original_width"], region["original_height"]) == (64, 48)


def test_polygon_of_a_rectangle_is_its_corners_in_percent():
    mask = np.zeros((50, 200), dtype=np.uint8)
    mask[10:40, 20:120] = 1
    points = polygon_points(mask, tolerance_px=1.0)
    assert sorted(map(tuple, points)) == sorted([(10.0, 20.0), (10.0, 78.0), (59.5, 78.0), (59.5, 20.0)])
    assert polygon_points(np.zeros((5, 5), dtype=np.uint8), 1.0) == []


def click(x, y, positive=True, label="Cat"):
    return {"type": "keypointlabels", "to_name": "image", "is_positive": positive,
            "value": {"x": x, "y": y, "keypointlabels": [label]}}


def test_percent_to_pixels_and_negative_clicks():
    parsed = parse_context({"result": [click(25, 50), click(75, 10, positive=False)]}, 640, 480)
    assert parsed.prompt.points == [(160.0, 240.0), (480.0, 48.0)]
    assert parsed.prompt.labels == [1, 0] and parsed.label == "Cat" and parsed.prompt.box is None


def test_box_plus_points_and_outside_points():
    box = {"type": "rectanglelabels", "value": {"x": 10, "y": 20, "width": 50, "height": 50, "rectanglelabels": ["Dog"]}}
    parsed = parse_context({"result": [box, click(30, 40), click(150, 40)]}, 200, 100)
    assert parsed.prompt.box == (20.0, 20.0, 120.0, 70.0) and parsed.label == "Dog"
    assert parsed.prompt.points == [(60.0, 40.0)] and parsed.outside == 1


def test_extreme_points_become_a_box():
    clicks = [click(10, 50), click(90, 40), click(50, 5), click(45, 95)]
    parsed = parse_context({"result": clicks}, 100, 100, extreme_points=True)
    assert parsed.prompt.box == (10.0, 5.0, 90.0, 95.0) and len(parsed.prompt.points) == 4
    assert parse_context({"result": clicks}, 100, 100).prompt.box is None


@pytest.mark.parametrize("context", [{"result": "x"}, {"result": [{"type": "keypointlabels"}]},
                                     {"result": [click("a", 3)]}])
def test_malformed_context(context):
    with pytest.raises(BadRequest):
        parse_context(context, 10, 10)
