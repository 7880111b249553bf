"""LabelLoopModel.for_project / for_job: the one way the server, the workers, the watcher and the
CLI build a project's model (issue 25), so none of them runs with other settings than /setup saved."""

from __future__ import annotations

import pytest

from backends.core.model import LabelLoopModel
from backends.core.services import Services
from backends.core.settings import CoreSettings

SAVED = '<View><Image name="image" value="$image"/></View>'
NEWER = '<View><Image name="photo" value="$photo"/></View>'


class Probe(LabelLoopModel):
    backend = "probe"


@pytest.fixture
def services(tmp_path):
    return Services.from_settings(CoreSettings(DATA_DIR=tmp_path / "data", LABEL_STUDIO_URL="http://127.0.0.1:9",
                                               TRAIN_DEBOUNCE_S=0))


def test_a_project_model_is_built_as_its_setup_left_it(services):
    services.journal.save_setup("probe", 7, SAVED, {"epochs": 3, "strategy": "margin"}, None)
    model = Probe.for_project(7, services)
    assert (model.project_id, model.label_config, model.extra_params) == (7, SAVED, {"epochs": 3, "strategy": "margin"})


def test_a_given_label_config_and_overrides_win_over_the_saved_ones(services):
    services.journal.save_setup("probe", 7, SAVED, {"epochs": 3, "strategy": "margin"}, None)
    model = Probe.for_project(7, services, label_config=NEWER, overrides={"strategy": "entropy"})
    assert (model.label_config, model.extra_params) == (NEWER, {"epochs": 3, "strategy": "entropy"})


def test_a_project_without_setup_or_without_project_gets_no_config(services):
    assert (Probe.for_project(8, services).label_config, Probe.for_project(8, services).extra_params) == (None, {})
    assert Probe.for_project(None, services).project_id is None


def test_a_job_runs_with_the_newest_label_config_its_events_carry(services):
    journal = services.journal
    journal.save_setup("probe", 7, SAVED, {"epochs": 3}, None)
    journal.record("probe", 7, "ANNOTATION_CREATED", {"project": {"id": 7, "label_config": NEWER}}, kind="train")
    journal.record("probe", 7, "ANNOTATION_CREATED", {"project": 7}, kind="train")  # no config: skipped
    job = journal.claim("probe", "w")
    model = Probe.for_job(job, services)
    assert (model.project_id, model.label_config, model.extra_params) == (7, NEWER, {"epochs": 3})


def test_a_job_whose_events_carry_no_config_uses_the_saved_one(services):
    services.journal.save_setup("probe", 7, SAVED, None, None)
    services.journal.record("probe", 7, "START_TRAINING", {"project": 7}, kind="train")
    assert Probe.for_job(services.journal.claim("probe", "w"), services).label_config == SAVED
