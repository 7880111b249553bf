"""MobileSAM through ONNX Runtime: masks within the stated tolerance of PyTorch's, exported once
per weights, a corrupt export rebuilt, engines it does not serve refused by name."""

import numpy as np
import pytest
from skimage import data

from backends.core.errors import LabelLoopError
from backends.segmenter.build import get_engine
from backends.segmenter.engine import Prompt, choose
from backends.segmenter.onnx_engine import FILES, MASK_IOU_TOLERANCE, OnnxEngine, decoder_prompt

PROMPTS = [Prompt([(200.0, 150.0)], [1], None), Prompt([(200.0, 150.0), (60.0, 40.0)], [1, 0], None),
           Prompt([], [], (100.0, 80.0, 300.0, 260.0)), Prompt([(200.0, 150.0)], [1], (100.0, 80.0, 300.0, 260.0))]


def iou(a, b):
    union = np.logical_or(a, b).sum()
    return np.logical_and(a, b).sum() / union if union else 1.0


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    onnx = get_engine("mobile_sam", None, "onnx", None, True, "cpu", root)
    return onnx, get_engine("mobile_sam", None, "torch", None, True, "cpu"), root


def test_onnx_masks_match_pytorchs_within_the_tolerance(engines):
    onnx, torch_engine, _ = engines
    image = data.chelsea()  # a real photo, 451 x 300
    from_onnx, from_torch = onnx.embed(image), torch_engine.embed(image)
    assert np.abs(from_onnx.features.numpy() - from_torch.features.numpy()).max() < 1e-3
    for prompt in PROMPTS:
        for multimask in (False, True):
            (a, score_a), (b, score_b) = onnx.decode(from_onnx, prompt, multimask), torch_engine.decode(from_torch, prompt, multimask)
            assert a.shape == b.shape == image.shape[:2]
            assert iou(a, b) >= MASK_IOU_TOLERANCE, (prompt, multimask)
            assert abs(score_a - score_b) < 1e-3


def test_the_export_is_made_once_and_a_corrupt_file_is_exported_again(engines):
    onnx, _, root = engines
    (folder,) = [p for p in root.iterdir() if p.is_dir()]
    stamps = {name: (folder / name).stat().st_mtime_ns for name in FILES}
    choice, state = choose("mobile_sam", None, "onnx", None, True, "cpu")
    again = OnnxEngine(choice, state, root)
    assert {name: (folder / name).stat().st_mtime_ns for name in FILES} == stamps, "loaded, not exported again"
    (folder / "encoder.onnx").write_bytes(b"torn")
    rebuilt = OnnxEngine(choice, state, root)
    assert (folder / "encoder.onnx").stat().st_size > 1_000_000
    image = data.chelsea()  # a real photo, 451 x 300
    mask, _ = rebuilt.decode(rebuilt.embed(image), PROMPTS[0])
    expected, _ = again.decode(again.embed(image), PROMPTS[0])
    assert np.array_equal(mask, expected)


def test_engines_onnx_does_not_serve_are_a_503_naming_the_runtime(tmp_path):
    for engine in ("sam", "sam2"):
        get_engine.cache_clear()
        with pytest.raises(LabelLoopError, match=f"SAM_RUNTIME=onnx serves SAM_ENGINE=mobile_sam, not {engine}") as err:
            get_engine(engine, None, "onnx", None, True, "cpu", tmp_path)
        assert err.value.status == 503


def test_the_decoders_prompt_pads_clicks_and_labels_box_corners():
    coords, labels = decoder_prompt(Prompt([(10.0, 20.0)], [0], None), 2.0)
    assert coords.tolist() == [[[20.0, 40.0], [0.0, 0.0]]] and labels.tolist() == [[0.0, -1.0]]
    coords, labels = decoder_prompt(Prompt([], [], (1.0, 2.0, 3.0, 4.0)), 1.0)
    assert coords.tolist() == [[[1.0, 2.0], [3.0, 4.0]]] and labels.tolist() == [[2.0, 3.0]]
