"""Scoring's disk use: only the current task-model version's outputs and boards are kept."""

from backends.active.scoring import prune_outputs


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
