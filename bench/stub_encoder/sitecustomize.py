"""Loaded by a segmenter process that ``bench/hardening.py --segmenter stub-encoder`` starts (this folder on
its PYTHONPATH): SAM's image encoder is replaced by its host-side work alone (resize, normalise,
pad to 1024) and random features of the real shape.

A CPU diagnostic, not a result: it makes every host-side allocation of a new image, so a leak in
the server, cache, media or preprocessing shows in minutes instead of after 1,000 encoder runs of
~20 s each. What the GPU adds (CUDA and per-thread library state) needs the real run.
"""

import os
import sys

STUB_MARKER = "label-loop bench: SAM image encoder stubbed"

if os.environ.get("LABEL_LOOP_STUB_ENCODER") == "1":
    import torch

    from backends.segmenter import engine, sam_engine

    def _embed(self, image):  # type: ignore[no-untyped-def]
        resized = self._predictor.transform.apply_image(image)
        pixels = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None]
        self.sam.preprocess(pixels.float())
        self.encoder_runs += 1
        features = torch.randn(1, 256, 64, 64, device=self.device)
        return engine.Embedding(features, tuple(image.shape[:2]), tuple(resized.shape[:2]))

    sam_engine.SamEngine.embed = _embed  # SAM_ENGINE=sam: bench/hardening.py pins it
    # the bench checks for this line: Python ignores a sitecustomize that fails, and the real
    # encoder would then run for hours under the stub's name
    print(STUB_MARKER, file=sys.stderr, flush=True)
