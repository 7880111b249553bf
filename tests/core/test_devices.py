"""The one device rule the detector, the segmenter and the active backend share."""

from __future__ import annotations

import pytest
import torch

from backends.core.devices import AUTO_GPU, resolve_device


def test_auto_is_the_cpu_without_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    # forced, not read from this machine: the test means the same on a GPU runner
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device() == "cpu"
    assert resolve_device("auto") == "cpu"


def test_auto_is_the_first_gpu_when_torch_sees_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == AUTO_GPU == "cuda:0"


@pytest.mark.parametrize("requested", ["cpu", "cuda", "cuda:1", "mps"])
def test_an_explicit_device_passes_through(monkeypatch: pytest.MonkeyPatch, requested: str) -> None:
    # an operator's choice is theirs, GPU or not: no availability check rewrites it
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(requested) == requested


def test_the_spelling_torch_accepts() -> None:
    assert torch.device(AUTO_GPU) == torch.device("cuda", 0)
