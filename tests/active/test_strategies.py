import numpy as np
import pytest
import torch

from backends.active.loss_prediction import LossPredictionHead, margin_ranking_loss
from backends.active.strategies import (
    STRATEGIES,
    LearningLoss,
    Pool,
    entropy,
    get_strategy,
    image_uncertainty,
    k_center_greedy,
    kmeans_pp_outer,
    last_layer_residual,
    least_confidence,
    margin,
    queue_scores,
    top_n,
)

PROBS = np.array([[0.98, 0.01, 0.01],   # confident
                  [0.34, 0.33, 0.33],   # uniform: most uncertain by every measure
                  [0.495, 0.495, 0.01],  # two-way tie: margin's favourite
                  [0.70, 0.20, 0.10]])


def test_uncertainty_scores_rank_as_expected():
    assert top_n(least_confidence(PROBS), 1)[0] == 1
    assert top_n(margin(PROBS), 1)[0] == 2
    assert top_n(entropy(PROBS), 1)[0] == 1
    assert list(top_n(entropy(PROBS), 4))[-1] == 0
    assert entropy(np.array([[1.0, 0.0]]))[0] == pytest.approx(0, abs=1e-9)


def test_k_center_greedy_covers_clusters_before_repeating_one():
    rng = np.random.default_rng(0)
    centers = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], dtype=float)
    pool = np.concatenate([c + rng.normal(0, 0.1, (25, 2)) for c in centers])
    picked = k_center_greedy(pool, labeled=centers[:1], n=3)
    assert sorted({int(i) // 25 for i in picked}) == [1, 2, 3], "one pick per uncovered cluster"
    assert len(set(k_center_greedy(pool, None, 10).tolist())) == 10


def test_every_strategy_returns_distinct_indices_in_range():
    rng = np.random.default_rng(1)
    pool = Pool(probs=rng.dirichlet(np.ones(5), 60), embeddings=rng.normal(size=(60, 8)),
                labeled_embeddings=rng.normal(size=(10, 8)), predicted_loss=rng.random(60))
    for name in STRATEGIES:
        picked = get_strategy(name).select(pool, 7)
        assert len(picked) == 7 and len(set(picked.tolist())) == 7 and picked.max() < 60, name
    assert list(LearningLoss(prefilter=0).select(pool, 3)) == list(np.argsort(-pool.predicted_loss)[:3])


def test_learning_loss_takes_high_losses_from_different_clusters_not_one_confusion_repeated():
    """The paper's top n takes the n highest predicted losses; when those are one confusion (one
    cluster), the default takes the highest of each of n clusters among the 10n highest."""
    rng = np.random.default_rng(2)
    confusion = rng.normal(0, 0.1, (12, 4))  # 12 near-copies, all with the highest losses
    others = np.vstack([rng.normal(c, 0.1, (8, 4)) for c in (5, 10, 15)])  # three more kinds, lower losses
    easy = rng.normal(-5, 0.1, (60, 4))  # what the model gets right: low losses, outside the 10n
    loss = np.concatenate([np.linspace(3, 2.5, 12), np.linspace(2.4, 2.0, 24), np.linspace(0.5, 0.0, 60)])
    pool = Pool(embeddings=np.vstack([confusion, others, easy]), predicted_loss=loss)
    kind = [0] * 12 + [1] * 8 + [2] * 8 + [3] * 8 + [4] * 60
    assert {kind[i] for i in LearningLoss(prefilter=0).select(pool, 4)} == {0}
    picked = LearningLoss(prefilter=9).select(pool, 4)  # the 36 highest: the four kinds of doubt
    assert sorted(kind[i] for i in picked) == [0, 1, 2, 3]
    assert kind[picked[0]] == 0, "the highest loss first"


def test_discriminative_prefers_the_region_the_labeled_set_misses():
    rng = np.random.default_rng(1)
    labeled = rng.normal(0, 1, (300, 16))
    pool = np.concatenate([rng.normal(0, 1, (1000, 16)), rng.normal(2.5, 1, (100, 16))])  # last 100: unexplored
    picked = get_strategy("discriminative").select(Pool(embeddings=pool, labeled_embeddings=labeled), 20)
    random_rate = 100 / 1100
    assert (picked >= 1000).mean() >= 2.75 * random_rate  # measured 0.35-0.55 over seeds vs 0.09 at random


def test_badge_distances_without_building_gradient_embeddings_match_the_explicit_ones():
    rng = np.random.default_rng(3)
    probs, h = rng.dirichlet(np.ones(4), 50), rng.normal(size=(50, 6))
    residual = last_layer_residual(probs)
    assert np.allclose(residual.sum(1), 0) and np.all(residual[np.arange(50), probs.argmax(1)] < 0)
    explicit = (residual[:, :, None] * h[:, None, :]).reshape(50, -1)
    first = kmeans_pp_outer(residual, h, 1, rng)[0]
    assert first == np.argmax((explicit ** 2).sum(1)), "the largest gradient is taken first"

    # with one sample per step left to choose, D^2 sampling is deterministic: compare it to explicit vectors
    picked = kmeans_pp_outer(residual[:3], h[:3], 3, rng)
    assert sorted(picked.tolist()) == [0, 1, 2]
    # one NaN model output must not turn every sampling probability into NaN
    h[7, 2] = np.nan
    picked = kmeans_pp_outer(residual, h, 10, rng)
    assert len(set(picked.tolist())) == 10


def test_badge_picks_uncertain_samples_from_different_clusters():
    rng = np.random.default_rng(4)
    centres = rng.normal(0, 5, (4, 8))
    h = np.concatenate([c + rng.normal(0, 0.2, (50, 8)) for c in centres])  # 4 clusters x 50
    probs = np.tile([[0.97, 0.01, 0.01, 0.01]], (200, 1))
    doubtful = np.concatenate([np.arange(k * 50, k * 50 + 5) for k in range(4)])  # 5 doubtful per cluster
    probs[doubtful] = [0.4, 0.35, 0.15, 0.1]
    doubtful_picks, distinct_clusters = [], []
    for seed in range(20):  # D^2 sampling is random: measure rates over seeds
        picked = get_strategy("badge").select(Pool(probs=probs, embeddings=h, rng=np.random.default_rng(seed)), 5)
        hits = [int(i) for i in picked if i in set(doubtful.tolist())]
        doubtful_picks.append(len(hits))
        distinct_clusters.append(len({i // 50 for i in hits}) == len(hits))
    # random would take 0.5 doubtful of 5; BADGE takes the largest first, then one sample of the
    # confident bulk (near the origin, so far from the first), then doubtful ones: measured 3.8
    assert np.mean(doubtful_picks) >= 3.5, doubtful_picks
    assert np.mean(distinct_clusters) >= 0.9, "doubtful picks come from different clusters, not near-copies"
    # detection: the image's uncertainty scales its embedding
    uncertainty = np.where(np.isin(np.arange(200), doubtful), 0.9, 0.01)
    picked = get_strategy("badge").select(Pool(uncertainty=uncertainty, embeddings=h), 5)
    assert len(picked) == 5 and sum(i in set(doubtful.tolist()) for i in picked) >= 3


def test_missing_inputs_and_unknown_names_say_what_is_needed():
    with pytest.raises(ValueError, match="needs embeddings"):
        get_strategy("coreset").select(Pool(probs=PROBS), 2)
    with pytest.raises(ValueError, match="'badge' needs embeddings"):
        get_strategy("badge").select(Pool(probs=PROBS), 2)
    with pytest.raises(ValueError, match="unknown strategy 'magic'"):
        get_strategy("magic")


def test_detection_aggregation_and_queue_scores():
    assert image_uncertainty([0.1, 0.7, 0.2]) == 0.7
    assert image_uncertainty([0.1, 0.7, 0.2], "mean") == pytest.approx(1 / 3)
    assert image_uncertainty([0.1, 0.7, 0.2], "sum") == pytest.approx(1.0)
    assert image_uncertainty([]) == 1.0
    scores = queue_scores(np.array([3, 0]), 5)
    assert scores[3] == 0.0 and scores[0] == 0.25 and list(scores[[1, 2, 4]]) == [1.0, 1.0, 1.0]


def test_loss_prediction_head_learns_the_order_of_losses():
    torch.manual_seed(0)
    features = [torch.randn(64, 16, 8, 8), torch.randn(64, 32, 4, 4)]
    true_loss = features[0].mean(dim=(1, 2, 3)) * 3 + features[1].mean(dim=(1, 2, 3))
    head = LossPredictionHead([16, 32])
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(300):  # batches reshuffled every step, as in training: new pairs each time
        order = torch.randperm(64)[:32]
        optimizer.zero_grad()
        margin_ranking_loss(head([f[order] for f in features]), true_loss[order]).backward()
        optimizer.step()
    predicted = head(features).detach()
    rank_corr = np.corrcoef(np.argsort(np.argsort(predicted.numpy())), np.argsort(np.argsort(true_loss.numpy())))[0, 1]
    assert rank_corr > 0.8


def test_detach_stops_gradient_into_the_backbone():
    feature = torch.randn(4, 8, 2, 2, requires_grad=True)
    head = LossPredictionHead([8])
    head([feature], detach=True).sum().backward()
    assert feature.grad is None
    head([feature]).sum().backward()
    assert feature.grad is not None
