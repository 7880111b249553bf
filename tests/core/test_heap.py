import os
import platform
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from backends.core.heap import HeapTrimmer

# A 24 MiB buffer freed makes glibc raise its mmap threshold to 24 MiB; a 16 MiB image buffer then
# comes from the heap and its pages stay in RSS after it is freed, until the heap is trimmed. In its
# own process: the threshold is process state that earlier tests would have moved.
FREED_BUFFER_RSS = textwrap.dedent("""
    import numpy as np
    from backends.core.heap import HeapTrimmer

    def rss_mib():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    first = np.ones(24 << 20, dtype=np.uint8)
    del first
    before = rss_mib()
    image = np.ones(16 << 20, dtype=np.uint8)
    del image
    kept = rss_mib() - before
    HeapTrimmer().trim()
    print(kept, rss_mib() - before)
""")

glibc_only = pytest.mark.skipif(not HeapTrimmer().available or platform.system() != "Linux",
                                reason="glibc's allocator")


@glibc_only
def test_a_trim_gives_a_freed_image_buffer_back_to_the_os():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "LD_PRELOAD"}  # glibc's own
    out = subprocess.run([sys.executable, "-c", FREED_BUFFER_RSS], capture_output=True, text=True, check=True, env=env,
                         cwd=Path(__file__).resolve().parents[2], timeout=60).stdout
    kept, after_trim = map(float, out.split())
    assert kept > 12  # what the servers used to accumulate, fragment by fragment
    assert after_trim < 4


@glibc_only
def test_the_trimmer_runs_in_the_background_only_after_requests():
    heap = HeapTrimmer(interval_s=0.05).start()
    time.sleep(0.3)
    assert heap.trims == 0  # an idle server does not walk its heap
    heap.request_done()
    deadline = time.monotonic() + 5
    while heap.trims == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert heap.trims == 1
