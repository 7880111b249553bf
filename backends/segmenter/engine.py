"""Segmentation engines behind one small interface: ``embed`` (slow, once per image) and
``decode`` (fast, once per click), and how the settings choose one (built in ``build.py``).

Engines (``SAM_ENGINE``): ``sam`` (segment-anything's vit_b / vit_l / vit_h), ``mobile_sam``
(MobileSAM's TinyViT encoder with SAM's decoder) and ``sam2`` (SAM 2.1 tiny / small / base_plus /
large), the last two built by ultralytics' SAM builders, so no heavy dependency beyond the lock.
``auto`` takes the engine a checkpoint's weights belong to, else ``SAM_MODEL_TYPE``'s engine, else
MobileSAM on a CPU and SAM 2.1 on a GPU (the measured defaults, docs/segmenter.md).

Weights are read with ``torch.load(weights_only=True)``: a checkpoint is a state dict (bare, or
under ``"model"`` as ultralytics' releases store it) and pickled code in it is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from backends.core.devices import use_every_core_for_torch  # noqa: F401 - imported before ultralytics
from backends.core.errors import LabelLoopError

# Every engine's model types; the first is the engine's default.
MODEL_TYPES: dict[str, tuple[str, ...]] = {
    "sam": ("vit_b", "vit_l", "vit_h"),
    "mobile_sam": ("vit_t",),
    "sam2": ("tiny", "small", "base_plus", "large"),
}
RUNTIMES = ("torch", "onnx")


@dataclass
class Embedding:
    """What the image encoder produced for one image, enough to decode prompts later."""

    features: Any  # a tensor [1, 256, 64, 64] (SAM, MobileSAM), or a dict of tensors (SAM 2's three levels)
    original_size: tuple[int, int]  # (height, width)
    input_size: tuple[int, int]  # size after resizing the long side to 1024

    @property
    def nbytes(self) -> int:
        return sum(int(t.element_size() * t.nelement()) for t in _tensors(self.features))


def _tensors(features: Any) -> Iterator[Any]:
    if isinstance(features, dict):
        for value in features.values():
            yield from _tensors(value)
    elif isinstance(features, (list, tuple)):
        for value in features:
            yield from _tensors(value)
    else:
        yield features


@dataclass
class Prompt:
    points: list[tuple[float, float]]  # pixels in the original image
    labels: list[int]  # 1 positive, 0 negative
    box: tuple[float, float, float, float] | None  # x1, y1, x2, y2 in pixels


class SegmentEngine(Protocol):
    name: str  # engine, model type and runtime: embeddings of two names are never mixed
    weights_id: str
    device: str
    encoder_runs: int

    def embed(self, image: np.ndarray) -> Embedding: ...

    def decode(self, embedding: Embedding, prompt: Prompt, multimask: bool = False) -> tuple[np.ndarray, float]: ...


@dataclass(frozen=True)
class EngineChoice:
    """What to build, resolved from the ``SAM_*`` settings: every name in it is valid."""

    engine: str
    model_type: str
    runtime: str
    checkpoint: str | None
    device: str


def weights_id(checkpoint: str | None) -> str:
    """Which weights: the checkpoint's resolved path, size and modification time (hashing a 2.5 GB
    vit_h file would add seconds to every start), or "random"."""
    if checkpoint is None:
        return "random"
    path = Path(checkpoint).resolve()
    stat = path.stat()
    return f"{path}:{stat.st_size}:{stat.st_mtime_ns}"


def read_checkpoint(checkpoint: str) -> dict[str, Any]:
    """A checkpoint's state dict, read without running pickled code."""
    import torch

    if not Path(checkpoint).is_file():
        raise LabelLoopError(f"SAM_CHECKPOINT={checkpoint} is not a file: download the checkpoint of your SAM_ENGINE "
                             "there (in Docker: into WEIGHTS_DIR)", status=503)
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise LabelLoopError(f"SAM_CHECKPOINT={checkpoint} is not a state dict that loads without running code "
                             f"({type(exc).__name__}: {str(exc)[:200]})", status=503) from exc
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise LabelLoopError(f"SAM_CHECKPOINT={checkpoint} holds a {type(state).__name__}, not a state dict", status=503)
    return state


