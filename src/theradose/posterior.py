"""Posteriors of one-parameter dose–toxicity models by Gauss–Legendre quadrature.

Every trial's log-likelihood on the quadrature nodes is one matrix product,
``Y @ log_p + (N − Y) @ log_1mp`` with ``log_p[level, node]``, and trials with identical counts
share one row. The prior is integrated over β ∈ [−10, 10] as dfcrm does; the number of nodes
grows with the sample size so that posterior means are accurate to better than 1e-6 (checked
against dense quadrature in the tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np

BETA_RANGE = 10.0
MIN_NODES = 512
NODES_PER_ROOT_PATIENT = 55


def n_nodes_for(max_patients: int) -> int:
    """Nodes for posteriors of up to ``max_patients`` patients.

    The narrowest posterior is that of conflicting data (0/n and n/n at adjacent levels, logistic
    model): sd ≈ 0.65/√N for N patients. With max(512, 55√N) nodes its posterior mean is exact to
    < 1e-8 for N ≤ 200 (measured against a 400,001-point rule); typical data are far wider.
    """
    return int(max(MIN_NODES, np.ceil(NODES_PER_ROOT_PATIENT * np.sqrt(max_patients))))


@cache
def _legendre(n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes and weights on [−1, 1] (an eigenvalue problem: computed once)."""
    x, w = np.polynomial.legendre.leggauss(n_nodes)
    x.setflags(write=False)
    w.setflags(write=False)
    return x, w


def gauss_legendre(n_nodes: int, lower: float = -BETA_RANGE, upper: float = BETA_RANGE):
    x, w = _legendre(n_nodes)
    half = (upper - lower) / 2
    return lower + half * (x + 1), half * w


def unique_states(n: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (n, y) rows and, per trial, the index of its row."""
    key = np.concatenate([n, y], axis=1)
    unique, inverse = np.unique(key, axis=0, return_inverse=True)
    levels = n.shape[1]
    return unique[:, :levels], unique[:, levels:], inverse.ravel()


@dataclass(frozen=True)
class QuadraturePosterior:
    """Posterior weights of β on fixed nodes for a batch of (distinct) data sets.

    Attributes
    ----------
    nodes : [node]
    weights : [state, node], each row sums to 1
    log_norm : [state] log of the unnormalised posterior integral (up to the prior's constant)
    """

    nodes: np.ndarray
    weights: np.ndarray
    log_shift: np.ndarray  # [state] max of the log integrand, for CDF integrals
    norm: np.ndarray  # [state] integral of exp(log integrand - log_shift)

    @property
    def beta_mean(self) -> np.ndarray:
        return self.weights @ self.nodes

    @property
    def beta_var(self) -> np.ndarray:
        mean = self.beta_mean
        return np.maximum(self.weights @ (self.nodes**2) - mean**2, 0.0)

    def expect(self, values: np.ndarray) -> np.ndarray:
        """Posterior mean of ``values[..., node]`` for each state: [state, ...]."""
        return self.weights @ values.T


def log_integrand(
    model, prior_sd: float, n: np.ndarray, y: np.ndarray, nodes: np.ndarray
) -> np.ndarray:
    """Log-likelihood + log-prior (unnormalised) of each state on shared nodes, [state, node]."""
    log_p, log_1mp = model.log_p(nodes)  # [node, level]
    n = n.astype(float)
    y = y.astype(float)
    return y @ log_p.T + (n - y) @ log_1mp.T - 0.5 * (nodes / prior_sd) ** 2


LogIntegrand = Callable[[np.ndarray], np.ndarray]  # nodes [node] → [state, node]


def posterior(log_f: LogIntegrand, n_nodes: int) -> QuadraturePosterior:
    """The posterior of β for each state, from its unnormalised log density on given nodes."""
    nodes, q = gauss_legendre(n_nodes)
    values = log_f(nodes)
    shift = values.max(axis=1)
    f = q * np.exp(values - shift[:, None])
    norm = f.sum(axis=1)
    return QuadraturePosterior(nodes=nodes, weights=f / norm[:, None], log_shift=shift, norm=norm)


def cdf_below(log_f: LogIntegrand, post: QuadraturePosterior, upper: float, n_nodes: int):
    """P(β ≤ upper | data) for each state, by a Gauss–Legendre rule on [−10, upper].

    Exact to quadrature accuracy at any threshold, unlike a step sum over the shared nodes; one
    threshold for all states keeps the likelihood a matrix product.
    """
    upper = float(np.clip(upper, -BETA_RANGE, BETA_RANGE))
    nodes, q = gauss_legendre(n_nodes, -BETA_RANGE, upper)
    integral = (q * np.exp(log_f(nodes) - post.log_shift[:, None])).sum(axis=1)
    return np.clip(integral / post.norm, 0.0, 1.0)


def quantile(
    log_f_one: LogIntegrand, post_one: QuadraturePosterior, prob: float, n_nodes: int
) -> float:
    """The ``prob`` quantile of ONE state's posterior of β, by bisection on :func:`cdf_below`."""
    lo, hi = -BETA_RANGE, BETA_RANGE
    for _ in range(60):
        mid = (lo + hi) / 2
        if cdf_below(log_f_one, post_one, mid, n_nodes)[0] < prob:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2
