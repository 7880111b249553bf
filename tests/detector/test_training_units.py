import pytest
import torch

from backends.detector.training import adapt_head, publish_decision
from backends.detector.weights import load_model


def cls_rows(model):
    head = model.model[-1]
    return [m for n, m in head.named_modules() if "cv3" in n and isinstance(m, torch.nn.Conv2d) and m.out_channels == len(model.names)]


def test_adapt_head_keeps_backbone_and_known_class_rows(detector_env):
    base = load_model("yolo11n.yaml").model.model  # 80 COCO classes
    four = adapt_head(base, ["person", "Bicycle", "car", "motorcycle"])
    assert list(four.names.values()) == ["person", "Bicycle", "car", "motorcycle"]
    assert torch.equal(four.model[0].conv.weight, base.model[0].conv.weight), "backbone kept"
    # 80 -> 4 classes changes the class branch width: re-learnt. 4 -> 3 keeps it: rows carried over.
    three = adapt_head(four, ["car", "person", "hydrant"])
    for old, new in zip(cls_rows(four), cls_rows(three)):
        assert torch.equal(new.weight[0], old.weight[2]) and torch.equal(new.weight[1], old.weight[0])
        assert not torch.equal(new.weight[2], old.weight[1])
    assert adapt_head(three, ["car", "person", "hydrant"]).names == three.names


@pytest.mark.parametrize("rule, new, current, publishes", [
    ("if_better", 0.30, None, True),    # the first version for these classes
    ("if_better", 0.30, 0.25, True),
    ("if_better", 0.25, 0.25, True),    # a tie: the newer labels win
    ("if_better", 0.20, 0.25, False),   # worse on the same val split: kept, not served
    ("always", 0.20, 0.25, True),
])
def test_the_publish_rule(rule, new, current, publishes):
    made_current, why = publish_decision(rule, {"map50_95": new}, None if current is None else {"map50_95": current})
    assert made_current is publishes
    assert why  # recorded in the version's metadata, so a user sees why it is (not) served
    if current is not None and rule == "if_better":
        assert f"{current:.4f}" in why


def test_adapt_head_of_a_classifier_keeps_the_rows_of_known_classes(detector_env):
    base = load_model("yolo11n-cls.yaml").model.model
    three = adapt_head(base, ["cat", "dog", "bird"])
    two = adapt_head(three, ["dog", "fish"])
    old, new = three.model[-1].linear, two.model[-1].linear
    assert list(two.names.values()) == ["dog", "fish"] and new.out_features == 2
    assert torch.equal(new.weight[0], old.weight[1]) and torch.equal(new.bias[0], old.bias[1])
    assert not torch.equal(new.weight[1], old.weight[0])  # "fish" is new: it starts fresh
    assert torch.equal(two.model[0].conv.weight, three.model[0].conv.weight), "backbone kept"


def test_classes_are_gated_on_top1_accuracy():
    assert publish_decision("if_better", {"top1": 0.5}, {"top1": 0.75}, key="top1") == (
        False, "top-1 accuracy 0.5000 < current 0.7500 on the same val split")
    assert publish_decision("if_better", {"top1": 0.75}, {"top1": 0.75}, key="top1")[0] is True


def test_adapt_head_of_a_pose_model_keeps_its_keypoint_branch_for_the_same_skeleton(detector_env):
    base = load_model("yolo11n-pose.yaml").model.model  # COCO's 17 keypoints, class "person"
    same = adapt_head(base, ["object"], [17, 3])
    old = dict(base.model[-1].named_modules())
    branch = [(n, m) for n, m in same.model[-1].named_modules() if "cv4" in n and isinstance(m, torch.nn.Conv2d)]
    assert list(same.names.values()) == ["object"] and branch
    assert all(torch.equal(m.weight, old[n].weight) for n, m in branch)
    two = adapt_head(base, ["object"], [2, 3])  # YOLO11 narrows the branch with the keypoints: re-learnt
    assert list(two.kpt_shape) == [2, 3] and two.model[-1].cv4[0][2].out_channels == 6