def sniff(state: dict[str, Any]) -> tuple[str, str] | None:
    """(engine, model type) a state dict's keys belong to, or None when they belong to none."""
    if any(k.startswith("image_encoder.trunk.") for k in state):
        blocks = {k.split(".")[3] for k in state if k.startswith("image_encoder.trunk.blocks.")}
        return "sam2", {12: "tiny", 16: "small", 24: "base_plus", 48: "large"}.get(len(blocks), "tiny")
    if any(k.startswith("image_encoder.layers.") for k in state):
        return "mobile_sam", "vit_t"
    patch = state.get("image_encoder.patch_embed.proj.weight")
    if patch is not None:
        return "sam", {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}.get(int(patch.shape[0]), "vit_b")
    return None


def load_weights(module: Any, state: dict[str, Any], choice: EngineChoice) -> None:
    """``state`` into ``module``, or a 503 that says which engine the checkpoint belongs to."""
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        found = sniff(state)
        belongs = f"it holds {found[0]} {found[1]} weights" if found else "its keys are no SAM model's"
        raise LabelLoopError(f"SAM_CHECKPOINT={choice.checkpoint} does not fit SAM_ENGINE={choice.engine} "
                             f"SAM_MODEL_TYPE={choice.model_type}: {belongs}", status=503) from exc


@contextmanager
def fixed_seed() -> Iterator[None]:
    """Random weights (tests, benchmarks) are the same on every start, so a test's masks do not
    change from run to run; the global RNG is left as it was."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield


def choose(engine: str, model_type: str | None, runtime: str, checkpoint: str | None, allow_random: bool,
           device: str) -> tuple[EngineChoice, dict[str, Any] | None]:
    """The engine the settings name, and the checkpoint's state dict (read once, here)."""
    if checkpoint is None and not allow_random:
        raise LabelLoopError("SAM_CHECKPOINT is not set: download a checkpoint of SAM_ENGINE (MobileSAM's "
                             "mobile_sam.pt, SAM 2.1's sam2.1_t.pt or SAM's sam_vit_b_01ec64.pth) and point "
                             "SAM_CHECKPOINT at it (or SAM_ALLOW_RANDOM=1 for tests)", status=503)
    state = read_checkpoint(checkpoint) if checkpoint else None
    found = sniff(state) if state is not None else None
    if engine == "auto":
        engine = (found[0] if found else None) or _engine_of(model_type) or (
            "sam2" if device.startswith("cuda") else "mobile_sam")
    if engine not in MODEL_TYPES:
        raise LabelLoopError(f"SAM_ENGINE={engine!r} is not an engine: one of auto, {', '.join(MODEL_TYPES)}", status=503)
    model_type = model_type or (found[1] if found and found[0] == engine else MODEL_TYPES[engine][0])
    if model_type not in MODEL_TYPES[engine]:
        raise LabelLoopError(f"SAM_MODEL_TYPE={model_type!r} is not a {engine} model: one of "
                             f"{', '.join(MODEL_TYPES[engine])}", status=503)
    if runtime == "auto":  # measured: bench/results/segmenter.json, docs/segmenter.md
        runtime = "onnx" if engine == "mobile_sam" and device == "cpu" else "torch"
    if runtime not in RUNTIMES:
        raise LabelLoopError(f"SAM_RUNTIME={runtime!r} is not a runtime: one of auto, {', '.join(RUNTIMES)}", status=503)
    return EngineChoice(engine, model_type, runtime, checkpoint, device), state


def _engine_of(model_type: str | None) -> str | None:
    return next((e for e, types in MODEL_TYPES.items() if model_type in types), None)
