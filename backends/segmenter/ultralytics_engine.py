"""MobileSAM and SAM 2.1 in PyTorch, through ultralytics' SAM builders and predictors.

``embed`` runs the predictor's own preprocessing (long side to 1024, padded bottom/right) and
image encoder: a tensor for MobileSAM, for SAM 2 a dict of the image embedding and its two
high-resolution feature maps, all three needed by its decoder. ``decode`` is the predictor's
``inference_features``, which maps prompts into the encoder's frame and masks back to the image.
One object per click: points go in as one group (shape 1 x N x 2), not as N objects. After setup
the predictor's state is only read (we never give it an image source), so embeds and decodes
need no lock: a click on a warm image never waits behind another image's encoder run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import numpy as np

from backends.core.devices import use_every_core_for_torch

from .engine import Embedding, Prompt, fixed_seed, load_weights, weights_id
from .sam_engine import best_mask, engine_name

if TYPE_CHECKING:
    from .engine import EngineChoice

INPUT_SIZE = 1024  # the encoders' square input
BUILDERS = {("mobile_sam", "vit_t"): "build_mobile_sam", ("sam2", "tiny"): "build_sam2_t",
            ("sam2", "small"): "build_sam2_s", ("sam2", "base_plus"): "build_sam2_b", ("sam2", "large"): "build_sam2_l"}


class UltralyticsEngine:
    def __init__(self, choice: EngineChoice, state: dict[str, Any] | None) -> None:
        from ultralytics.models.sam import build
        from ultralytics.models.sam.predict import Predictor, SAM2Predictor

        with fixed_seed():
            model = getattr(build, BUILDERS[(choice.engine, choice.model_type)])(checkpoint=None)
        if state is not None:
            load_weights(model, state, choice)
        predictor_cls = SAM2Predictor if choice.engine == "sam2" else Predictor
        self.predictor: Any = cast(Any, predictor_cls)(overrides={"imgsz": INPUT_SIZE, "device": choice.device,
                                                                 "verbose": False})
        self.predictor.setup_model(model, verbose=False)
        use_every_core_for_torch()  # ultralytics left torch on one core (its import, its select_device)
        self.predictor.imgsz = [INPUT_SIZE, INPUT_SIZE]  # what setup_source would set for an image source
        self.device = choice.device
        self.name = engine_name(choice)
        self.weights_id = weights_id(choice.checkpoint)
        self.encoder_runs = 0

    def embed(self, image: np.ndarray) -> Embedding:
        import torch

        with torch.inference_mode():
            features = self.predictor.get_im_features(self.encoder_input(image))
        self.encoder_runs += 1
        return Embedding(features, *sizes(image))

    def encoder_input(self, image: np.ndarray) -> Any:
        """The encoder's input tensor for an RGB image: the predictor's own letterbox and
        normalisation (it takes BGR, as OpenCV reads)."""
        import torch

        with torch.inference_mode():
            return self.predictor.preprocess([np.ascontiguousarray(image[..., ::-1])])

    def decode(self, embedding: Embedding, prompt: Prompt, multimask: bool = False) -> tuple[np.ndarray, float]:
        import torch

        points = [prompt.points] if prompt.points else None
        labels = [prompt.labels] if prompt.points else None
        boxes = [list(prompt.box)] if prompt.box is not None else None
        with torch.inference_mode():
            masks, boxes_out = self.predictor.inference_features(
                embedding.features, src_shape=embedding.original_size, dst_shape=(INPUT_SIZE, INPUT_SIZE),
                bboxes=boxes, points=points, labels=labels, multimask_output=multimask)
        return best_mask(masks.cpu().numpy(), boxes_out[:, 4].cpu().numpy())

    def to_image(self, low_res: Any, original_size: tuple[int, int]) -> Any:
        """Decoder logits [K, 256, 256] as boolean masks of the image's size, scaled exactly as
        ``inference_features`` scales its own (the letterboxed content span, then the image)."""
        from ultralytics.utils import ops

        gain = INPUT_SIZE / max(original_size)
        ratio_h, ratio_w = (round(o * gain) * m / INPUT_SIZE / o for o, m in zip(original_size, low_res.shape[1:]))
        scaled = ops.scale_masks(low_res[None].float(), original_size, ((ratio_h, ratio_w), (0.0, 0.0)),
                                 padding=False)[0]
        return scaled > self.predictor.model.mask_threshold


def sizes(image: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
    """(original, resized) (height, width): the long side resized to the encoder's ``INPUT_SIZE``."""
    height, width = image.shape[:2]
    scale = INPUT_SIZE / max(height, width)
    return (height, width), (round(height * scale), round(width * scale))
