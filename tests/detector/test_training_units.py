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
