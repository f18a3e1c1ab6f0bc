"""The sampler's math on constructed score sets: clusters, proportional takes, exact budgets,
determinism, degenerate inputs, and properties that hold for any input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retrieval.sampling import (
    STRATEGIES,
    allocate,
    cluster_weights,
    fit_clusters,
    kde_log_density,
    kde_sample,
    mmr_select,
    select,
    topk_select,
)


def two_clusters(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scores = np.concatenate([rng.normal(0.9, 0.005, 10), rng.normal(0.5, 0.01, 30)])
    return rng.permutation(scores)


def test_two_separated_clusters_give_k2_and_proportional_takes():
    scores = two_clusters()
    selection = kde_sample(scores, 8)
    fit = selection.fit
    assert fit is not None and fit.k == 2
    assert fit.means[0] > 0.85 and fit.means[1] < 0.55
    high = set(np.flatnonzero(scores > 0.7).tolist())
    assert {i for i, c in selection.cluster_of.items() if c == 0} == high
    # W_n by eq. 6, recomputed by hand from the KDE's own log density
    considered = selection.considered
    log_density, _ = kde_log_density(scores[considered])
    relative = np.exp(log_density - log_density.max())
    expected = np.array([relative[fit.labels == c].sum() / 2 for c in (0, 1)])
    assert selection.cluster_weights is not None
    np.testing.assert_allclose(selection.cluster_weights, expected)
    # proportional takes: best cluster first, ceil of its share, the rest from the next
    share0 = 8 * expected[0] / expected.sum()
    assert selection.takes is not None
    assert selection.takes.tolist() == [math.ceil(share0), 8 - math.ceil(share0)]
    taken_high = [i for i in selection.indices.tolist() if i in high]
    # from each cluster the best scores are taken, and the result is ranked by score
    assert sorted(taken_high, key=lambda i: -scores[i]) == sorted(high, key=lambda i: -scores[i])[: len(taken_high)]
    assert np.all(np.diff(scores[selection.indices]) <= 0)


def test_cluster_weights_follow_eq6():
    labels = np.array([0, 0, 1, 1, 1])
    log_density = np.log(np.array([1.0, 0.5, 0.25, 0.25, 0.5]))
    np.testing.assert_allclose(cluster_weights(labels, log_density, 2), [(1 + 0.5) / 2, (0.25 + 0.25 + 0.5) / 2])


@pytest.mark.parametrize(
    ("weights", "sizes", "budget", "takes"),
    [
        ([0.2, 0.8], [10, 10], 5, [1, 4]),  # ceil(1.0) = 1, then the rest
        ([0.3, 0.7], [10, 10], 5, [2, 3]),  # ceil(1.5) = 2 for the best cluster
        ([0.05, 0.9, 0.05], [3, 3, 10], 5, [1, 3, 1]),  # best cluster never rounded away; caps spill over
        ([0.5, 0.5], [1, 1], 5, [1, 1]),  # fewer candidates than the budget
        ([0.0, 0.0], [2, 2], 3, [2, 1]),  # no weight at all: uniform
        ([np.nan, 1.0], [2, 2], 2, [0, 2]),  # a NaN weight counts as none
    ],
)
def test_allocate(weights, sizes, budget, takes):
    assert allocate(np.array(weights), np.array(sizes), budget).tolist() == takes


@pytest.mark.parametrize("k", [1, 2, 5, 13, 40])
def test_budget_is_met_exactly(k):
    scores = two_clusters(3)
    for strategy in STRATEGIES:
        vectors = np.random.default_rng(0).normal(size=(len(scores), 8))
        assert len(select(strategy, scores, k, vectors=vectors).indices) == min(k, len(scores))


def test_deterministic_for_a_seed_and_independent_of_input_order():
    scores = np.random.default_rng(1).normal(0.6, 0.05, 200)
    first = kde_sample(scores, 7, seed=3)
    again = kde_sample(scores, 7, seed=3)
    assert first.indices.tolist() == again.indices.tolist()
    perm = np.random.default_rng(2).permutation(len(scores))
    shuffled = kde_sample(scores[perm], 7, seed=3)
    assert sorted(perm[shuffled.indices].tolist()) == sorted(first.indices.tolist())


@pytest.mark.parametrize(
    ("scores", "k", "expected"),
    [
        ([0.7], 5, [0]),  # one candidate
        ([0.5, 0.5, 0.5, 0.5], 2, [0, 1]),  # all equal: one cluster, ties by position
        ([0.2, 0.9, 0.4], 5, [1, 2, 0]),  # fewer candidates than k
        ([np.nan, 0.3, np.inf, 0.2], 5, [1, 3]),  # NaN/inf (a zero vector) left out
        ([], 3, []),  # nothing to choose from
        ([np.nan, np.nan], 1, []),
    ],
)
def test_degenerate_inputs(scores, k, expected):
    for strategy in STRATEGIES:
        selection = select(strategy, np.array(scores, float), k, vectors=None)
        assert selection.indices.tolist() == expected, strategy


def test_the_best_candidate_is_taken_even_when_a_wide_low_mean_component_owns_it():
    scores = np.array([0.691, 0.515, 0.512, 0.503, 0.501, 0.5, 0.48, 0.47, 0.267])
    for k in (1, 2, 3):
        assert kde_sample(scores, k).indices[0] == 0
    rng = np.random.default_rng(5)
    for _ in range(100):
        s = rng.normal(0.5, rng.uniform(0.01, 0.2), int(rng.integers(3, 60)))
        assert kde_sample(s, int(rng.integers(1, 6))).indices[0] == int(np.argmax(s))


def test_single_cluster_without_spread():
    fit = fit_clusters(np.full(10, 0.42))
    assert fit.k == 1 and fit.labels.tolist() == [0] * 10 and fit.means[0] == pytest.approx(0.42)


def test_mmr_prefers_a_different_document_over_a_near_duplicate():
    scores = np.array([0.90, 0.89, 0.80])
    vectors = np.array([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0]])
    assert topk_select(scores, 2).indices.tolist() == [0, 1]
    assert mmr_select(scores, vectors, 2, lam=0.5).indices.tolist() == [0, 2]
    assert mmr_select(scores, vectors, 2, lam=1.0).indices.tolist() == [0, 1]  # relevance only = top-k


scores_strategy = st.lists(st.one_of(st.floats(-1, 1, allow_nan=False), st.just(float("nan"))), min_size=0, max_size=60)


@settings(max_examples=60, deadline=None)
@given(scores=scores_strategy, k=st.integers(1, 20), strategy=st.sampled_from(STRATEGIES), seed=st.integers(0, 5))
def test_selection_properties(scores, k, strategy, seed):
    s = np.array(scores, float)
    vectors = np.random.default_rng(seed).normal(size=(len(s), 4))
    selection = select(strategy, s, k, vectors=vectors, seed=seed)
    chosen = selection.indices.tolist()
    finite = set(np.flatnonzero(np.isfinite(s)).tolist())
    assert len(chosen) <= k
    assert len(chosen) == len(set(chosen))  # never repeats a document
    assert set(chosen) <= finite  # a subset of the (finite) candidates
    assert len(chosen) == min(k, len(finite))  # the budget is met whenever it can be
    if chosen and strategy != "mmr":
        assert max(s[list(finite)]) == s[chosen[0]]  # the best match always comes first


def test_fusion_credits_a_document_every_pipeline_found():
    from kbengine.core.schemas import KnowledgeDocument, LockPayload
    from kbengine.core.store import Hit
    from retrieval.candidates import DocCandidate, LockHit, Pipeline, fuse

    def lock(name: str, kind: str) -> LockPayload:
        document = KnowledgeDocument(doc_id=name, domain="d", category="c", defect_type="t", title=name, source="s")
        return LockPayload.of(document, kind=kind, source="s", source_sha="f", sha256=name, encoder="e", locator=kind)  # type: ignore[arg-type]

    def doc(name: str, image: float, text: float | None = None) -> DocCandidate:
        d = DocCandidate(doc_id=name)
        d.best["image>image"] = LockHit(
            Hit(id=name, score=image, payload={}), lock(name, "image"), "image>image", "image"
        )
        if text is not None:
            hit = Hit(id=name + "t", score=text, payload={})
            d.best["text>text"] = LockHit(hit, lock(name, "text"), "text>text", "text")
        return d

    key = np.zeros(2, np.float32)
    pipelines = [Pipeline("image>image", "image", key), Pipeline("text>text", "text", key)]
    docs = [doc("a", 0.80), doc("b", 0.79, 0.6), doc("c", 0.5), doc("d", 0.4, 0.59)]
    fuse(docs, pipelines)
    fused = {d.doc_id: d.fused for d in docs}
    assert fused["b"] > fused["a"] and fused["d"] > fused["c"]
