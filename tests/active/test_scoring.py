"""Scoring's bookkeeping: only the current task-model version's outputs and boards are kept on
disk, exactly this backend's queue versions are cleaned up in Label Studio, a chunk holds few
decoded images at once, and finished chunks are cached as they finish."""

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from backends.active.scoring import OutputCache, Scorer, compute_chunk, prune_outputs
from backends.active.task_models import ImageOutputs
from backends.core.media import LoadedImage


def test_outputs_of_other_versions_are_pruned(tmp_path):
    keep = [tmp_path / "active-v1.jsonl", tmp_path / "active-v1.unlabeled.0123456789abcdef.board"]
    drop = [tmp_path / "active-v10.jsonl", tmp_path / "active-v0.jsonl",
            tmp_path / "active-v0.labeled.0123456789abcdef.board"]
    for path in keep + drop:
        path.mkdir() if path.suffix == ".board" else path.write_text("{}\n")
    (drop[-1] / "0.json").write_text("{}")
    prune_outputs(tmp_path, "active-v1")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in keep)
    prune_outputs(tmp_path / "missing", "active-v1")  # no outputs yet: nothing to do


def test_every_generation_of_our_queue_versions_is_cleaned_up_and_nobody_elses():
    """At ``~2`` the project's queue is ``base~2`` while ``/predict`` still answers under ``base``:
    those predictions are this backend's and must go with the next task model, not stay forever."""
    active = SimpleNamespace(settings=None, load_state=lambda name: {"versions": ["active-margin@active-v4~2"]})
    tasks = {1: {"predictions": [{"model_version": "active-margin@active-v4"},     # /predict, under the base
                                 {"model_version": "active-margin@active-v4~2"},
                                 {"model_version": "active-margin@active-v5~3"},  # the new base's, from a crash
                                 {"model_version": "active-mine"}]},              # a user's look-alike
             2: {"predictions": [{"model_version": "active-hybrid@active-v4"}]}}  # another backend's strategy
    found = Scorer(active, None)._written_versions(tasks, "active-margin@active-v5")
    assert found == {"active-margin@active-v4", "active-margin@active-v4~2", "active-margin@active-v5~3"}
    no_record = SimpleNamespace(settings=None, load_state=lambda name: None)
    assert Scorer(no_record, None)._written_versions(tasks, "active-margin@active-v5") == {"active-margin@active-v5~3"}, \
        "without a record (a first run here), only the current base's generations: the rest may be another backend's"


class CountingModel:
    """A task model that records how many images it is handed at once, and fails on a chosen call."""

    version = "active-v1"

    def __init__(self, fail_on_call: int | None = None) -> None:
        self.sizes: list[int] = []
        self.fail_on_call = fail_on_call

    def outputs(self, images):
        self.sizes.append(len(images))
        if len(self.sizes) == self.fail_on_call:
            raise RuntimeError("worker killed")
        return [ImageOutputs(embedding=np.zeros(2, dtype=np.float32), regions=[], probs=np.array([0.5, 0.5]))
                for _ in images]


def fake_active(tmp_path, chunk: int):
    media = SimpleNamespace(load_image=lambda url: LoadedImage(Image.new("RGB", (8, 8)), "", url))
    services = SimpleNamespace(media=media, settings=SimpleNamespace(job_lease_s=60, redis_url=None))
    return SimpleNamespace(services=services, project_id=1, label_config="<View/>", extra_params={},
                           state_dir=tmp_path, settings=SimpleNamespace(chunk=chunk, scoring_helpers=0))


def test_a_chunk_holds_a_bounded_number_of_decoded_images(tmp_path):
    model = CountingModel()
    result = compute_chunk(fake_active(tmp_path, 100), model, [[i, f"u{i}"] for i in range(70)], batch=32)
    assert model.sizes == [32, 32, 6] and [row["task"] for row in result["rows"]] == list(range(70))


def test_deleted_images_are_skipped_but_an_outage_fails_the_chunk_so_the_job_retries(tmp_path):
    from backends.core.errors import LabelLoopError, MediaError
    from backends.core.jobs import may_pass

    def loader(outcome):
        def load_image(url):
            if url in outcome:
                raise outcome[url]
            return LoadedImage(Image.new("RGB", (8, 8)), "", url)
        return load_image

    active = fake_active(tmp_path, 100)
    gone = MediaError("fetching u1 returned HTTP 404", status=424)
    active.services.media.load_image = loader({"u1": gone, "u2": MediaError("timeout", status=424, transient=True)})
    result = compute_chunk(active, CountingModel(), [[i, f"u{i}"] for i in range(4)])
    assert [row["task"] for row in result["rows"]] == [0, 3] and set(result["failed"]) == {"1", "2"}
    down = MediaError("could not fetch: ConnectionError", status=424, transient=True)
    active.services.media.load_image = loader({f"u{i}": down for i in range(4)})
    with pytest.raises(LabelLoopError, match="retrying") as err:
        compute_chunk(active, CountingModel(), [[i, f"u{i}"] for i in range(4)])
    assert may_pass(err.value)
    active.services.media.load_image = loader({f"u{i}": gone for i in range(4)})  # all deleted: no outage
    assert compute_chunk(active, CountingModel(), [[i, f"u{i}"] for i in range(4)])["rows"] == []
    # Label Studio's answer for an upload whose file is gone is a 500: not an outage either
    active.services.media.load_image = loader({"u0": MediaError("fetching u0 returned HTTP 500", status=424)})
    assert compute_chunk(active, CountingModel(), [[0, "u0"]])["failed"] == {"0": "fetching u0 returned HTTP 500"}


