"""Acquisition strategies: which unlabeled samples to label next.

Each strategy is a small class with a ``name`` and ``select(pool, n) -> indices`` (most informative
first), over a :class:`Pool` of model outputs. The scoring functions under them are pure and take
arrays, in the spirit of modAL's query strategies. All are batch-aware: a batch of ``n`` is chosen
at once, and the diversity-based ones avoid picking near-duplicates within it.

Scores for Label Studio's queue come from :func:`queue_scores`: a value in [0, 1] where lower means
"label this first", because Label Studio's uncertainty sampling serves lowest prediction score first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

EPS = 1e-12


@dataclass
class Pool:
    """What a strategy may look at. Strategies use the fields they need and say so when missing."""

    probs: np.ndarray | None = None  # [N, C] class probabilities of the unlabeled samples
    embeddings: np.ndarray | None = None  # [N, D] features of the unlabeled samples
    labeled_embeddings: np.ndarray | None = None  # [M, D] features of the labeled samples
    predicted_loss: np.ndarray | None = None  # [N] from a loss-prediction head
    #: [N] per-sample uncertainty computed elsewhere, used instead of ``probs`` by the uncertainty
    #: strategies: detection, where per-box uncertainties are aggregated per image.
    uncertainty: np.ndarray | None = None
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))

    def __len__(self) -> int:
        for array in (self.probs, self.uncertainty, self.embeddings, self.predicted_loss):
            if array is not None:
                return len(array)
        raise ValueError("empty pool: no probs, embeddings or predicted_loss")

    def need(self, name: str, strategy: str) -> np.ndarray:
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"strategy {strategy!r} needs {name} from the task model")
        return value


# -- pure scoring functions (higher = more informative) ------------------------------------------
def least_confidence(probs: np.ndarray) -> np.ndarray:
    return 1.0 - probs.max(axis=1)


def margin(probs: np.ndarray) -> np.ndarray:
    """1 - (p_top1 - p_top2): near 1 when the two best classes are tied."""
    top2 = np.sort(probs, axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


def entropy(probs: np.ndarray) -> np.ndarray:
    return -(probs * np.log(probs + EPS)).sum(axis=1)


def uncertainty_or_margin(pool: Pool, strategy: str) -> np.ndarray:
    """Per-sample doubt: the pool's own uncertainty (detection), else margin: the best single-sample
    measure in ``bench/active_learning.py``. What set-based strategies order their tail by."""
    doubt = pool.uncertainty if pool.uncertainty is not None else margin(pool.need("probs", strategy))
    return np.nan_to_num(doubt, nan=0.0)  # a diverged model's NaN must not reach k-means' sampling weights


def top_n(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` highest scores, highest first (ties broken by index, deterministically)."""
    n = min(n, len(scores))
    return np.lexsort((np.arange(len(scores)), -scores))[:n]


def k_center_greedy(pool: np.ndarray, labeled: np.ndarray | None, n: int, seed: int = 0) -> np.ndarray:
    """Core-set selection (Sener & Savarese 2018): repeatedly take the pool point farthest from
    everything chosen or labeled so far, covering the embedding space."""
    n = min(n, len(pool))
    if n == 0:
        return np.empty(0, dtype=int)
    if labeled is not None and len(labeled):
        chosen: list[int] = []
        nearest = _min_sq_dist(pool, labeled)
    else:  # nothing labeled yet: start from a random point
        chosen = [int(np.random.default_rng(seed).integers(len(pool)))]
        nearest = ((pool - pool[chosen[0]]) ** 2).sum(axis=1)
        nearest[chosen[0]] = -1
    return np.array(chosen + _greedy(pool, nearest, n - len(chosen)), dtype=int)


def _greedy(pool: np.ndarray, nearest: np.ndarray, n: int) -> list[int]:
    chosen = []
    for _ in range(n):
        pick = int(np.argmax(nearest))
        chosen.append(pick)
        nearest = np.minimum(nearest, ((pool - pool[pick]) ** 2).sum(axis=1))
        nearest[pick] = -1
    return chosen


