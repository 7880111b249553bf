"""MobileSAM through ONNX Runtime on the CPU (``SAM_RUNTIME=onnx``).

The image encoder and the prompt decoder (prompt encoder + mask decoder) are exported from the
PyTorch engine's own modules once per weights, into ``DATA_DIR/sam-onnx/<engine>-<weights hash>/``,
and loaded from there on every later start. Pre- and post-processing stay the PyTorch engine's
(ultralytics' letterbox and mask scaling), so the two runtimes differ only in the networks'
arithmetic: masks agree within ``MASK_IOU_TOLERANCE`` (tests/segmenter/test_onnx_engine.py).

The decoder takes every prompt as points in the encoder's 1024 frame with SAM's point labels:
1 positive, 0 negative, 2 / 3 a box's corners, -1 padding (added when there is no box, as SAM's
prompt encoder does), so one graph serves clicks, boxes and both. Only MobileSAM is exported, the
engine whose encoder it makes fast enough for a CPU; ``SAM_RUNTIME=onnx`` with another engine is a
503 (SAM 2's decoder also needs the encoder's high-resolution maps; SAM vit_b-h stay on PyTorch).

A cache file that does not load (torn, truncated, foreign) is deleted and exported again once.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from backends.core.errors import LabelLoopError

from .engine import Embedding, Prompt, weights_id
from .sam_engine import best_mask, engine_name
from .ultralytics_engine import INPUT_SIZE, UltralyticsEngine, sizes

if TYPE_CHECKING:
    from .engine import EngineChoice

log = logging.getLogger(__name__)
MASK_IOU_TOLERANCE = 0.98  # ONNX vs PyTorch masks of the same prompt, IoU at least this
OPSET = 17
FILES = ("encoder.onnx", "decoder.onnx")


def prompt_decoder(model: Any) -> Any:
    """The exported decoder: (features, coords [1, N, 2] in the 1024 frame, labels [1, N]) ->
    (low-resolution masks [1, 4, 256, 256] logits, predicted IoUs [1, 4]); the first mask is the
    single-mask answer, the other three the multimask ones (SAM's mask tokens)."""
    import torch

    class PromptDecoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.prompts, self.decoder = model.prompt_encoder, model.mask_decoder

        def forward(self, features: Any, coords: Any, labels: Any) -> tuple[Any, Any]:
            p = self.prompts
            scaled = (coords + 0.5) / INPUT_SIZE  # a pixel's centre, as a fraction of the frame
            embedded = p.pe_layer._pe_encoding(scaled)
            label = labels.unsqueeze(-1)
            for k in range(4):
                embedded = embedded + (label == k).to(embedded.dtype) * p.point_embeddings[k].weight
            embedded = torch.where(label == -1, p.not_a_point_embed.weight, embedded)
            size = features.shape[-2:]
            dense = p.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, size[0], size[1])
            return self.decoder.predict_masks(image_embeddings=features, image_pe=p.get_dense_pe(),
                                              sparse_prompt_embeddings=embedded, dense_prompt_embeddings=dense)[:2]

    decoder = PromptDecoder().eval()
    for module in decoder.modules():
        if type(module).__name__ == "LayerNorm2d":
            module.forward = _static_layer_norm(module)
    return decoder


def _static_layer_norm(norm: Any) -> Any:
    """ultralytics' LayerNorm2d takes its normalised shape from the input's shape, which the
    TorchScript exporter cannot trace once an input has a dynamic axis (the points); the channel
    count is its weight's length, the same number, known at export."""
    import torch.nn.functional as F

    def forward(x: Any) -> Any:
        return F.layer_norm(x.permute(0, 2, 3, 1), (norm.weight.shape[0],), norm.weight, norm.bias,
                            norm.eps).permute(0, 3, 1, 2)

    return forward


def onnx_dir(root: Path, choice: EngineChoice) -> Path:
    """Where one set of weights' exports live: other weights (or engines) never share a folder."""
    digest = hashlib.sha256(weights_id(choice.checkpoint).encode()).hexdigest()[:12]
    return root / f"{choice.engine}-{choice.model_type}-{digest}"


