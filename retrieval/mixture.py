"""The Dirichlet-process mixture of eq. 4 on one-dimensional scores.

``ScoreMixture`` is scikit-learn's ``BayesianGaussianMixture``: its parameters, priors, k-means++
initialisation, iteration loop, convergence test and prediction are sklearn's own. Only the three
per-iteration steps (variational E step, M step, lower bound) are overridden, with the same
formulas written for a single feature with a diagonal covariance, on (k,) vectors and a (k, n)
responsibility matrix. At 256 scores sklearn's generic steps take about 0.2 ms an iteration,
mostly array-namespace dispatch; these take about 70 us, and a fit runs about 60 iterations.
Some sums run in another order, so parameters agree to rounding; ``tests/retrieval/test_mixture.py``
checks that the labels, the iteration count and the parameters match the stock class.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import betaln, digamma, gammaln
from sklearn.mixture import BayesianGaussianMixture

_LOG_2PI = math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)


class ScoreMixture(BayesianGaussianMixture):
    """``BayesianGaussianMixture(covariance_type="diag", weight_concentration_prior_type=
    "dirichlet_process")`` for (n, 1) inputs, with its iteration steps specialised to one feature."""

    def _check_parameters(self, X: np.ndarray, xp: Any = None) -> None:
        if self.covariance_type != "diag" or self.weight_concentration_prior_type != "dirichlet_process":
            raise ValueError("ScoreMixture is the diagonal Dirichlet-process mixture only")
        if X.shape[1] != 1:
            raise ValueError(f"ScoreMixture fits one feature, got {X.shape[1]}")
        if xp is None:  # scikit-learn before 1.8 has no ``xp`` here
            super()._check_parameters(X)
        else:
            super()._check_parameters(X, xp=xp)

    def _weighted_log_prob(self, x: np.ndarray) -> np.ndarray:
        """(k, n) log p(x | component) + log weight, as sklearn's ``_estimate_weighted_log_prob``
        (``_estimate_log_gaussian_prob`` for 'diag', the Wishart terms, the stick-breaking
        weights) with n_features = 1. Components are rows here: every reduction runs along a
        contiguous axis."""
        dof = self.degrees_of_freedom_
        chol = self.precisions_cholesky_[:, 0]
        means = self.means_[:, 0]
        precisions = chol**2
        a, b = self.weight_concentration_
        digamma_sum = digamma(a + b)
        log_weights = digamma(a) - digamma_sum
        log_weights[1:] += np.cumsum(digamma(b) - digamma_sum)[:-1]
        per_component = (
            -0.5 * (_LOG_2PI + means**2 * precisions)
            + np.log(chol)
            - 0.5 * np.log(dof)
            + 0.5 * (_LOG_2 + digamma(0.5 * dof) - 1.0 / self.mean_precision_)
            + log_weights
        )
        return (per_component[:, None] + (means * precisions)[:, None] * x) - (0.5 * precisions)[:, None] * (x * x)

    def _e_step(self, X: np.ndarray, xp: Any = None) -> tuple[float, np.ndarray]:
        weighted = self._weighted_log_prob(np.ascontiguousarray(X[:, 0]))
        peak = weighted.max(axis=0)
        log_norm = np.log(np.exp(weighted - peak).sum(axis=0)) + peak
        with np.errstate(under="ignore"):
            log_resp = weighted - log_norm
        self._resp = (log_resp, np.exp(log_resp))
        return float(log_norm.sum() / len(log_norm)), log_resp.T

    def _responsibilities(self, log_resp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(k, n) log_resp and exp(log_resp), the exponential computed once per E step (the M
        step and the bound both need it)."""
        rows = log_resp.T
        cached: tuple[np.ndarray, np.ndarray] | None = getattr(self, "_resp", None)
        if cached is not None and rows.base is cached[0]:
            return cached
        rows = np.ascontiguousarray(rows)
        return rows, np.exp(rows)

    def _m_step(self, X: np.ndarray, log_resp: np.ndarray, xp: Any = None) -> None:
        """sklearn's ``_estimate_gaussian_parameters`` then ``_estimate_weights``,
        ``_estimate_means`` and ``_estimate_wishart_diag``, on (k,) vectors."""
        _, resp = self._responsibilities(log_resp)
        x = X[:, 0]
        nk = resp.sum(axis=1) + 10 * np.finfo(resp.dtype).eps
        xk = (resp @ x) / nk
        sk = (resp @ (x * x)) / nk - xk**2 + self.reg_covar
        self.weight_concentration_ = (
            1.0 + nk,
            self.weight_concentration_prior_ + np.concatenate((np.cumsum(nk[::-1])[-2::-1], [0.0])),
        )
        prior_precision, prior_mean = self.mean_precision_prior_, self.mean_prior_[0]
        self.mean_precision_ = prior_precision + nk
        self.means_ = ((prior_precision * prior_mean + nk * xk) / self.mean_precision_)[:, None]
        self.degrees_of_freedom_ = self.degrees_of_freedom_prior_ + nk
        spread = self.covariance_prior_[0] + nk * (
            sk + (prior_precision / self.mean_precision_) * (xk - prior_mean) ** 2
        )
        covariances = spread / self.degrees_of_freedom_
        if (covariances <= 0.0).any():
            raise ValueError("a mixture component collapsed to zero variance")
        self.covariances_ = covariances[:, None]
        self.precisions_cholesky_ = (1.0 / np.sqrt(covariances))[:, None]

    def _compute_lower_bound(self, log_resp: np.ndarray, log_prob_norm: float) -> float:
        rows, resp = self._responsibilities(log_resp)
        dof = self.degrees_of_freedom_
        log_det = np.log(self.precisions_cholesky_[:, 0]) - 0.5 * np.log(dof)
        log_wishart = -(dof * log_det + dof * 0.5 * _LOG_2 + gammaln(0.5 * dof))
        a, b = self.weight_concentration_
        return float(
            -(resp * rows).sum() - log_wishart.sum() + betaln(a, b).sum() - 0.5 * np.log(self.mean_precision_).sum()
        )
