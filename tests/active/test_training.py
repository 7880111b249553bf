"""Training jobs refuse to publish a model that diverged."""

import math
from types import SimpleNamespace

import pytest

from backends.active.training import ClassifierTrainer
from backends.core.errors import BadRequest
from backends.core.jobs import may_pass


@pytest.mark.parametrize("loss", [math.nan, math.inf])
def test_a_diverged_training_fails_clearly_and_is_not_retried(loss):
    trainer = ClassifierTrainer(SimpleNamespace(settings=SimpleNamespace(lr=5.0, epochs=3), project_id=1), None)
    trainer._on_epoch(0, 0.7)  # a finite loss goes on
    with pytest.raises(BadRequest, match=r"training diverged .* at epoch 2.*Lower 'lr' \(now 5.0\)") as caught:
        trainer._on_epoch(1, loss)
    assert not may_pass(caught.value), "the same settings would diverge again"
