"""Seconds per stage of a job, for its result and the benchmarks that read it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Timings(dict[str, float]):
    """``with timings("train"): ...`` adds the block's wall time under ``"train"`` (rounded to
    10 ms), also when the block raises: a failed stage's time is what a user debugging it needs."""

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self[stage] = round(self.get(stage, 0.0) + time.perf_counter() - started, 2)
