"""fit_mixture is sklearn's BayesianGaussianMixture written in numpy for one feature: the same
labels, iterations and parameters as the stock class on score sets of every shape; its special
functions agree with scipy's."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import special
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture

from retrieval.mixture import betaln, digamma, fit_mixture, gammaln


def score_set(case: int) -> np.ndarray:
    rng = np.random.default_rng(case)
    n = int(rng.integers(3, 300))
    kind = case % 5
    if kind == 0:
        scores = rng.normal(0.5, 0.1, n)
    elif kind == 1:
        scores = np.concatenate([rng.normal(0.8, 0.02, max(1, n // 10)), rng.normal(0.5, 0.05, n)])
    elif kind == 2:
        scores = rng.beta(2, 5, n)
    elif kind == 3:
        scores = np.round(rng.normal(0.5, 0.1, n), 2)  # ties
    else:
        scores = np.concatenate([rng.normal(c, 0.01, n // 4 + 1) for c in (0.2, 0.4, 0.6, 0.9)])
    return np.sort(scores)[::-1]


def params(n: int, seed: int) -> dict[str, object]:
    return {
        "n_components": min(5, n),
        "covariance_type": "diag",
        "weight_concentration_prior_type": "dirichlet_process",
        "init_params": "k-means++",
        "max_iter": 100,
        "tol": 1e-4 * n,
        "random_state": seed,
    }


@pytest.mark.parametrize("case", range(60))
def test_same_fit_as_sklearn(case: int) -> None:
    scores = score_set(case)
    z = (scores - scores.mean()) / scores.std()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        stock = BayesianGaussianMixture(**params(len(z), case % 3))
        expected = stock.fit(z[:, None]).predict(z[:, None])
    ours = fit_mixture(z, min(5, len(z)), max_iter=100, tol=1e-4 * len(z), seed=case % 3)
    np.testing.assert_array_equal(ours.labels, expected)
    assert ours.n_iter == stock.n_iter_
    assert ours.converged == stock.converged_
    np.testing.assert_allclose(ours.means, stock.means_[:, 0], rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours.variances, stock.covariances_[:, 0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.weights, stock.weights_, rtol=0, atol=1e-9)
    assert ours.lower_bound == pytest.approx(stock.lower_bound_, rel=1e-10, abs=1e-8)


def test_special_functions_agree_with_scipy() -> None:
    x = np.concatenate([np.geomspace(1e-3, 1e4, 400), np.arange(1, 40) * 0.5])
    np.testing.assert_allclose(digamma(x), special.digamma(x), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(gammaln(x), special.gammaln(x), rtol=1e-13, atol=1e-12)
    a, b = np.meshgrid(np.geomspace(0.2, 400, 25), np.geomspace(0.2, 400, 25))
    np.testing.assert_allclose(betaln(a, b), special.betaln(a, b), rtol=1e-12, atol=1e-10)


def test_too_few_scores_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="needs at least 5 scores"):
        fit_mixture(np.linspace(0.0, 1.0, 4), 5)
    rng = np.random.default_rng(0)
    fit = fit_mixture(np.concatenate([rng.normal(0.0, 0.05, 20), rng.normal(1.0, 0.05, 20)]), 3)
    assert len(set(fit.labels[:20])) == 1 and len(set(fit.labels[20:])) == 1
    assert fit.labels[0] != fit.labels[20] and fit.converged
