"""Scratch directories: a dead owner's are removed; a live one's, another host's, or another pid
namespace's (containers sharing a hostname) never are."""

import os
import subprocess
import sys

from backends.core import scratch


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_this_owners_dead_directories_are_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(scratch, "owner_tag", lambda: "gpu_7")
    dead = dead_pid()
    mine_dead = tmp_path / f".staging-gpu_7-{dead}-abc_1"
    mine_alive = tmp_path / f".staging-gpu_7-{os.getpid()}-abc_2"
    other_host = tmp_path / f".staging-gpu-31337_7-{dead}-abc_3"  # host "gpu-31337", not "gpu"
    other_namespace = tmp_path / f".staging-gpu_8-{dead}-abc_4"  # same hostname, another container
    other_prefix = tmp_path / f"detector-gpu_7-{dead}-abc_5"
    for path in (mine_dead, mine_alive, other_host, other_namespace, other_prefix):
        path.mkdir()
    assert scratch.remove_orphans(tmp_path, ".staging-") == [mine_dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (mine_alive, other_host, other_namespace, other_prefix))


def test_owned_tempdir_is_recognised_as_this_owners(tmp_path):
    path = scratch.owned_tempdir(tmp_path, "detector-")
    tag, pid, _ = path.name[len("detector-"):].rsplit("-", 2)
    assert tag == scratch.owner_tag() and int(pid) == os.getpid()
    assert scratch.remove_orphans(tmp_path, "detector-") == [] and path.is_dir()
