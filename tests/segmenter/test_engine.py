"""The engine refuses to start without usable weights, with a message that says what to set."""

import pytest

from backends.core.errors import LabelLoopError
from backends.segmenter.engine import SamEngine


def test_no_checkpoint_and_no_random_weights_is_a_503_naming_the_setting():
    with pytest.raises(LabelLoopError, match="SAM_CHECKPOINT is not set") as err:
        SamEngine("vit_b", None, allow_random=False, device="cpu")
    assert err.value.status == 503


def test_a_checkpoint_path_that_does_not_exist_is_a_503_naming_the_path(tmp_path):
    missing = tmp_path / "sam_vit_b_01ec64.pth"
    with pytest.raises(LabelLoopError, match="is not a file") as err:
        SamEngine("vit_b", str(missing), allow_random=False, device="cpu")
    assert str(missing) in str(err.value) and err.value.status == 503