class OnnxEngine:
    def __init__(self, choice: EngineChoice, state: dict[str, Any] | None, root: Path) -> None:
        if choice.engine != "mobile_sam":
            raise LabelLoopError(f"SAM_RUNTIME=onnx serves SAM_ENGINE=mobile_sam, not {choice.engine}: "
                                 "set SAM_RUNTIME=torch for it", status=503)
        if choice.device != "cpu":
            log.info("SAM_RUNTIME=onnx runs on the CPU (SAM_DEVICE=%s is not used by it)", choice.device)
        # The PyTorch engine is built for its modules (exported once) and its pre/post-processing.
        self.torch_engine = UltralyticsEngine(choice, state)
        self.folder = onnx_dir(root, choice)
        self.encoder, self.decoder = self._sessions()
        self.device = "cpu"
        self.name = engine_name(choice)
        self.weights_id = weights_id(choice.checkpoint)
        self.encoder_runs = 0

    # -- export and load ------------------------------------------------------------------------
    def _sessions(self) -> tuple[Any, Any]:
        try:
            return self._load()
        except Exception as exc:  # a torn or foreign cache file: export again, once
            log.warning("ONNX cache %s did not load (%s): exporting again", self.folder, exc)
            for name in FILES:
                (self.folder / name).unlink(missing_ok=True)
            try:
                return self._load()
            except Exception as again:
                raise LabelLoopError(f"SAM_RUNTIME=onnx: the ONNX export in {self.folder} does not load "
                                     f"({type(again).__name__}: {str(again)[:200]}); set SAM_RUNTIME=torch",
                                     status=503) from again

    def _load(self) -> tuple[Any, Any]:
        import onnxruntime as ort

        self._export_once()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle pool threads sleep instead of spinning: a click alternates ORT with torch's mask
        # scaling and the server's threads, which spinning workers would starve (measured: no slower).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        encoder, decoder = (ort.InferenceSession(str(self.folder / name), options, providers=["CPUExecutionProvider"])
                            for name in FILES)
        return encoder, decoder

    def _export_once(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(self.folder / "export.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)  # one export even with several gunicorn workers
            if not all((self.folder / name).exists() for name in FILES):
                self._export()
        finally:
            os.close(lock_fd)

    def _export(self) -> None:
        import torch

        started = time.perf_counter()
        model = self.torch_engine.predictor.model.float().eval()
        image = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE)
        features = torch.zeros(1, 256, INPUT_SIZE // 16, INPUT_SIZE // 16)
        coords, labels = torch.zeros(1, 2, 2), torch.tensor([[1.0, -1.0]])
        with torch.no_grad():
            self._write(model.image_encoder, (image,), "encoder.onnx", ["image"], ["features"], {})
            self._write(prompt_decoder(model), (features, coords, labels), "decoder.onnx",
                        ["features", "coords", "labels"], ["masks", "scores"],
                        {"coords": {1: "points"}, "labels": {1: "points"}})
        log.info("exported MobileSAM to ONNX in %.1f s (%s)", time.perf_counter() - started, self.folder)

    def _write(self, module: Any, args: tuple[Any, ...], name: str, inputs: list[str], outputs: list[str],
               axes: dict[str, dict[int, str]]) -> None:
        import torch

        tmp = self.folder / f".{name}.{os.getpid()}.tmp"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the exporter's tracer warnings say nothing a user can act on
                torch.onnx.export(module, args, str(tmp), input_names=inputs, output_names=outputs,
                                  dynamic_axes=axes, opset_version=OPSET, dynamo=False)
            os.replace(tmp, self.folder / name)  # atomic: a reader sees a whole file or none
        finally:
            tmp.unlink(missing_ok=True)

    # -- the engine interface -------------------------------------------------------------------
    def embed(self, image: np.ndarray) -> Embedding:
        import torch

        pixels = self.torch_engine.encoder_input(image).cpu().numpy().astype(np.float32)
        (features,) = self.encoder.run(None, {"image": pixels})
        self.encoder_runs += 1
        return Embedding(torch.from_numpy(features), *sizes(image))

    def decode(self, embedding: Embedding, prompt: Prompt, multimask: bool = False) -> tuple[np.ndarray, float]:
        import torch

        coords, labels = decoder_prompt(prompt, INPUT_SIZE / max(embedding.original_size))
        masks, scores = self.decoder.run(None, {"features": embedding.features.numpy(), "coords": coords,
                                                "labels": labels})
        chosen = slice(1, None) if multimask else slice(0, 1)
        masks_full = self.torch_engine.to_image(torch.from_numpy(masks[0, chosen]), embedding.original_size)
        return best_mask(masks_full.numpy(), scores[0, chosen])


def decoder_prompt(prompt: Prompt, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The decoder's (coords, labels) for a prompt: points, then a box's two corners (labels 2, 3),
    or a padding point (label -1) where there is no box, all scaled into the encoder's frame."""
    points = [(x * scale, y * scale) for x, y in prompt.points]
    labels = [float(label) for label in prompt.labels]
    if prompt.box is not None:
        x1, y1, x2, y2 = (v * scale for v in prompt.box)
        points += [(x1, y1), (x2, y2)]
        labels += [2.0, 3.0]
    else:
        points.append((0.0, 0.0))
        labels.append(-1.0)
    return np.array([points], dtype=np.float32), np.array([labels], dtype=np.float32)
