"""Switching SAM_ENGINE or SAM_CHECKPOINT never serves an embedding of the other model: not from
memory, not from the disk tier another process left behind."""

import pytest
import torch

from backends.core.services import Services
from backends.core.settings import CoreSettings
from backends.segmenter import model as segmenter_model
from backends.segmenter.build import get_engine
from backends.segmenter.model import SegmenterModel
from tests.segmenter.test_segmenter import CONFIG, TASK, click


@pytest.fixture
def switch(tmp_path, monkeypatch):
    data = tmp_path / "data"

    def to(**env):
        for key in ("SAM_ENGINE", "SAM_CHECKPOINT", "SAM_RUNTIME"):
            monkeypatch.delenv(key, raising=False)
        monkeypatch.setenv("SAM_ALLOW_RANDOM", "1")
        monkeypatch.setenv("SAM_PREFETCH_ON_OPEN", "0")
        for key, value in env.items():
            monkeypatch.setenv(key, str(value))
        segmenter_model.env_settings.cache_clear()
        segmenter_model._caches.clear()  # a new process: only the disk tier remains
        model = SegmenterModel(project_id=1, label_config=CONFIG,
                               services=Services.from_settings(CoreSettings(DATA_DIR=data)))
        runs = model.engine.encoder_runs
        model.predict([TASK], context={"result": [click(50, 50)]})
        return model.engine, model.engine.encoder_runs - runs

    yield to
    segmenter_model.env_settings.cache_clear()
    segmenter_model._caches.clear()


def test_another_engine_computes_its_own_embedding_and_coming_back_reads_the_first_from_disk(switch):
    first, ran = switch(SAM_ENGINE="mobile_sam", SAM_RUNTIME="torch")
    assert ran == 1
    other, ran = switch(SAM_ENGINE="sam2")
    assert ran == 1 and other.name != first.name, "SAM 2 must not decode MobileSAM's embedding"
    back, ran = switch(SAM_ENGINE="mobile_sam", SAM_RUNTIME="torch")
    assert ran == 0, "the first engine's embedding is still on disk, in its own folder"


def test_another_checkpoint_of_the_same_engine_does_not_read_the_old_weights_embedding(switch, tmp_path):
    from ultralytics.models.sam.build import build_mobile_sam

    paths = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        paths.append(tmp_path / f"mobile_sam_{seed}.pt")
        torch.save(build_mobile_sam().state_dict(), paths[-1])
    get_engine.cache_clear()
    first, ran = switch(SAM_ENGINE="mobile_sam", SAM_RUNTIME="torch", SAM_CHECKPOINT=paths[0])
    assert ran == 1
    second, ran = switch(SAM_ENGINE="mobile_sam", SAM_RUNTIME="torch", SAM_CHECKPOINT=paths[1])
    assert first.name == second.name and ran == 1, "same engine, other weights: the disk tier was not theirs"
