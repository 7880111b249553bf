"""Third-party caches and settings live under DATA_DIR, never in the working directory or $HOME.

ultralytics (its settings file and fonts), matplotlib (a font cache, built on first import), torch
(hub checkpoints, compiled kernels) and anything that follows XDG write where an environment variable says, else
into ``$HOME`` or the working directory. In the images the working directory is the code (``/app``,
read-only to the backends' user) and ``$HOME`` is not a volume, so what they wrote there would
either fail or vanish with the container. Every process of every backend calls
``keep_caches_under`` before those libraries are imported (``Services.from_settings``); a variable
the operator set keeps its value.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_VARIABLES = {
    "YOLO_CONFIG_DIR": "ultralytics",  # settings.json, Arial fonts for plots
    "MPLCONFIGDIR": "matplotlib",  # matplotlib's font cache
    "TORCH_HOME": "torch",  # torch.hub downloads
    "TORCHINDUCTOR_CACHE_DIR": "torch/inductor",  # compiled kernels (the ONNX export imports dynamo)
    "TRITON_CACHE_DIR": "triton",  # GPU kernels
    "XDG_CACHE_HOME": "cache",  # everything else that follows XDG
}


def keep_caches_under(data_dir: Path) -> dict[str, str]:
    """Point every variable of CACHE_VARIABLES that is unset at a folder under ``data_dir``;
    returns the values in force. Idempotent, and cheap enough to call per request."""
    root = Path(data_dir).absolute()  # a relative DATA_DIR must not follow a later chdir
    return {name: os.environ.setdefault(name, str(root / folder)) for name, folder in CACHE_VARIABLES.items()}
