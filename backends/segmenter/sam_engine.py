"""segment-anything's SAM (vit_b / vit_l / vit_h) in PyTorch."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from .engine import Embedding, Prompt, fixed_seed, load_weights, weights_id

if TYPE_CHECKING:
    from .engine import EngineChoice


def engine_name(choice: EngineChoice) -> str:
    """Engine, model type, runtime and whether the weights are random: the caches' key."""
    return f"{choice.engine}-{choice.model_type}-{choice.runtime}" + ("" if choice.checkpoint else "-random")


class SamEngine:
    def __init__(self, choice: EngineChoice, state: dict[str, Any] | None) -> None:
        from segment_anything import SamPredictor, sam_model_registry

        with fixed_seed():
            sam = sam_model_registry[choice.model_type](checkpoint=None)
        if state is not None:
            load_weights(sam, state, choice)
        self.device = choice.device
        sam.to(self.device).eval()
        self._predictor_cls = SamPredictor
        self.sam = sam
        self.name = engine_name(choice)
        self.weights_id = weights_id(choice.checkpoint)
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
        return best_mask(masks, scores)


def best_mask(masks: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, float]:
    """The best-scored mask. SAM's predicted IoU is a regression output, not a probability: it can
    leave [0, 1] (always with random weights, at times with real ones), and Label Studio shows it
    as the region's score, so it is clipped."""
    best = int(np.argmax(scores))
    return masks[best], float(np.clip(scores[best], 0.0, 1.0))
