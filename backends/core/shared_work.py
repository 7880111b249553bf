"""Work split into chunks that several processes can share: the job that owns the work and any
number of helpers (RQ workers, on any machine sharing ``DATA_DIR``) take chunks until none is left.

Why files and not Redis: the model store and the journal already live on storage every worker
shares, the results have to land there anyway, and the owner must finish alone when no helper ever
shows up (embedded mode, every RQ worker busy). So the board is a directory named after a digest
of its plan, so that a helper still holding an old plan can never write into a newer board:

- ``plan.json``: what the work is; helpers read it to know what to run;
- ``<k>.claim``: chunk ``k`` is taken; created with ``O_EXCL`` so exactly one process wins it. Its
  mtime is a heartbeat, touched by a background thread while the chunk is computed. A claim whose
  mtime has not moved for a lease, as timed by the observer's own monotonic clock (never comparing
  clocks of two machines: NFS mtimes come from the server's), belongs to a process that died, and
  is taken over. The chunk is then computed twice at worst, never lost; results are atomic;
- ``<k>.json``: chunk ``k``'s result, written to a temporary file and renamed.

The owner deletes the directory when it has merged the results; a helper that finds it gone stops.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .files import write_json_atomic

PLAN = "plan.json"


class BoardGone(Exception):
    """The owner finished or cancelled the work and removed the board."""


class ChunkBoard:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._plan: dict[str, Any] | None = None
        # chunk -> (claim mtime, monotonic time this process first saw that mtime): staleness is
        # judged by how long a claim stays unchanged here, so clock skew between machines is harmless
        self._seen: dict[int, tuple[float, float]] = {}

    # -- the owner's side -----------------------------------------------------------------------
    @classmethod
    def create(cls, parent: Path, name: str, plan: dict[str, Any], n_chunks: int,
               lease_s: float = 60.0) -> ChunkBoard:
        """The board ``<name>.<digest of the plan>.board`` in ``parent``. A restarted owner with the
        same plan finds its finished chunks; boards of ``name`` for other plans are removed, and their
        helpers stop at their next step. A claim not beaten for ``lease_s`` is taken over (the claims
        of a restarted owner's previous life, too)."""
        plan = {**plan, "n_chunks": n_chunks, "lease_s": lease_s}
        digest = hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()[:16]
        board = cls(parent / f"{name}.{digest}.board")
        for other in parent.glob(f"{glob.escape(name)}.*.board"):
            if other != board.root:
                shutil.rmtree(other, ignore_errors=True)
        if board.plan() != plan:  # new, or a plan file torn by a crash
            board.remove()
            board.root.mkdir(parents=True, exist_ok=True)
            write_json_atomic(board.root / PLAN, plan)
            board._plan = plan
        return board

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def work(self, compute: Callable[[int], dict[str, Any]], *, poll_s: float = 0.2,
             on_wait: Callable[[], None] | None = None) -> dict[int, dict[str, Any]]:
        """The owner's loop: compute every chunk it can claim, then wait for chunks claimed by others,
        taking over those whose claimer stopped beating. Returns every chunk's result."""
        while True:
            self.help(compute)
            if not self._unfinished():
                results = self._read_results()
                if len(results) == self.n_chunks:
                    return results
                continue  # an unreadable result was dropped: computed again
            if on_wait is not None:
                on_wait()
            time.sleep(poll_s)

    # -- everyone's side --------------------------------------------------------------------------
    def plan(self) -> dict[str, Any] | None:
        """The plan, read once (it never changes while the board exists); None when there is none."""
        if self._plan is None:
            try:
                self._plan = json.loads((self.root / PLAN).read_text())
            except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
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

    def help(self, compute: Callable[[int], dict[str, Any]]) -> list[int]:
        """Claim, compute and finish chunks until every chunk is finished or held by a live process;
        returns the chunks done here. Raises :class:`BoardGone` when the owner removed the board."""
        done = []
        while (k := self._claim_next()) is not None:
            with self._holding(k):
                self.finish(k, compute(k))
            done.append(k)
        return done

    def finish(self, k: int, result: dict[str, Any]) -> None:
        try:
            write_json_atomic(self.root / f"{k}.json", result)
        except FileNotFoundError:
            raise BoardGone(str(self.root)) from None

    def heartbeat(self, k: int) -> None:
        try:
            os.utime(self.root / f"{k}.claim")
        except FileNotFoundError:
            if not (self.root / PLAN).exists():
                raise BoardGone(str(self.root)) from None
            # mid-takeover by a process that thought this one dead: the chunk may be computed twice

    def count_finished(self) -> int:
        return self.n_chunks - len(self._unfinished())

    def complete(self) -> bool:
        return not self._unfinished()

    # -- internals ----------------------------------------------------------------------------------
    @contextmanager
    def _holding(self, k: int) -> Iterator[None]:
        """Beat chunk ``k``'s claim from a thread while it is computed (inference may outlast the
        lease); on failure give the claim up at once rather than after a lease."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.lease_s / 4):
                try:
                    self.heartbeat(k)
                except BoardGone:
                    return

        beating = threading.Thread(target=beat, name=f"chunk-{k}-heartbeat", daemon=True)
        beating.start()
        try:
            yield
        except BaseException:
            (self.root / f"{k}.claim").unlink(missing_ok=True)
            raise
        finally:
            stop.set()
            beating.join()

    def _unfinished(self) -> list[int]:
        return [k for k in range(self.n_chunks) if not (self.root / f"{k}.json").is_file()]

    def _read_results(self) -> dict[int, dict[str, Any]]:
        out = {}
        for k in range(self.n_chunks):
            path = self.root / f"{k}.json"
            try:
                out[k] = json.loads(path.read_text())
            except FileNotFoundError:
                raise BoardGone(str(self.root)) from None
            except (json.JSONDecodeError, UnicodeDecodeError):
                path.unlink(missing_ok=True)
                (self.root / f"{k}.claim").unlink(missing_ok=True)
        return out

    def _claim_next(self) -> int | None:
        for k in self._unfinished():
            if self._try_claim(k):
                return k
        return None

    def _try_claim(self, k: int) -> bool:
        claim = self.root / f"{k}.claim"
        try:
            os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return True
        except FileExistsError:
            pass
        except FileNotFoundError:  # the board directory is gone
            raise BoardGone(str(self.root)) from None
        if not self._stale(k, claim):
            return False
        # Take over a dead claimer's chunk. Two processes may do this at once: the second rename can
        # move away the first one's fresh claim, which shows by its mtime; then it is put back.
        tombstone = claim.with_name(f"{claim.name}.{os.getpid()}-{threading.get_ident()}")
        try:
            os.rename(claim, tombstone)
        except FileNotFoundError:
            return False
        try:
            if tombstone.stat().st_mtime != self._seen[k][0]:
                _restore(tombstone, claim)
                return False
        finally:
            tombstone.unlink(missing_ok=True)
        self._seen.pop(k, None)
        try:
            os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return True
        except FileExistsError:
            return False
        except FileNotFoundError:
            raise BoardGone(str(self.root)) from None

    def _stale(self, k: int, claim: Path) -> bool:
        try:
            mtime = claim.stat().st_mtime
        except FileNotFoundError:
            return False  # finished or taken over meanwhile; the next pass sees which
        now = time.monotonic()
        seen = self._seen.get(k)
        if seen is None or seen[0] != mtime:
            self._seen[k] = (mtime, now)
            return False
        return now - seen[1] > self.lease_s


def _restore(tombstone: Path, claim: Path) -> None:
    """Put a live claim back unless a newer one exists (link refuses to overwrite; rename does not)."""
    try:
        os.link(tombstone, claim)
    except FileExistsError:
        pass
    except OSError:  # a filesystem without hard links
        if not claim.exists():
            os.rename(tombstone, claim)
