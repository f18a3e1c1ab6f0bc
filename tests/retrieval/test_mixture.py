"""ScoreMixture is sklearn's BayesianGaussianMixture with its steps written for one feature: the
same labels, iterations and parameters as the stock class on score sets of every shape."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture

from retrieval.mixture import ScoreMixture


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
    z = ((scores - scores.mean()) / scores.std())[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        stock = BayesianGaussianMixture(**params(len(z), case % 3))
        expected = stock.fit(z).predict(z)
        ours = ScoreMixture(**params(len(z), case % 3))
        labels = ours.fit_predict(z)
    np.testing.assert_array_equal(labels, expected)
    assert ours.n_iter_ == stock.n_iter_
    assert ours.converged_ == stock.converged_
    np.testing.assert_allclose(ours.means_, stock.means_, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours.covariances_, stock.covariances_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.weights_, stock.weights_, rtol=0, atol=1e-9)
    assert ours.lower_bound_ == pytest.approx(stock.lower_bound_, rel=1e-10, abs=1e-8)
    np.testing.assert_array_equal(ours.predict(z), expected)


def test_only_the_diagonal_dirichlet_process_mixture_of_one_feature() -> None:
    z = np.linspace(0.0, 1.0, 12)[:, None]
    with pytest.raises(ValueError, match="diagonal Dirichlet-process"):
        ScoreMixture(covariance_type="full").fit(z)
    with pytest.raises(ValueError, match="one feature"):
        ScoreMixture(n_components=2, covariance_type="diag").fit(np.hstack([z, z]))
    assert ScoreMixture(n_components=3, random_state=0).get_params()["n_components"] == 3
