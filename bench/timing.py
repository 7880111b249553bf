"""Timing one call repeatedly, shared by the benchmarks."""

from __future__ import annotations

import time
from typing import Any


def timed(fn: Any, n: int) -> list[float]:
    """Seconds of each of ``n`` calls of ``fn``, after one call that is not counted (a warm-up)."""
    fn()
    out = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out
