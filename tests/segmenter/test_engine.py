"""Engines: each builds offline with random weights and segments; bad settings and checkpoints
are 503s that name the setting."""

import numpy as np
import pytest
import torch

from backends.core.errors import LabelLoopError
from backends.segmenter.build import get_engine
from backends.segmenter.engine import MODEL_TYPES, Prompt, choose, sniff

IMAGE = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)


def test_no_checkpoint_and_no_random_weights_is_a_503_naming_the_setting():
    with pytest.raises(LabelLoopError, match="SAM_CHECKPOINT is not set") as err:
        choose("auto", None, "auto", None, allow_random=False, device="cpu")
    assert err.value.status == 503


def test_a_checkpoint_path_that_does_not_exist_is_a_503_naming_the_path(tmp_path):
    missing = tmp_path / "sam_vit_b_01ec64.pth"
    with pytest.raises(LabelLoopError, match="is not a file") as err:
        choose("sam", "vit_b", "auto", str(missing), allow_random=False, device="cpu")
    assert str(missing) in str(err.value) and err.value.status == 503


@pytest.mark.parametrize(("engine", "model_type", "setting"), [
    ("sam3", None, "SAM_ENGINE='sam3'"), ("sam", "vit_t", "SAM_MODEL_TYPE='vit_t'"),
    ("sam2", "hiera_xl", "SAM_MODEL_TYPE='hiera_xl'"), ("mobile_sam", "tiny", "SAM_MODEL_TYPE='tiny'"),
])
def test_an_unknown_engine_or_model_type_is_a_503_naming_the_setting(engine, model_type, setting):
    with pytest.raises(LabelLoopError, match=setting) as err:
        choose(engine, model_type, "auto", None, allow_random=True, device="cpu")
    assert err.value.status == 503


def test_an_unknown_runtime_is_a_503_naming_the_setting():
    with pytest.raises(LabelLoopError, match="SAM_RUNTIME='tensorrt'"):
        choose("mobile_sam", None, "tensorrt", None, allow_random=True, device="cpu")


def test_auto_is_mobile_sam_on_a_cpu_sam2_on_a_gpu_and_the_model_types_engine_when_one_is_set():
    assert choose("auto", None, "auto", None, True, "cpu")[0].engine == "mobile_sam"
    assert choose("auto", None, "auto", None, True, "cuda:0")[0].engine == "sam2"
    assert choose("auto", "vit_l", "auto", None, True, "cpu")[0].engine == "sam"
    assert choose("auto", "small", "auto", None, True, "cpu")[0].engine == "sam2"


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    evil = tmp_path / "mobile_sam.pt"
    torch.save({"model": {"x": torch.zeros(1)}, "hook": Exception("pickled object")}, evil)
    with pytest.raises(LabelLoopError, match="loads without running code") as err:
        choose("auto", None, "auto", str(evil), allow_random=False, device="cpu")
    assert err.value.status == 503


@pytest.fixture(scope="module")
def mobile_sam_state():
    from ultralytics.models.sam.build import build_mobile_sam

    return build_mobile_sam().state_dict()


def test_auto_takes_the_engine_a_checkpoint_belongs_to_as_ultralytics_stores_it(tmp_path, mobile_sam_state):
    path = tmp_path / "mobile_sam.pt"
    torch.save({"model": mobile_sam_state}, path)
    choice, state = choose("auto", None, "auto", str(path), allow_random=False, device="cpu")
    assert (choice.engine, choice.model_type) == ("mobile_sam", "vit_t") and state is not None
    assert sniff({"image_encoder.patch_embed.proj.weight": torch.zeros(1024, 3, 16, 16)}) == ("sam", "vit_l")


def test_a_checkpoint_of_another_engine_is_a_503_naming_both(tmp_path, mobile_sam_state):
    path = tmp_path / "mobile_sam.pt"
    torch.save(mobile_sam_state, path)
    get_engine.cache_clear()
    with pytest.raises(LabelLoopError, match="SAM_ENGINE=sam2 .*it holds mobile_sam vit_t weights") as err:
        get_engine("sam2", None, "torch", str(path), False, "cpu")
    assert err.value.status == 503 and "SAM_CHECKPOINT=" in err.value.message


@pytest.mark.parametrize(("engine", "model_type"), [("sam", "vit_b"), ("mobile_sam", "vit_t"), ("sam2", "tiny")])
def test_every_engine_answers_a_point_a_negative_click_and_a_box_with_a_mask_of_the_images_size(engine, model_type):
    assert model_type in MODEL_TYPES[engine]
    built = get_engine(engine, model_type, "torch", None, True, "cpu")
    embedding = built.embed(IMAGE)
    assert embedding.original_size == (120, 160) and embedding.nbytes > 0
    for prompt in (Prompt([(80.0, 60.0)], [1], None), Prompt([(80.0, 60.0), (20.0, 20.0)], [1, 0], None),
                   Prompt([], [], (40.0, 30.0, 120.0, 90.0)), Prompt([(80.0, 60.0)], [1], (40.0, 30.0, 120.0, 90.0))):
        mask, score = built.decode(embedding, prompt)
        assert mask.shape == (120, 160) and mask.dtype == bool and 0.0 <= score <= 1.0
    three, _ = built.decode(embedding, Prompt([(80.0, 60.0)], [1], None), multimask=True)
    assert three.shape == (120, 160)
