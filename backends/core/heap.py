"""Give a long-running server's freed heap pages back to the OS now and then (glibc only).

Every request decodes an image and builds multi-megabyte arrays and tensors from it. glibc serves
the first of those with ``mmap``, then raises its threshold (up to 32 MiB) to save system calls:
later image buffers come from the heap, between smaller objects that outlive them, and a heap
fragmented that way keeps its freed pages. With SAM's encoder stubbed (``bench/hardening.py
--segmenter stub-encoder``), the segmenter's RSS grew ~0.5 MiB per new image, noisily, well past its
bounded caches.

Fixing the mmap threshold low stops that but costs a fresh ``mmap`` and page faults for every large
buffer: measured, a click on a cached image went from 1.3x to 1.9x the bare decoder call on 2 CPU
cores. ``malloc_trim`` instead hands back every free page of the heap at once; run by a background
thread at most once a second while requests come, it costs one heap walk per second, not per buffer.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``; None elsewhere (musl and macOS give freed memory back their own way)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        log.debug("no malloc_trim in this C library: freed heap pages stay with the allocator")
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


class HeapTrimmer:
    """A daemon thread that trims the heap every ``interval_s`` seconds in which a request finished.

    Off the request path: a trim walks the whole heap (milliseconds on a GB-sized one). A request
    thread allocating meanwhile may wait on an arena lock, but none waits for the walk itself.
    """

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self.trims = 0
        self._trim = _malloc_trim()
        self._used = threading.Event()

    @property
    def available(self) -> bool:
        return self._trim is not None

    def request_done(self) -> None:
        self._used.set()

    def start(self) -> HeapTrimmer:
        if self._trim is not None:
            threading.Thread(target=self._run, name="heap-trim", daemon=True).start()
        return self

    def _run(self) -> None:
        while True:
            self._used.wait()
            time.sleep(self.interval_s)
            self._used.clear()
            self.trim()

    def trim(self) -> None:
        if self._trim is not None:
            self._trim(0)
            self.trims += 1