def _min_sq_dist(a: np.ndarray, b: np.ndarray, chunk: int = 4096) -> np.ndarray:
    out = np.empty(len(a))
    b_sq = (b ** 2).sum(axis=1)
    for start in range(0, len(a), chunk):
        part = a[start:start + chunk]
        d = (part ** 2).sum(axis=1)[:, None] - 2 * part @ b.T + b_sq[None, :]
        out[start:start + chunk] = np.maximum(d.min(axis=1), 0)
    return out


def discriminative_select(pool: np.ndarray, labeled: np.ndarray, n: int, *, mini_queries: int = 10,
                          max_steps: int = 300, stop_accuracy: float = 0.98, seed: int = 0) -> np.ndarray:
    """Discriminative active learning (Gissin & Shalev-Shwartz 2019): an MLP (3 x 256) learns to tell
    labeled from unlabeled embeddings; the samples it is surest are unlabeled are the least
    represented by the labeled set. Chosen in ``mini_queries`` rounds, retraining after each with
    the picks counted as labeled, so one batch does not pile into one region.

    Where this differs from the paper: each pool sample is scored by a classifier that did not see
    it (2-fold cross-fitting), by its logit margin. Scored in-sample, a classifier trained to the
    paper's 98% stopping accuracy memorises pool samples where the pool overlaps the labeled set;
    and its softmax saturates, turning the ranking of confident samples into ties."""
    with _one_torch_thread():
        return _discriminative_rounds(pool, labeled, n, mini_queries, max_steps, stop_accuracy, seed)


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Torch on one thread for the while: the discriminator is a small MLP on batches of 256, whose
    ops are too small to split, so a second thread only adds synchronisation. Measured on 2 cores
    (`discriminative_select`, 2,000 x 128 pool, 2 rounds), same picks: 3.5 s on 2 threads, 1.0 s on
    one, with the other core busy as in a job process beside its server; the previous count is
    restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _discriminative_rounds(pool: np.ndarray, labeled: np.ndarray, n: int, mini_queries: int, max_steps: int,
                           stop_accuracy: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    remaining = np.arange(len(pool))
    labeled_set = labeled.astype(np.float32)
    chosen: list[int] = []
    per_round = [n // mini_queries + (1 if i < n % mini_queries else 0) for i in range(mini_queries)]
    for take in (t for t in per_round if t > 0):
        folds = rng.permutation(len(remaining)) % 2
        p_unlabeled = np.empty(len(remaining))
        for fold in (0, 1):
            seen, scored = remaining[folds != fold], remaining[folds == fold]
            classifier = _train_discriminator(labeled_set, pool[seen].astype(np.float32), max_steps, stop_accuracy, seed)
            p_unlabeled[folds == fold] = classifier(pool[scored].astype(np.float32))
        picks = remaining[top_n(p_unlabeled, take)]
        chosen.extend(int(i) for i in picks)
        labeled_set = np.concatenate([labeled_set, pool[picks].astype(np.float32)])
        remaining = np.setdiff1d(remaining, picks)
    return np.array(chosen, dtype=int)


def _train_discriminator(labeled: np.ndarray, unlabeled: np.ndarray, max_steps: int, stop_accuracy: float,
                         seed: int):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(labeled.shape[1], 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                          nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 2))
    x = torch.from_numpy(np.concatenate([labeled, unlabeled]))
    y = torch.cat([torch.zeros(len(labeled), dtype=torch.long), torch.ones(len(unlabeled), dtype=torch.long)])
    # Balance the classes: the pool is usually far larger than the labeled set.
    weight = torch.tensor([len(y) / (2 * max(1, len(labeled))), len(y) / (2 * max(1, len(unlabeled)))])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(max_steps):
        batch = torch.randint(len(x), (min(256, len(x)),))
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x[batch]), y[batch], weight=weight).backward()
        optimizer.step()
        if step % 10 == 9:  # the paper's stopping rule, on a sample: a full pass every 10 steps costs more than training
            check = torch.randint(len(x), (min(2048, len(x)),))
            with torch.no_grad():
                if (model(x[check]).argmax(1) == y[check]).float().mean() >= stop_accuracy:
                    break

    def unlabeled_logit(samples: np.ndarray) -> np.ndarray:
        # Rank by the logit margin, not the softmax: probabilities saturate at exactly 1.0 in float32
        # for every confidently "unlabeled" sample, and the ranking among them becomes ties.
        with torch.no_grad():
            logits = model(torch.from_numpy(samples))
        return (logits[:, 1] - logits[:, 0]).numpy()

    return unlabeled_logit


