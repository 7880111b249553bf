"""Queue scores that an import does not move (ranking.stable_scores, issue 23): the scores of the
tasks already there stay put when tasks are added, so a re-score writes only the new ones; set-based
strategies move their chosen head and nothing else."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from backends.active.ranking import HEAD_SPAN, SET_BASED, hashed_scores, rank, stable_scores
from backends.active.strategies import Pool

PER_SAMPLE = ("least_confidence", "margin", "entropy")


def pool(n: int, seed: int) -> Pool:
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(4), size=n)
    return Pool(probs=probs, embeddings=rng.normal(size=(n, 8)), labeled_embeddings=rng.normal(size=(5, 8)),
                predicted_loss=rng.gamma(2.0, size=n), rng=np.random.default_rng(0))


def grown(before: Pool, extra: Pool) -> Pool:
    return Pool(probs=np.vstack([before.probs, extra.probs]), embeddings=np.vstack([before.embeddings, extra.embeddings]),
                labeled_embeddings=before.labeled_embeddings,
                predicted_loss=np.concatenate([before.predicted_loss, extra.predicted_loss]), rng=np.random.default_rng(0))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 60), added=st.integers(1, 30), seed=st.integers(0, 10_000),
       strategy=st.sampled_from(PER_SAMPLE))
def test_an_import_moves_no_score_of_a_per_sample_strategy(n, added, seed, strategy):
    before = pool(n, seed)
    after = stable_scores(grown(before, pool(added, seed + 1)), strategy, queue_size=10)
    np.testing.assert_array_equal(after[:n], stable_scores(before, strategy, queue_size=10))
    assert ((after > 0) & (after < 1)).all()


@settings(max_examples=15, deadline=None)
@given(n=st.integers(2, 40), seed=st.integers(0, 10_000), strategy=st.sampled_from(PER_SAMPLE + SET_BASED))
def test_lowest_score_first_is_the_strategy_order(n, seed, strategy):
    """Label Studio serves lowest score first: that must be the order the strategy ranks in."""
    scores = stable_scores(pool(n, seed), strategy, queue_size=5)
    order = rank(pool(n, seed), strategy, queue_size=5)  # a fresh pool: badge's seeding draws from its rng
    assert np.all(np.diff(scores[order]) >= 0)


def test_an_import_moves_only_the_head_of_a_set_based_strategy():
    before, queue_size = pool(300, 1), 20
    for strategy in SET_BASED:
        old = stable_scores(before, strategy, queue_size)
        new = stable_scores(grown(before, pool(30, 2)), strategy, queue_size)[:300]
        moved = np.flatnonzero(old != new)
        assert len(moved) <= 2 * queue_size, (strategy, len(moved))  # in or out of the head
        assert (old[old < HEAD_SPAN].size == queue_size) and (old[old >= HEAD_SPAN] > HEAD_SPAN - 1e-12).all()


def test_hashed_scores_are_per_task_and_repeatable():
    first = hashed_scores([5, 9, 12], seed=0, salt=3)
    assert ((first >= 0) & (first < 1)).all() and len(set(first)) == 3
    np.testing.assert_array_equal(hashed_scores([12, 5], seed=0, salt=3), first[[2, 0]])
    assert not np.array_equal(hashed_scores([5, 9, 12], seed=0, salt=4), first)  # another project, another order
