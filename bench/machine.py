"""What a benchmark ran on, for its results file (figures from a CPU and a GPU are not comparable)."""

from __future__ import annotations

import os


def device_name(device: str = "auto") -> str:
    """The GPU's name for ``cuda[:N]`` (``auto``: cuda when torch sees one), Apple's GPU for ``mps``,
    else the CPU and its cores."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    return "Apple GPU (mps)" if device.startswith("mps") else f"cpu ({os.cpu_count()} cores)"
