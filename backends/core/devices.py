"""Which torch device a backend runs on: one rule for the detector, the segmenter and the active
backend, so ``DEVICE=auto`` means the same GPU everywhere (and a log or a metric names it the same)."""

from __future__ import annotations

import os

#: what ``auto`` picks when torch sees a GPU: the first one, spelled as torch, ultralytics and
#: segment-anything all accept it (a bare "cuda" is the current device, which a worker may change)
AUTO_GPU = "cuda:0"


def resolve_device(requested: str = "auto") -> str:
    """``requested`` itself, unless it is ``auto``: then the first GPU where torch sees one, else the
    CPU. Settings keep ``auto`` (a config file works on both kinds of machine); this turns it into
    what a model's ``.to()`` or ultralytics' ``device=`` needs."""
    if requested != "auto":
        return requested
    import torch  # here, not at the top: importing a backend's settings must not load torch

    return AUTO_GPU if torch.cuda.is_available() else "cpu"


# What OMP_NUM_THREADS was before ultralytics could set it: this module is imported before
# ultralytics (backends/segmenter/engine.py and backends/stack/processes.py import it at the top).
_OMP_BEFORE_ULTRALYTICS = os.environ.get("OMP_NUM_THREADS")


def omp_threads_before_ultralytics() -> str | None:
    """``OMP_NUM_THREADS`` as the user set it (None: unset), whatever ultralytics did since."""
    return _OMP_BEFORE_ULTRALYTICS


def use_every_core_for_torch() -> int:
    """Give torch every core this process may use, unless the user set ``OMP_NUM_THREADS``; returns
    the thread count. ultralytics sets ``OMP_NUM_THREADS=1`` at import when it is unset, and its
    ``select_device`` sets torch to one core fewer than the machine has (to leave room for its
    dataloader workers): on 2 cores torch then computes on one, and MobileSAM's and SAM 2's
    encoders took about twice as long. Call it after ultralytics has chosen the device."""
    import torch

    if omp_threads_before_ultralytics() is None:
        torch.set_num_threads(len(os.sched_getaffinity(0)))
    return int(torch.get_num_threads())
