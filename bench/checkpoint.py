"""Resumable benchmark runs: what each (seed, strategy) has measured so far, on disk, keyed by protocol.

The active-learning benchmarks run for hours; a killed run resumes where it stopped, and a run
under other settings never reuses figures measured under different ones. Several processes (one
seed each, ``--seed``) may share the file: every write merges what the others saved, under a lock.
The value kept per (seed, strategy) is any JSON: a finished curve (``bench/active_learning.py``) or
a curve in progress with its labeled set (``bench/active_detection.py``, saved after every cycle).
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar


class Checkpoint:
    #: what a file written before a protocol field existed was measured under (that day's default,
    #: which is not always today's)
    when_absent: ClassVar[dict[str, Any]] = {}

    def __init__(self, path: Path | None, protocol: Any) -> None:
        self.path, self.protocol = path, asdict(protocol)
        self.defaults = asdict(type(protocol)())
        self.curves: dict[str, dict[str, Any]] = {}
        self.resumed = 0  # (seed, strategy) pairs not measured by this run: "seconds" covers the others only
        if path is not None and path.exists():
            saved = json.loads(path.read_text())
            if self.same_protocol(saved.get("protocol")):
                self.curves = saved["curves"]

    def same_protocol(self, saved: dict[str, Any] | None) -> bool:
        return saved is not None and {**self.defaults, **self.when_absent, **saved} == self.protocol

    def get(self, seed: int, name: str) -> Any:
        curve = self.curves.get(str(seed), {}).get(name)
        self.resumed += curve is not None
        return curve

    def put(self, seed: int, name: str, curve: Any) -> None:
        """Save this (seed, name)'s value; what other processes saved for theirs is kept as they left
        it (their newer progress is on disk, not in this process's copy)."""
        self.curves.setdefault(str(seed), {})[name] = curve
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.path.exists():
                saved = json.loads(self.path.read_text())
                if not self.same_protocol(saved.get("protocol")):
                    raise SystemExit(f"{self.path} holds a run under another protocol ({saved.get('protocol')}): "
                                     "finish or remove it, or give this run another --out")
                saved["curves"].setdefault(str(seed), {})[name] = curve
                self.curves = saved["curves"]
            scratch = self.path.with_suffix(".tmp")
            scratch.write_text(json.dumps({"protocol": self.protocol, "curves": self.curves}))
            scratch.replace(self.path)  # a kill mid-write leaves the previous checkpoint, not half a file

    def reuse(self, results: Path, strategies: list[str]) -> list[str]:
        """Take ``strategies``' per-seed curves from a finished results file of the same protocol, so a
        change to one strategy re-measures only that one. Returns the strategies taken."""
        if not results.exists():
            return []
        saved = json.loads(results.read_text())
        if not self.same_protocol(saved.get("protocol")):
            raise SystemExit(f"--reuse: {results} was measured under another protocol: {saved.get('protocol')}")
        taken = [name for name in strategies if name in saved["strategies"]]
        for name in taken:
            for seed, curve in enumerate(saved["strategies"][name]["per_seed"]):
                self.curves.setdefault(str(seed), {})[name] = curve
        return taken

    def done(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path.with_suffix(".lock").unlink(missing_ok=True)

    def finish(self, out: Path | None, result: dict[str, Any], plot: Callable[[Path], Any]) -> None:
        """Write the run's results to ``out`` and ``plot`` them beside it (``.png``), then drop the
        checkpoint: the run is whole."""
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2))
            plot(out.with_suffix(".png"))
        self.done()
