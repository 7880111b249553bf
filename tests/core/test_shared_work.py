"""ChunkBoard: chunks shared by processes, each computed once, a dead claimer's chunk taken over,
a live one's kept while it computes, and a helper of an old plan unable to touch a newer board."""

import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from backends.core.shared_work import BoardGone, ChunkBoard

TAKER = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    from backends.core.shared_work import ChunkBoard
    board = ChunkBoard(Path(sys.argv[1]))
    print(json.dumps(board.help(lambda k: time.sleep(0.2) or {"by": os.getpid()})))
""")


def make(tmp_path, n, lease_s=60.0, plan=None):
    return ChunkBoard.create(tmp_path, "v1.unlabeled", plan or {"what": "test"}, n, lease_s=lease_s)


def test_two_processes_share_the_chunks_and_none_is_computed_twice(tmp_path):
    board = make(tmp_path, 20)
    procs = [subprocess.Popen([sys.executable, "-c", TAKER, str(board.root)], stdout=subprocess.PIPE, text=True,
                              cwd=os.getcwd()) for _ in range(2)]
    outputs = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    assert sorted(outputs[0] + outputs[1]) == list(range(20)), outputs
    assert all(outputs), f"one process got no chunk: {outputs}"
    results = board.work(lambda k: pytest.fail("every chunk was done by the helpers"))
    assert len(results) == 20 and {r["by"] for r in results.values()} == {p.pid for p in procs}


def test_a_dead_claimers_chunk_is_taken_over_after_a_lease_of_silence(tmp_path):
    board = make(tmp_path, 4, lease_s=0.5)
    (board.root / "0.claim").touch()
    os.utime(board.root / "0.claim", (time.time() + 3600, time.time() + 3600))  # a clock an hour ahead
    (board.root / "1.claim").touch()  # claimed just now by a process that then dies
    computed = []
    started = time.time()
    results = board.work(lambda k: computed.append(k) or {"k": k}, poll_s=0.05)
    assert sorted(results) == [0, 1, 2, 3] and sorted(computed) == [0, 1, 2, 3]
    assert computed[:2] == [2, 3] and time.time() - started >= 0.5, "claims were waited on for a lease"


def test_a_live_claimer_keeps_its_chunk_while_computing_longer_than_the_lease(tmp_path):
    board = make(tmp_path, 1, lease_s=0.4)
    started = threading.Event()
    worker = threading.Thread(target=board.help, args=(lambda k: started.set() or time.sleep(1.6) or {"k": k},))
    worker.start()
    started.wait(5)
    other = ChunkBoard(board.root)
    deadline = time.time() + 1.2
    while time.time() < deadline:
        assert other._claim_next() is None, "the chunk was taken from a claimer that was still computing"
        time.sleep(0.05)
    worker.join()
    assert board.complete()


def test_a_failed_chunk_is_released_at_once(tmp_path):
    board = make(tmp_path, 2)
    with pytest.raises(ZeroDivisionError):
        board.help(lambda k: 1 / 0)
    assert not (board.root / "0.claim").exists()
    assert ChunkBoard(board.root).help(lambda k: {"k": k}) == [0, 1]


def test_two_takeovers_at_once_leave_one_claimer(tmp_path):
    board = make(tmp_path, 1, lease_s=0.1)
    claim = board.root / "0.claim"
    claim.touch()
    old = claim.stat().st_mtime
    first, second = ChunkBoard(board.root), ChunkBoard(board.root)
    first._stale(0, claim)
    time.sleep(0.2)
    assert first._try_claim(0), "the first takes the dead claim over"
    # the second judged the old claim stale just before the first renamed it: its rename now moves
    # the first one's fresh claim, which it must put back
    second._seen[0] = (old, time.monotonic() - 1)
    second._stale = lambda k, path: True
    assert not second._try_claim(0)
    assert claim.exists() and claim.stat().st_mtime != old
    assert [p.name for p in board.root.iterdir() if p.name.startswith("0.claim.")] == []


def test_a_heartbeat_mid_takeover_is_no_board_gone(tmp_path):
    board = make(tmp_path, 1)
    assert board._claim_next() == 0
    (board.root / "0.claim").unlink()  # renamed away by a process that thought this one dead
    board.heartbeat(0)
    board.remove()
    with pytest.raises(BoardGone):
        board.heartbeat(0)


def test_a_restarted_owner_keeps_finished_chunks_of_the_same_plan_only(tmp_path):
    plan = {"what": "test", "chunks": [[1, "a"], [2, "b"]]}
    board = make(tmp_path, 2, 0.1, plan)
    board.finish(0, {"k": 0})
    again = make(tmp_path, 2, 0.1, plan)
    assert again.root == board.root and again._unfinished() == [1]
    other = make(tmp_path, 2, 0.1, {**plan, "chunks": [[3, "c"], [4, "d"]]})
    assert other.root != board.root and not board.root.exists(), "the old plan's board is removed"
    assert other._unfinished() == [0, 1] and other.plan()["chunks"] == [[3, "c"], [4, "d"]]


def test_a_helper_of_an_old_plan_never_writes_into_the_new_board(tmp_path):
    old = make(tmp_path, 2, plan={"chunks": "old"})
    helper = ChunkBoard(old.root)
    assert helper._claim_next() == 0
    new = make(tmp_path, 2, plan={"chunks": "new"})
    with pytest.raises(BoardGone):
        helper.finish(0, {"from": "old"})
    with pytest.raises(BoardGone):
        helper._claim_next()
    assert new._unfinished() == [0, 1]


def test_an_unreadable_result_is_computed_again(tmp_path):
    board = make(tmp_path, 2)
    board.finish(0, {"k": 0})
    (board.root / "1.json").write_text("{")
    computed = []
    assert board.work(lambda k: computed.append(k) or {"k": k}, poll_s=0.01) == {0: {"k": 0}, 1: {"k": 1}}
    assert computed == [1]


def test_a_helper_stops_when_the_owner_removed_the_board(tmp_path):
    board = make(tmp_path, 3)
    helper = ChunkBoard(board.root)
    with pytest.raises(BoardGone):
        helper.help(lambda k: board.remove() or {"k": k})
    assert ChunkBoard(board.root).plan() is None