# -- strategies --------------------------------------------------------------------------------------
class Strategy:
    name: ClassVar[str]

    def select(self, pool: Pool, n: int) -> np.ndarray:
        raise NotImplementedError

    def scores(self, pool: Pool) -> np.ndarray | None:
        """Per-sample informativeness when the strategy has one (higher first); None for set-based ones."""
        return None


class Random(Strategy):
    name = "random"

    def select(self, pool: Pool, n: int) -> np.ndarray:
        return pool.rng.permutation(len(pool))[:n]


class _Uncertainty(Strategy):
    function: ClassVar = staticmethod(entropy)

    def scores(self, pool: Pool) -> np.ndarray:
        if pool.uncertainty is not None:
            return pool.uncertainty
        return type(self).function(pool.need("probs", self.name))

    def select(self, pool: Pool, n: int) -> np.ndarray:
        return top_n(self.scores(pool), n)


class LeastConfidence(_Uncertainty):
    name = "least_confidence"
    function = staticmethod(least_confidence)


class Margin(_Uncertainty):
    name = "margin"
    function = staticmethod(margin)


class Entropy(_Uncertainty):
    name = "entropy"
    function = staticmethod(entropy)


class LearningLoss(Strategy):
    """Highest predicted loss (Yoo & Kweon 2019), made diverse as ``hybrid`` makes margin: the
    ``prefilter`` x n highest, clustered into n groups by k-means weighted by the loss, the sample
    nearest each centre. ``prefilter=0`` is the paper's top n.

    Why not the paper's top n: on Fashion-MNIST even the *real* loss, ranked top n (the benchmark's
    ``oracle_loss``), picked worse than random (-3.3 points at 1,200 labels on held-out images): the
    highest losses are a few confusions (shirts read as T-shirts) repeated, so a batch of them
    teaches one thing 200 times. Clustered, the same scores beat random (docs/active.md)."""

    name = "learning_loss"

    def __init__(self, prefilter: int = 10) -> None:
        self.prefilter = prefilter

    def scores(self, pool: Pool) -> np.ndarray:
        return pool.need("predicted_loss", self.name)

    def select(self, pool: Pool, n: int) -> np.ndarray:
        loss = np.nan_to_num(np.asarray(self.scores(pool), dtype=float), nan=0.0)  # as build_pool's _finite
        if not self.prefilter:
            return top_n(loss, n)
        # k-means weights must be positive; the head's scale and offset are its own
        return diverse_top(loss, loss - loss.min() + EPS, pool.need("embeddings", self.name), n, self.prefilter)


class CoreSet(Strategy):
    name = "coreset"

    def select(self, pool: Pool, n: int) -> np.ndarray:
        return k_center_greedy(pool.need("embeddings", self.name), pool.labeled_embeddings, n)


class Discriminative(Strategy):
    name = "discriminative"

    def __init__(self, mini_queries: int = 10) -> None:
        self.mini_queries = mini_queries

    def select(self, pool: Pool, n: int) -> np.ndarray:
        labeled = pool.labeled_embeddings
        embeddings = pool.need("embeddings", self.name)
        if labeled is None or not len(labeled):
            return k_center_greedy(embeddings, None, n)  # nothing labeled to discriminate against yet
        return discriminative_select(embeddings, labeled, n, mini_queries=self.mini_queries)


