"""ChunkBoard: chunks shared by processes, each computed once, a dead claimer's chunk taken over."""

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from backends.core.shared_work import BoardGone, ChunkBoard

TAKER = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    from backends.core.shared_work import ChunkBoard
    board = ChunkBoard(Path(sys.argv[1]))
    done = []
    for k in board.take():
        time.sleep(0.2)
        board.finish(k, {"by": os.getpid()})
        done.append(k)
    print(json.dumps(done))
""")


def test_two_processes_share_the_chunks_and_none_is_computed_twice(tmp_path):
    board = ChunkBoard.create(tmp_path / "board", {"what": "test"}, 20)
    procs = [subprocess.Popen([sys.executable, "-c", TAKER, str(board.root)], stdout=subprocess.PIPE, text=True,
                              cwd=os.getcwd()) for _ in range(2)]
    outputs = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    assert sorted(outputs[0] + outputs[1]) == list(range(20)), outputs
    assert all(outputs), f"one process got no chunk: {outputs}"
    finished = board.finished()
    assert len(finished) == 20 and {r["by"] for r in finished.values()} == {p.pid for p in procs}


def test_a_dead_claimers_chunk_is_taken_over_after_the_lease(tmp_path):
    board = ChunkBoard.create(tmp_path / "board", {"what": "test"}, 4, lease_s=0.5)
    (board.root / "0.claim").touch()
    os.utime(board.root / "0.claim", (time.time() - 10, time.time() - 10))  # died long ago
    (board.root / "1.claim").touch()  # claimed just now by a process that then dies
    computed = []
    started = time.time()
    results = board.work(lambda k: computed.append(k) or {"k": k}, poll_s=0.05)
    assert sorted(results) == [0, 1, 2, 3] and sorted(computed) == [0, 1, 2, 3]
    assert computed[-1] == 1 and time.time() - started >= 0.4, "the fresh claim was waited for, then taken over"


def test_a_live_claimer_keeps_its_chunk_by_beating(tmp_path):
    board = ChunkBoard.create(tmp_path / "board", {"what": "test"}, 2, lease_s=0.5)
    assert list(board.take()) == [0, 1]
    time.sleep(0.3)
    board.heartbeat(0)
    time.sleep(0.3)
    assert list(ChunkBoard(board.root).take()) == [1], "chunk 0's claimer beat; chunk 1's did not"


def test_a_restarted_owner_keeps_finished_chunks_of_the_same_plan_only(tmp_path):
    plan = {"what": "test", "chunks": [[1, "a"], [2, "b"]]}
    board = ChunkBoard.create(tmp_path / "board", plan, 2, lease_s=0.1)
    board.finish(0, {"k": 0})
    again = ChunkBoard.create(tmp_path / "board", plan, 2, lease_s=0.1)
    assert list(again.finished()) == [0]
    other = ChunkBoard.create(tmp_path / "board", {**plan, "chunks": [[3, "c"], [4, "d"]]}, 2, lease_s=0.1)
    assert other.finished() == {} and other.plan()["chunks"] == [[3, "c"], [4, "d"]]


def test_a_helper_stops_when_the_owner_removed_the_board(tmp_path):
    board = ChunkBoard.create(tmp_path / "board", {"what": "test"}, 3)
    helper = ChunkBoard(board.root)
    taking = helper.take()
    assert next(taking) == 0
    board.remove()
    with pytest.raises(BoardGone):
        helper.finish(0, {"k": 0})
    with pytest.raises(BoardGone):
        next(taking)
    assert ChunkBoard(board.root).plan() is None
