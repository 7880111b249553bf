import threading

import pytest

from backends.core.errors import NotFound
from backends.core.registry import ModelRegistry


def publish(reg, payload="w", **meta):
    with reg.stage() as staged:
        (staged.path / "weights.bin").write_text(payload)
        return staged.publish(meta)


def test_publish_list_and_rollback(tmp_path):
    reg = ModelRegistry(tmp_path, "det", 4)
    assert reg.current() is None and reg.list() == []
    v1 = publish(reg, "one", metrics={"map50": 0.1})
    v2 = publish(reg, "two", metrics={"map50": 0.2})
    assert (v1.name, v2.name) == ("det-v1", "det-v2")
    assert reg.current_name() == "det-v2"
    assert reg.get("det-v2").metadata["parent"] == "det-v1"
    assert [v.name for v in reg.list()] == ["det-v1", "det-v2"]
    reg.set_current("det-v1")
    assert (reg.current().path / "weights.bin").read_text() == "one"
    with pytest.raises(NotFound):
        reg.set_current("det-v9")


def test_a_version_name_cannot_climb_into_another_projects_versions(tmp_path):
    other = ModelRegistry(tmp_path, "det", 5)
    publish(other, "theirs")
    reg = ModelRegistry(tmp_path, "det", 4)
    publish(reg, "ours")
    up = reg.versions_dir.parent.parent
    climbing = "det-v1/../../../" + other.versions_dir.relative_to(up).as_posix() + "/det-v1"
    assert (reg.versions_dir / climbing / "metadata.json").is_file()  # the path itself exists
    with pytest.raises(NotFound):
        reg.set_current(climbing)
    assert (reg.current().path / "weights.bin").read_text() == "ours"


def test_discarded_stage_leaves_nothing(tmp_path):
    reg = ModelRegistry(tmp_path, "det", 4)
    with pytest.raises(RuntimeError):
        with reg.stage() as staged:
            (staged.path / "weights.bin").write_text("half")
            raise RuntimeError("training crashed")
    assert reg.list() == [] and reg.current() is None
    assert not any(reg.versions_dir.iterdir())


def test_readers_never_see_a_half_published_version(tmp_path):
    reg = ModelRegistry(tmp_path, "det", 4)
    publish(reg, "payload-0")
    stop, failures = threading.Event(), []

    def reader():
        while not stop.is_set():
            try:
                version = reg.current()
                text = (version.path / "weights.bin").read_text()
                assert text.startswith("payload-") and version.metadata["name"] == version.name
            except Exception as exc:
                failures.append(repr(exc))

    threads = [threading.Thread(target=reader) for _ in range(4)]
    [t.start() for t in threads]
    for i in range(1, 30):
        publish(reg, f"payload-{i}")
    stop.set()
    [t.join() for t in threads]
    assert failures == []
    assert reg.current_name() == "det-v30"