class Hybrid(Strategy):
    """Uncertainty, then diversity (Zhdanov 2019, "Diverse mini-batch active learning"): the
    ``prefilter`` x n least sure samples by margin, clustered into n groups by k-means weighted by
    that margin; from each cluster the sample nearest its centre. A batch of n then spans n
    different kinds of doubt instead of n near-copies of the same one, and unlike k-center greedy
    it does not chase outliers (k-center picks the farthest points first, often junk)."""

    name = "hybrid"

    def __init__(self, prefilter: int = 10) -> None:
        self.prefilter = prefilter

    def scores(self, pool: Pool) -> np.ndarray:
        return uncertainty_or_margin(pool, self.name)

    def select(self, pool: Pool, n: int) -> np.ndarray:
        scores = self.scores(pool)
        return diverse_top(scores, scores + EPS, pool.need("embeddings", self.name), n, self.prefilter)


def diverse_top(scores: np.ndarray, weights: np.ndarray, embeddings: np.ndarray, n: int, prefilter: int) -> np.ndarray:
    """The ``prefilter`` x n highest ``scores``, clustered into n groups by k-means on their
    embeddings weighted by ``weights`` (> 0), the sample nearest each centre; highest score first,
    so a queue cut short still starts with the most informative."""
    candidates = top_n(scores, prefilter * n)
    if len(candidates) <= n:
        return candidates
    chosen = np.nan_to_num(embeddings[candidates].astype(np.float64))
    picked = nearest_to_centres(chosen, weighted_kmeans(chosen, n, weights[candidates]))
    return candidates[picked[np.argsort(-scores[candidates][picked], kind="stable")]]


class Badge(Strategy):
    """Uncertainty and diversity in one space (Ash et al. 2020, "Deep batch active learning by diverse,
    uncertain gradient lower bounds"): each sample becomes the gradient its cross-entropy would put on
    the last layer if the predicted class were right, ``(p - onehot(argmax p)) (x) embedding``, whose
    norm grows with doubt and whose direction says what kind of sample it is; k-means++ seeding in
    that space then picks n samples that are far apart *and* large. Unlike ``hybrid`` it needs no
    prefilter size, and no sample is excluded for being only fairly uncertain.

    Detection has no class distribution per image: its gradient embedding is the embedding scaled by
    the image's aggregated uncertainty (the same "norm = doubt, direction = content" reading)."""

    name = "badge"

    def scores(self, pool: Pool) -> np.ndarray:
        return uncertainty_or_margin(pool, self.name)

    def select(self, pool: Pool, n: int) -> np.ndarray:
        embeddings = pool.need("embeddings", self.name)
        if pool.uncertainty is not None:
            residual = np.asarray(pool.uncertainty, dtype=np.float64)[:, None]
        else:
            residual = last_layer_residual(pool.need("probs", self.name))
        return kmeans_pp_outer(residual, embeddings.astype(np.float64), n, pool.rng)


def last_layer_residual(probs: np.ndarray) -> np.ndarray:
    """``p - onehot(argmax p)``: the cross-entropy's gradient w.r.t. the logits at the predicted label."""
    residual = probs.astype(np.float64)
    residual[np.arange(len(probs)), probs.argmax(1)] -= 1.0
    return residual


