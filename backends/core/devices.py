"""Which torch device a backend runs on: one rule for the detector, the segmenter and the active
backend, so ``DEVICE=auto`` means the same GPU everywhere (and a log or a metric names it the same)."""

from __future__ import annotations

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
