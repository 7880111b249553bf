"""From model outputs to a queue order: the pure part of a scoring job, usable from a notebook.

:func:`rank` returns the unlabeled samples most-informative-first, and :func:`stable_scores` turns
the strategy's values into Label Studio scores in [0, 1] (lower = served first) that depend on each
task alone wherever the strategy allows it. Scores derived from the rank (``queue_scores`` in
``strategies``) would shift for every task when ten are imported, and a re-score would rewrite the
whole queue: at 8,000 tasks that was 31 s of writes for 800 new tasks, and it grows with the project.

Detection differs from classification in two places:
- uncertainty: each box's confidence ``c`` is read as a two-class distribution ``[c, 1 - c]`` and
  scored with the strategy's function (entropy, margin, least confidence), then aggregated per
  image (``max`` by default; see ``strategies.image_uncertainty``), over every box down to
  ``ACTIVE_BOX_THRESHOLD`` (``ImageOutputs.uncertain_boxes``), not only the served ones; an image
  with no detection scores the maximum, since the model either saw nothing or missed everything;
- ``learning_loss``: the detector has no loss-prediction head, so where the paper trains one
  jointly with the task model, we fit a ridge regression *after* training, from each labeled
  image's features (:func:`loss_features`: the detector's pooled backbone features, and its boxes'
  mean and max margin and count) to its measured error (1 - F1 at IoU 0.5 against the submitted
  boxes, see ``report.py``), and predict it for the unlabeled ones. On the pooled features alone the
  predicted loss hardly ranked images by their real loss (Spearman's rho 0.08-0.21 on validation
  canvases at 50-150 labels, ``bench/active_detection.py``); with the box uncertainties beside them,
  0.35-0.53. It needs a few labeled images; with fewer than ``MIN_LOSS_SAMPLES`` it falls back to
  entropy and says so.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np

from .strategies import STRATEGIES, Pool, _Uncertainty, entropy, get_strategy, image_uncertainty, top_n, uncertainty_or_margin
from .task_models import ImageOutputs

log = logging.getLogger(__name__)
MIN_LOSS_SAMPLES = 4
SET_BASED = ("coreset", "discriminative", "hybrid", "badge", "learning_loss")


def box_uncertainty(confidences: list[float], strategy: str, how: Literal["max", "mean", "sum"]) -> float:
    chosen = STRATEGIES.get(strategy)
    # an uncertainty strategy (least_confidence, margin, entropy) scores boxes by its own function
    function = chosen.function if chosen is not None and issubclass(chosen, _Uncertainty) else entropy
    if not confidences:
        return image_uncertainty([], how, empty=float(function(np.array([[0.5, 0.5]]))[0]))
    c = np.clip(np.asarray(confidences, dtype=float), 0.0, 1.0)
    per_box = function(np.stack([c, 1 - c], axis=1))
    return image_uncertainty(per_box.tolist(), how)


def ridge_predictor(x: np.ndarray, y: np.ndarray, alpha: float = 1.0):
    """Closed-form ridge regression on standardised features; returns ``predict(x_new)``."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / std
    w = np.linalg.solve(z.T @ z + alpha * len(z) * np.eye(z.shape[1]), z.T @ (y - y.mean()))
    return lambda new: ((new - mean) / std) @ w + y.mean()


def build_pool(unlabeled: list[ImageOutputs], labeled: list[ImageOutputs], strategy: str, *,
               labeled_losses: list[float] | None = None, aggregate: Literal["max", "mean", "sum"] = "max",
               seed: int = 0) -> tuple[Pool, str | None]:
    """The strategy's inputs, and a note when it had to fall back."""
    note = None
    # a non-finite output (a diverging model, a corrupt image) would poison every distance and
    # comparison it meets: k-center greedy then picks the same task again and scores leave [0, 1]
    embeddings = _finite(np.stack([o.embedding for o in unlabeled])) if unlabeled else np.zeros((0, 1))
    labeled_embeddings = _finite(np.stack([o.embedding for o in labeled])) if labeled else None
    pool = Pool(embeddings=embeddings, labeled_embeddings=labeled_embeddings, rng=np.random.default_rng(seed))
    detection = bool(unlabeled) and unlabeled[0].probs is None
    if not detection:
        pool.probs = _finite(np.stack([_probs(o) for o in unlabeled])) if unlabeled else np.zeros((0, 1))
        pool.predicted_loss = np.array([o.predicted_loss for o in unlabeled], dtype=float)
        return pool, note
    pool.uncertainty = np.array([box_uncertainty(o.uncertain_boxes, strategy, aggregate) for o in unlabeled])
    if strategy == "learning_loss":
        if labeled_losses is not None and len(labeled_losses) >= MIN_LOSS_SAMPLES and labeled_embeddings is not None:
            predict = ridge_predictor(loss_features(labeled), np.asarray(labeled_losses, dtype=float))
            pool.predicted_loss = predict(loss_features(unlabeled))
        else:
            note = (f"learning_loss on detection needs >= {MIN_LOSS_SAMPLES} annotated images to fit the loss "
                    "regressor; ranked by entropy meanwhile")
            pool.predicted_loss = np.array([box_uncertainty(o.uncertain_boxes, "entropy", aggregate) for o in unlabeled])
    return pool, note


