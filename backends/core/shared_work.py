"""Work split into chunks that several processes can share: the job that owns the work and any
number of helpers (RQ workers, on any machine sharing ``DATA_DIR``) take chunks until none is left.

Why files and not Redis: the model store and the journal already live on storage every worker
shares, the results have to land there anyway, and the owner must finish alone when no helper ever
shows up (embedded mode, every RQ worker busy). So the board is a directory:

- ``plan.json``: what the work is; helpers read it to know what to run;
- ``<k>.claim``: chunk ``k`` is taken; created with ``O_EXCL`` so exactly one process wins it. Its
  mtime is a heartbeat: a claim older than the lease belongs to a process that died, and is taken
  over (the chunk is then computed twice at worst, never lost; results are written atomically);
- ``<k>.json``: chunk ``k``'s result, written to a temporary file and renamed.

The owner deletes the directory when it has merged the results; a helper that finds it gone stops.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

PLAN = "plan.json"


class BoardGone(Exception):
    """The owner finished or cancelled the work and removed the board."""


class ChunkBoard:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._plan: dict[str, Any] | None = None

    # -- the owner's side -----------------------------------------------------------------------
    @classmethod
    def create(cls, root: Path, plan: dict[str, Any], n_chunks: int, lease_s: float = 60.0) -> "ChunkBoard":
        """A board for ``n_chunks``; an existing board with the same plan (a restarted owner) keeps its
        finished chunks, one with another plan is replaced. A claim not beaten for ``lease_s`` is
        taken over (the claims of a restarted owner's previous life, too)."""
        board = cls(root)
        plan = {**plan, "n_chunks": n_chunks, "lease_s": lease_s}
        if board.plan() != plan:
            board.remove()
            root.mkdir(parents=True, exist_ok=True)
            _atomic_write(root / PLAN, plan)
            board._plan = plan
        return board

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    # -- everyone's side --------------------------------------------------------------------------
    def plan(self) -> dict[str, Any] | None:
        """The plan, read once (it never changes while the board exists); None when there is none."""
        if self._plan is None:
            try:
                self._plan = json.loads((self.root / PLAN).read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                return None
        return self._plan

    def _required_plan(self) -> dict[str, Any]:
        plan = self.plan()
        if plan is None:
            raise BoardGone(str(self.root))
        return plan

    @property
    def n_chunks(self) -> int:
        return int(self._required_plan()["n_chunks"])

    @property
    def lease_s(self) -> float:
        return float(self._required_plan()["lease_s"])

    def take(self) -> Iterator[int]:
        """Chunks this process claims, one at a time, until every chunk is finished or claimed by a
        live process. Raises :class:`BoardGone` when the owner removed the board."""
        while True:
            k = self._claim_next()
            if k is None:
                return
            yield k

    def finish(self, k: int, result: dict[str, Any]) -> None:
        try:
            _atomic_write(self.root / f"{k}.json", result)
        except FileNotFoundError:
            raise BoardGone(str(self.root)) from None

    def heartbeat(self, k: int) -> None:
        try:
            os.utime(self.root / f"{k}.claim")
        except FileNotFoundError:
            raise BoardGone(str(self.root)) from None

    def finished(self) -> dict[int, dict[str, Any]]:
        out = {}
        for k in range(self.n_chunks):
            try:
                out[k] = json.loads((self.root / f"{k}.json").read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                continue
        return out

    def count_finished(self) -> int:
        return sum((self.root / f"{k}.json").is_file() for k in range(self.n_chunks))

    def complete(self) -> bool:
        return self.count_finished() == self.n_chunks

    def work(self, compute: Callable[[int], dict[str, Any]], *, poll_s: float = 0.2,
             on_wait: Callable[[], None] | None = None) -> dict[int, dict[str, Any]]:
        """The owner's loop: compute every chunk it can claim, then wait for chunks claimed by others,
        taking over those whose claimer stopped beating. Returns every chunk's result."""
        while not self.complete():
            progressed = False
            for k in self.take():
                self.finish(k, compute(k))
                progressed = True
            if not progressed and not self.complete():
                if on_wait is not None:
                    on_wait()
                time.sleep(poll_s)
        return self.finished()

    def _claim_next(self) -> int | None:
        for k in range(self.n_chunks):
            if (self.root / f"{k}.json").is_file():
                continue
            claim = self.root / f"{k}.claim"
            if self._try_claim(claim):
                return k
        return None

    def _try_claim(self, claim: Path) -> bool:
        try:
            os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return True
        except FileExistsError:
            pass
        except FileNotFoundError:  # the board directory is gone
            raise BoardGone(str(self.root)) from None
        try:
            stale = time.time() - claim.stat().st_mtime > self.lease_s
        except FileNotFoundError:
            return False  # finished or taken over meanwhile; the next pass sees which
        if stale:
            # Take over a dead claimer's chunk: rename is atomic, so of two processes doing this at
            # once only one moves the stale claim away; that one claims afresh.
            tombstone = claim.with_suffix(f".stale-{os.getpid()}")
            try:
                os.rename(claim, tombstone)
            except FileNotFoundError:
                return False
            tombstone.unlink(missing_ok=True)
            return self._try_claim(claim)
        return False


def _atomic_write(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
