"""Segmentation engines behind one small interface: ``embed`` (slow, once per image) and
``decode`` (fast, once per click). Only segment-anything is implemented; a faster engine
(MobileSAM, SAM 2 through ultralytics) needs only these two methods.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from backends.core.devices import resolve_device
from backends.core.errors import LabelLoopError

log = logging.getLogger(__name__)


@dataclass
class Embedding:
    """What the image encoder produced for one image, enough to decode prompts later."""

    features: Any  # torch.Tensor [1, 256, 64, 64] on the engine's device
    original_size: tuple[int, int]  # (height, width)
    input_size: tuple[int, int]  # size after resizing the long side to 1024

    @property
    def nbytes(self) -> int:
        return int(self.features.element_size() * self.features.nelement())


@dataclass
class Prompt:
    points: list[tuple[float, float]]  # pixels in the original image
    labels: list[int]  # 1 positive, 0 negative
    box: tuple[float, float, float, float] | None  # x1, y1, x2, y2 in pixels


class SegmentEngine(Protocol):
    name: str
    encoder_runs: int

    def embed(self, image: np.ndarray) -> Embedding: ...

    def decode(self, embedding: Embedding, prompt: Prompt, multimask: bool = False) -> tuple[np.ndarray, float]: ...


class SamEngine:
    """segment-anything's SAM (vit_b / vit_l / vit_h)."""

    def __init__(self, model_type: str, checkpoint: str | None, allow_random: bool, device: str) -> None:
        import torch
        from segment_anything import SamPredictor, sam_model_registry

        if checkpoint is None and not allow_random:
            raise LabelLoopError(
                "SAM_CHECKPOINT is not set: download the official SAM checkpoint for "
                f"SAM_MODEL_TYPE={model_type} and point SAM_CHECKPOINT at it (or SAM_ALLOW_RANDOM=1 for tests)", status=503
            )
        if checkpoint is not None and not Path(checkpoint).is_file():
            raise LabelLoopError(f"SAM_CHECKPOINT={checkpoint} is not a file: download the official checkpoint for "
                                 f"SAM_MODEL_TYPE={model_type} there (in Docker: into WEIGHTS_DIR)", status=503)
        self.device = resolve_device(device)
        # Random weights (tests, benchmarks) are the same on every start: a test's masks do not
        # change from run to run; the global RNG is left as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            sam = sam_model_registry[model_type](checkpoint=None)
        if checkpoint is not None:
            # weights_only: a checkpoint is a state dict; refuse pickled code.
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
            sam.load_state_dict(state)
        else:
            log.warning("SAM %s with RANDOM weights (SAM_ALLOW_RANDOM): masks are meaningless, latency is real", model_type)
        sam.to(self.device).eval()
        self._predictor_cls = SamPredictor
        self.sam = sam
        self.name = f"sam-{model_type}" + ("" if checkpoint else "-random")
        self.weights_id = weights_id(checkpoint)
        self.encoder_runs = 0
        self._decode_lock = threading.Lock()  # one SamPredictor, reused per decode

        self._predictor = SamPredictor(sam)

    def embed(self, image: np.ndarray) -> Embedding:
        import torch

        predictor = self._predictor_cls(self.sam)  # own transform state: embeds may overlap decodes
        with torch.inference_mode():
            predictor.set_image(image, image_format="RGB")
        self.encoder_runs += 1
        return Embedding(predictor.features, tuple(predictor.original_size), tuple(predictor.input_size))

    def decode(self, embedding: Embedding, prompt: Prompt, multimask: bool = False) -> tuple[np.ndarray, float]:
        import torch

        points = np.array(prompt.points, dtype=np.float32) if prompt.points else None
        labels = np.array(prompt.labels, dtype=np.int32) if prompt.points else None
        box = np.array(prompt.box, dtype=np.float32) if prompt.box is not None else None
        with self._decode_lock, torch.inference_mode():
            p = self._predictor
            p.features, p.original_size, p.input_size = embedding.features, embedding.original_size, embedding.input_size
            p.is_image_set = True
            masks, scores, _ = p.predict(point_coords=points, point_labels=labels, box=box, multimask_output=multimask)
        best = int(np.argmax(scores))
        # SAM's predicted IoU is a regression output, not a probability: it can leave [0, 1] (always
        # with random weights, at times with real ones). Label Studio shows it as the region's score.
        return masks[best], float(np.clip(scores[best], 0.0, 1.0))


def weights_id(checkpoint: str | None) -> str:
    """Which weights: the checkpoint's resolved path, size and modification time (hashing a 2.5 GB
    vit_h file would add seconds to every start), or "random"."""
    if checkpoint is None:
        return "random"
    path = Path(checkpoint).resolve()
    stat = path.stat()
    return f"{path}:{stat.st_size}:{stat.st_mtime_ns}"


@lru_cache(maxsize=2)
def get_engine(model_type: str, checkpoint: str | None, allow_random: bool, device: str) -> SamEngine:
    return SamEngine(model_type, checkpoint, allow_random, device)