def loss_features(outputs: list[ImageOutputs]) -> np.ndarray:
    """What detection's loss regressor reads of an image: its pooled embedding, and its boxes' mean
    and max margin and their count (an image the model is unsure of, or sees nothing in, is where
    its loss is high; the embedding alone barely says so)."""
    doubt = np.array([[box_uncertainty(o.uncertain_boxes, "margin", "mean"),
                       box_uncertainty(o.uncertain_boxes, "margin", "max"), len(o.box_confidences)] for o in outputs])
    return _finite(np.hstack([np.stack([o.embedding for o in outputs]), doubt]))


def _probs(out: ImageOutputs) -> np.ndarray:
    assert out.probs is not None, "one task model made the pool: a classifier's outputs all carry probs"
    return out.probs


def _finite(values: np.ndarray) -> np.ndarray:
    """NaN -> 0 (probabilities of 0 everywhere: the least sure), infinities -> the dtype's bounds."""
    return np.nan_to_num(np.asarray(values, dtype=float), nan=0.0)


def rank(pool: Pool, strategy: str, queue_size: int) -> np.ndarray:
    """Every pool index, most informative first. Set-based strategies pick the first
    ``queue_size`` (their cost grows with it); the rest follow by the strategy's own scores where it
    has some (hybrid: margin), else by margin: the best single-sample measure in
    ``bench/active_learning.py``, where entropy ordered worse than random."""
    n = len(pool) if (pool.probs is not None or pool.uncertainty is not None or pool.embeddings is not None) else 0
    if n == 0:
        return np.empty(0, dtype=int)
    chosen = get_strategy(strategy)
    if strategy not in SET_BASED:
        return chosen.select(pool, n)
    head = chosen.select(pool, min(queue_size, n))
    rest = np.setdiff1d(np.arange(n), head)
    fallback = chosen.scores(pool)
    if fallback is None:
        fallback = uncertainty_or_margin(pool, strategy)
    return np.concatenate([head, rest[top_n(fallback[rest], len(rest))]]).astype(int)


#: set-based strategies: their chosen head is served first, at scores below HEAD_SPAN by rank; the
#: rest follows above it by a per-task value, so only the head moves when the pool grows
HEAD_SPAN = 0.25


def stable_scores(pool: Pool, strategy: str, queue_size: int) -> np.ndarray:
    """Label Studio scores for every pool sample, lower first, in the order :func:`rank` gives.

    Per-sample strategies: ``0.5 - atan(value) / pi`` of the strategy's own value (higher value,
    lower score), which no other task changes. Set-based ones choose their head from the whole pool,
    so its ``min(queue_size, n)`` tasks get ``HEAD_SPAN x rank / size``; the tail gets
    ``HEAD_SPAN + (1 - HEAD_SPAN) x`` the same map of the tail's own value (margin, or the pool's
    uncertainty). An import then moves at most the head, twice its size (tasks in and out of it).
    ``random`` is not handled here: :func:`hashed_scores` gives it stable scores per task id."""
    if strategy == "random":
        raise ValueError("random has no per-sample value: use hashed_scores")
    n = len(pool)
    if n == 0:
        return np.zeros(0)
    scores = task_scores(pool, strategy)
    if strategy in SET_BASED:
        head = get_strategy(strategy).select(pool, min(queue_size, n))
        scores[head] = HEAD_SPAN * np.arange(len(head)) / max(len(head), 1)
    return scores


def task_scores(pool: Pool, strategy: str) -> np.ndarray:
    """Each sample's score from its own value alone: all of a per-sample strategy's scores, the
    tail of a set-based one's (``stable_scores``), and ``/predict``'s, which sees a few tasks at a
    time: a task pre-labeled there sorts among the queue's tasks as the scoring job would put it."""
    chosen = get_strategy(strategy)
    values = chosen.scores(pool)
    if strategy not in SET_BASED:
        if values is None:  # random, the one per-sample strategy without scores
            raise ValueError("random has no per-sample value: use hashed_scores")
        return _bounded(values)
    return HEAD_SPAN + (1 - HEAD_SPAN) * _bounded(uncertainty_or_margin(pool, strategy) if values is None else values)


def hashed_scores(keys: Sequence[int], seed: int, salt: int = 0) -> np.ndarray:
    """A uniform score in [0, 1) per key (task id), the same for that key in every run: a random
    queue whose order does not change when tasks are added."""
    def one(key: int) -> float:
        digest = hashlib.blake2b(f"{seed}:{salt}:{key}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2 ** 64
    return np.array([one(int(k)) for k in keys])


def _bounded(values: np.ndarray) -> np.ndarray:
    """Higher value -> lower score, into (0, 1), pool-independent; atan keeps neighbours apart far
    beyond any value these strategies produce (1e6 still maps to 3e-7, above SCORE_DECIMALS)."""
    return 0.5 - np.arctan(np.nan_to_num(np.asarray(values, dtype=float), nan=0.0)) / np.pi