def test_finished_chunks_are_cached_at_once_so_a_dead_job_resumes_even_if_tasks_changed(tmp_path):
    active = fake_active(tmp_path, chunk=4)
    todo = [({"id": i}, f"u{i}") for i in range(12)]
    cache = OutputCache(tmp_path / "outputs" / "active-v1.jsonl")
    with pytest.raises(RuntimeError):
        Scorer(active, None)._shared_outputs(CountingModel(fail_on_call=3), todo, cache, "unlabeled", 0)
    # a new job sees other tasks (one labeled meanwhile names another board) yet skips the first 8
    reloaded = OutputCache(tmp_path / "outputs" / "active-v1.jsonl")
    assert sorted(task for task, _ in reloaded.rows) == list(range(8))


def increment_case(strategy="margin", kind="classification", last_model="active-v3", versions=None):
    """A Scorer over a project whose last scoring ranked with ``last_model`` (``active-v3`` now)."""
    settings = SimpleNamespace(strategy=strategy, aggregate="max", seed=0, box_threshold=0.05)
    version = f"active-{strategy}@active-v3"
    state = {"queue_versions.json": {"versions": versions or [version]}}
    active = SimpleNamespace(settings=settings, kind=kind, label_config="<View/>", load_state=state.get)
    ranked_by = Scorer(active, None)._ranked_by(strategy)
    state["last_scoring.json"] = {"task_model": last_model, "ranked_by": ranked_by, "queue_version": version,
                                  "max_task_id": 240, "head": [[7, 0.1]]}
    return active, SimpleNamespace(version="active-v3")


@pytest.mark.parametrize("actions, case, increment", [
    (["TASKS_CREATED", "TASKS_CREATED"], {}, True),
    (["TASKS_CREATED", "API_REQUEST"], {}, False),  # POST /jobs asked for a scoring: a full one
    ([], {}, False),
    (["TASKS_CREATED"], {"last_model": "active-v2"}, False),  # a new task model moves every score
    (["TASKS_CREATED"], {"strategy": "coreset"}, False),  # a set-based head is chosen from the whole pool
    (["TASKS_CREATED"], {"strategy": "learning_loss", "kind": "detection"}, False),  # regressor on the labeled
    (["TASKS_CREATED"], {"strategy": "learning_loss"}, False),  # it clusters its head from the whole pool
    (["TASKS_CREATED"], {"strategy": "entropy"}, True),
    (["TASKS_CREATED"], {"versions": ["active-margin@active-v2", "active-margin@active-v3"]}, False),  # old to delete
])
def test_only_an_import_under_the_same_ranking_scores_just_the_new_tasks(actions, case, increment):
    active, task_model = increment_case(**case)
    events = [SimpleNamespace(action=action) for action in actions]
    last = Scorer(active, None, events)._increment_of(task_model, active.settings.strategy)
    assert (last is not None) == increment
    if increment:
        assert last["max_task_id"] == 240


def test_changed_settings_or_label_config_score_the_whole_project():
    active, task_model = increment_case()
    events = [SimpleNamespace(action="TASKS_CREATED")]
    active.settings.aggregate = "mean"
    assert Scorer(active, None, events)._increment_of(task_model, "margin") is None
    active.settings.aggregate, active.label_config = "max", "<View><Image/></View>"
    assert Scorer(active, None, events)._increment_of(task_model, "margin") is None


def test_an_import_whose_ids_start_below_the_last_scorings_highest_is_listed_from_its_first():
    """Ids are drawn at insert, not at commit: a big import that commits after a later small one
    has the lower ids, and listing after the small one's would skip it for good."""
    active, _ = increment_case()
    last = active.load_state("last_scoring.json")  # max_task_id 240
    created = lambda *ids: SimpleNamespace(action="TASKS_CREATED", payload={"tasks": [{"id": i} for i in ids]})  # noqa: E731
    assert Scorer(active, None, [created(241, 242)])._list_after(last) == 240
    assert Scorer(active, None, [created(250), created(101, 102)])._list_after(last) == 100
    assert Scorer(active, None, [SimpleNamespace(action="TASKS_CREATED", payload={})])._list_after(last) == 240
    assert Scorer(active, None, [created(5)])._list_after(None) is None
