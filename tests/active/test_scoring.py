"""Scoring's bookkeeping: only the current task-model version's outputs and boards are kept on
disk, and exactly this backend's queue versions are cleaned up in Label Studio."""

from types import SimpleNamespace

from backends.active.scoring import Scorer, prune_outputs


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
    assert "active-mine" in Scorer(no_record, None)._written_versions(tasks, "active-margin@active-v5"), \
        "without a record (an old release), every active-* version is taken, as before"
