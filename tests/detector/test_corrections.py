"""Corrections per image (detector/corrections.py): what each edit is, and the invariants that make
the figures comparable between versions."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from backends.detector.corrections import (
    Area,
    Corrections,
    Point,
    Region,
    WholeImage,
    box_iou,
    by_hand,
    image_corrections,
    total_corrections,
)

CAT = Region("Cat", (0.1, 0.1, 0.3, 0.3))


def test_each_kind_of_edit():
    assert image_corrections([CAT], [CAT]).to_json() == {"images": 1, "deletes": 0, "draws": 0, "adjusts": 0,
                                                         "relabels": 0, "edits": 0, "per_image": 0.0}
    moved = Region("Cat", (0.1, 0.1, 0.3, 0.33))  # IoU 0.87: matched, edges dragged
    assert image_corrections([moved], [CAT]).adjusts == 1
    dog = Region("Dog", CAT.box)
    assert (image_corrections([dog], [CAT]).relabels, image_corrections([dog], [CAT]).adjusts) == (1, 0)
    far = Region("Cat", (0.6, 0.6, 0.8, 0.8))
    missed = image_corrections([far], [CAT])  # no overlap: the pre-label goes, the cat is drawn
    assert (missed.deletes, missed.draws, missed.edits) == (1, 1, 2)


def test_a_pre_label_stands_for_one_region_only():
    # two predictions on one cat: the better one is kept, the other deleted
    almost = Region("Cat", (0.1, 0.1, 0.3, 0.32))
    result = image_corrections([almost, CAT], [CAT])
    assert (result.deletes, result.adjusts, result.draws) == (1, 0, 0)


def test_labeling_by_hand_draws_every_region():
    hand = by_hand([[CAT, CAT], [], [CAT]])
    assert (hand.images, hand.draws, hand.edits) == (3, 3, 3) and hand.to_json()["per_image"] == 1.0


boxes = st.tuples(st.floats(0, 0.9), st.floats(0, 0.9), st.floats(0.01, 0.5), st.floats(0.01, 0.5)).map(
    lambda b: (b[0], b[1], b[0] + b[2], b[1] + b[3]))
regions = st.lists(st.builds(Region, st.sampled_from(["Cat", "Dog"]), boxes), max_size=6)


@given(regions, regions)
def test_counts_are_consistent(predicted, truth):
    result = image_corrections(predicted, truth)
    matched = len(predicted) - result.deletes
    assert matched == len(truth) - result.draws  # one-to-one
    assert 0 <= result.adjusts <= matched and 0 <= result.relabels <= matched
    assert result.edits == result.deletes + result.draws + result.adjusts + result.relabels
    assert image_corrections(truth, truth).edits == 0  # a perfect pre-label needs nothing


@given(st.lists(st.tuples(regions, regions), max_size=4))
def test_totals_add_up_and_per_image_divides_by_images(images):
    total = total_corrections(images)
    assert total.images == len(images)
    assert total.edits == sum(image_corrections(p, t).edits for p, t in images)
    assert total.to_json()["per_image"] == (round(total.edits / len(images), 4) if images else None)
    assert (Corrections() + total) == total


@given(boxes, boxes)
def test_iou_is_symmetric_and_bounded(a, b):
    assert box_iou(a, b) == box_iou(b, a) and 0.0 <= box_iou(a, b) <= 1.0 + 1e-9
    assert abs(box_iou(a, a) - 1.0) < 1e-9


def test_an_outline_is_compared_by_the_area_it_covers_whatever_its_points():
    square = Area.from_polygon("Cat", [(0.1, 0.1), (0.5, 0.1), (0.5, 0.5), (0.1, 0.5)])
    same_with_more_points = Area.from_polygon("Cat", [(0.1, 0.1), (0.3, 0.1), (0.5, 0.1), (0.5, 0.5), (0.1, 0.5)])
    assert square.overlap(same_with_more_points) > 0.99
    mask = np.zeros((100, 200), dtype=bool)  # the same square painted on a 200x100 image
    mask[10:50, 20:100] = True
    assert square.overlap(Area.from_mask("Cat", mask)) > 0.95
    half = Area.from_polygon("Cat", [(0.1, 0.1), (0.3, 0.1), (0.3, 0.5), (0.1, 0.5)])
    assert abs(square.overlap(half) - 0.5) < 0.02
    assert image_corrections([half], [square]).to_json()["adjusts"] == 1
    diamond = Area.from_polygon("Cat", [(0.3, 0.1), (0.5, 0.3), (0.3, 0.5), (0.1, 0.3)])  # same box, half the area
    assert abs(square.overlap(diamond) - 0.5) < 0.02 and Region("Cat", (0.1, 0.1, 0.5, 0.5)).overlap(diamond) == 0


def test_a_speck_under_a_few_cells_is_compared_by_its_box():
    speck = Area.from_polygon("Cat", [(0.5, 0.5), (0.505, 0.5), (0.505, 0.505), (0.5, 0.505)])
    beside = Area.from_polygon("Cat", [(0.5, 0.501), (0.505, 0.501), (0.505, 0.506), (0.5, 0.506)])
    assert speck.coarse and speck.overlap(speck) == 1.0
    assert abs(speck.overlap(beside) - box_iou(speck.box, beside.box)) < 1e-9 and speck.overlap(beside) > 0.6


def test_a_keypoint_matches_within_three_percent_of_the_image_and_is_exact_within_one():
    nose = Point("nose", (0.5, 0.5))
    assert image_corrections([Point("nose", (0.51, 0.5))], [nose]).edits == 0
    assert image_corrections([Point("nose", (0.52, 0.5))], [nose]).adjusts == 1
    assert image_corrections([Point("nose", (0.54, 0.5))], [nose]).to_json()["deletes"] == 1
    assert image_corrections([Point("eye", (0.5, 0.5))], [nose]).relabels == 1


def test_a_class_is_a_relabel_when_wrong_and_a_draw_when_missing():
    assert image_corrections([WholeImage("Dog")], [WholeImage("Cat")]).to_json()["edits"] == 1
    assert image_corrections([], [WholeImage("Cat")]).draws == 1
    assert image_corrections([WholeImage("Cat")], [WholeImage("Cat")]).edits == 0
    assert WholeImage("Cat").overlap(CAT) == 0 and CAT.overlap(WholeImage("Cat")) == 0  # kinds never match
