"""The active backend's model class without a server: what it accepts and how /predict scores read."""

import numpy as np
import pytest

from backends.active.model import ActiveModel, _squash
from backends.active.strategies import entropy, least_confidence, margin
from backends.active.task_models import ImageOutputs
from backends.core.errors import LabelConfigError


def config(choices: str) -> str:
    return f'<View><Image name="image" value="$image"/><Choices name="label" toName="image">{choices}</Choices></View>'


def test_a_classification_config_needs_two_choices():
    assert ActiveModel(project_id=None, label_config=config('<Choice value="a"/><Choice value="b"/>'),
                       services=None).kind == "classification"
    with pytest.raises(LabelConfigError, match='<Choices name="label"> has 1 choice'):
        ActiveModel(project_id=None, label_config=config('<Choice value="a"/>'), services=None).setup()


def test_a_per_region_choices_is_a_box_attribute_and_a_multi_label_one_is_refused():
    boxes_with_colour = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
                         '<Label value="Car"/></RectangleLabels><Choices name="colour" toName="image" perRegion="true">'
                         '<Choice value="red"/><Choice value="blue"/></Choices></View>')
    assert ActiveModel(project_id=None, label_config=boxes_with_colour, services=None).kind == "detection"
    multi = config('<Choice value="a"/><Choice value="b"/>').replace('toName="image"', 'toName="image" choice="multiple"')
    with pytest.raises(LabelConfigError, match="multi-label"):
        ActiveModel(project_id=None, label_config=multi, services=None).setup()


@pytest.mark.parametrize("strategy, function", [("entropy", entropy), ("least_confidence", least_confidence),
                                                ("margin", margin)])
def test_predict_scores_reach_the_whole_unit_range_for_detection_too(strategy, function):
    """A box at 0.5 is as doubtful as a detection can be: it must squash to 1, as a uniform class
    distribution does for classification, or /predict's scores would never go below 0.3."""
    box = ImageOutputs(embedding=np.zeros(2), regions=[])
    worst = float(function(np.array([[0.5, 0.5]]))[0])
    assert _squash(worst, strategy, box) == pytest.approx(1.0)
    uniform = ImageOutputs(embedding=np.zeros(2), regions=[], probs=np.full(4, 0.25))
    assert _squash(float(function(uniform.probs[None])[0]), strategy, uniform) == pytest.approx(1.0)
