"""The vectorised brush RLE encoder is byte-identical to label-studio-sdk's
(its speed is measured in bench/segmenter.py, not asserted here)."""

import numpy as np
import pytest
from label_studio_sdk.converter import brush

from backends.core.rle import encode_rle, mask2rle, rle2mask


def masks():
    rng = np.random.default_rng(0)
    yield np.zeros((30, 40), np.uint8)
    yield np.full((300, 451), 255, np.uint8)  # one run of 541,200 bytes: split into 65536 pieces
    yield (rng.random((300, 451)) > 0.5).astype(np.uint8) * 255  # speckle: tens of thousands of runs
    blob = np.zeros((120, 160), np.uint8)
    blob[20:90, 30:100] = 255
    yield blob
    yield (rng.random((1, 7)) > 0.5).astype(np.uint8) * 255
    yield np.tile(np.array([0, 255], np.uint8), (64, 32))  # 256-long rows of alternation: every 4-run


@pytest.mark.parametrize("mask", list(masks()), ids=lambda m: f"{m.shape}")
def test_identical_to_the_sdk_and_decodes(mask):
    ours = mask2rle(mask)
    assert ours == brush.mask2rle(mask.copy())
    decoded = brush.decode_rle(ours).reshape(mask.shape[0], mask.shape[1], 4)[:, :, 3]
    assert np.array_equal(decoded, mask)


def test_every_run_length_class_matches_the_sdk():
    # lengths around each field boundary (1, 8, 16, 256, 65536, 2*65536 + 1) and values 0..255
    lengths = [1, 2, 8, 9, 16, 17, 256, 257, 65536, 65537, 131073, 3]
    arr = np.concatenate([np.full(n, (37 * i) % 256) for i, n in enumerate(lengths)])
    assert encode_rle(arr) == brush.encode_rle(arr)
    assert encode_rle(np.zeros(0, int))[:4] == [0, 0, 0, 0]  # the SDK's own encoder fails on empty input


@pytest.mark.parametrize("mask", list(masks()), ids=lambda m: f"{m.shape}")
def test_decoding_returns_the_mask(mask):
    assert np.array_equal(rle2mask(mask2rle(mask), *mask.shape), mask > 0)


@pytest.mark.parametrize("bad", [[], "abc", [300, 1], [1.5], [0, 0, 0, 1]], ids=repr)
def test_bad_rle_is_a_value_error(bad):
    with pytest.raises(ValueError):
        rle2mask(bad, 4, 4)


def test_rle_of_another_size_is_refused():
    with pytest.raises(ValueError, match="not 5x4"):
        rle2mask(mask2rle(np.zeros((4, 4), np.uint8)), 5, 4)