def kmeans_pp_outer(a: np.ndarray, b: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (first the largest point, then D^2 sampling) over the rows ``g_i = a_i (x) b_i``
    without building them: ``<g_i, g_j> = <a_i, a_j> <b_i, b_j>``, so memory stays O(N (|a| + |b|))
    where the explicit gradient embeddings of a 50k-task project on a ResNet-18 would take gigabytes."""
    n = min(n, len(a))
    if n == 0:
        return np.empty(0, dtype=int)
    a, b = np.nan_to_num(a), np.nan_to_num(b)  # one NaN output would make every probability NaN
    sq_norm = (a ** 2).sum(1) * (b ** 2).sum(1)
    chosen = [int(np.argmax(sq_norm))]
    nearest = np.full(len(a), np.inf)
    while len(chosen) < n:
        c = chosen[-1]
        dist = np.maximum(sq_norm + sq_norm[c] - 2 * (a @ a[c]) * (b @ b[c]), 0.0)
        nearest = np.minimum(nearest, dist)
        nearest[chosen] = 0.0
        total = nearest.sum()
        if not np.isfinite(total) or total <= 0:  # the rest duplicate chosen ones (or overflowed): by size
            taken = set(chosen)
            rest = [int(i) for i in np.argsort(-sq_norm, kind="stable") if i not in taken]
            chosen.extend(rest[:n - len(chosen)])
            break
        chosen.append(int(rng.choice(len(a), p=nearest / total)))
    return np.array(chosen, dtype=int)


def weighted_kmeans(x: np.ndarray, k: int, weights: np.ndarray, iterations: int = 20, seed: int = 0) -> np.ndarray:
    """Centres of ``k`` clusters of ``x`` (k-means++ seeding, then Lloyd's steps with per-sample weights)."""
    rng = np.random.default_rng(seed)
    centres = [x[rng.choice(len(x), p=weights / weights.sum())]]
    nearest = ((x - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        p = weights * nearest
        centre = x[rng.choice(len(x), p=p / p.sum())] if p.sum() > 0 else x[rng.integers(len(x))]
        centres.append(centre)
        nearest = np.minimum(nearest, ((x - centre) ** 2).sum(1))
    c = np.stack(centres)
    for _ in range(iterations):
        membership = np.zeros((len(x), k))
        membership[np.arange(len(x)), _sq_dist(x, c).argmin(1)] = weights
        mass, moved = membership.sum(0), membership.T @ x
        filled = mass > 0
        new = c.copy()
        new[filled] = moved[filled] / mass[filled, None]
        if np.allclose(new, c):
            break
        c = new
    return c


def nearest_to_centres(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """One distinct sample per centre: the closest not yet taken (greedy over the closest pairs)."""
    d = _sq_dist(x, centres)
    taken = np.zeros(len(x), dtype=bool)
    chosen = []
    for j in np.argsort(d.min(0), kind="stable"):
        order = np.argsort(d[:, j], kind="stable")
        pick = order[~taken[order]][0]
        taken[pick] = True
        chosen.append(int(pick))
    return np.array(chosen, dtype=int)


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a ** 2).sum(1)[:, None] - 2 * a @ b.T + (b ** 2).sum(1)[None, :], 0)


STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (Random, LeastConfidence, Margin, Entropy, LearningLoss, CoreSet, Discriminative, Hybrid,
                 Badge)
}


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]()
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}") from None


# -- detection: per-box uncertainty to one number per image ----------------------------------------
def image_uncertainty(box_scores: list[float], how: Literal["max", "mean", "sum"] = "max",
                      empty: float = 1.0) -> float:
    """Aggregate per-box uncertainties (e.g. 1 - confidence) of one image.

    ``max`` (default): an image is as informative as its most doubtful box, and a crowded image is
    not favoured for its box count alone; ``mean`` dilutes one doubtful box among many confident
    ones; ``sum`` favours crowded images. An image with no detection scores ``empty`` (1.0: the model
    sees nothing there, which is either a true negative or a miss worth checking).
    """
    if not box_scores:
        return empty
    values = np.asarray(box_scores, dtype=float)
    aggregate: dict[str, Callable[[], Any]] = {"max": values.max, "mean": values.mean, "sum": values.sum}
    return float(aggregate[how]())


def queue_scores(selected_order: np.ndarray, n_pool: int) -> np.ndarray:
    """Label Studio task scores in [0, 1] from a ranking: rank 0 -> 0.0 (served first), the last or
    unranked -> 1.0."""
    scores = np.ones(n_pool)
    if n_pool > 1:
        scores[selected_order] = np.arange(len(selected_order)) / (n_pool - 1)
    elif len(selected_order):
        scores[selected_order] = 0.0
    return scores
