"""Weighted isotonic (non-decreasing) regression of many short sequences at once.

The pool-adjacent-violators result equals the min–max formula
``fit[i] = max_{j <= i} min_{k >= i} mean_w(x[j..k])`` (Robertson, Wright & Dykstra 1988,
*Order Restricted Statistical Inference*, Thm 1.4.4). Dose-finding sequences are short (a few
levels), so every trial's (j, k) blocks are evaluated at once, level by level over whole
columns of trials: a per-trial PAVA loop, or reductions along the short level axis, are many
times slower.
"""

from __future__ import annotations

import numpy as np


def isotonic_increasing(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted isotonic regression along the last axis.

    Parameters
    ----------
    values, weights : array [..., level]
        Points with zero weight are left out of the fit (their fitted value is NaN).

    Returns
    -------
    array [..., level]
        The non-decreasing fit minimising ``sum(w * (fit - x)**2)`` over the positive-weight points.
    """
    values = np.moveaxis(np.asarray(values, dtype=float), -1, 0)
    w = np.maximum(np.moveaxis(np.asarray(weights, dtype=float), -1, 0), 0.0)
    n_levels = values.shape[0]
    wx = w * np.where(w > 0, values, 0.0)
    # Block sums as differences of running sums: block (j, k) = cum[k + 1] - cum[j].
    cum_w, cum_wx = [np.zeros(values.shape[1:])], [np.zeros(values.shape[1:])]
    for k in range(n_levels):
        cum_w.append(cum_w[-1] + w[k])
        cum_wx.append(cum_wx[-1] + wx[k])
    # lowest[j][i - j] = min over k >= i of the mean of block j..k (+inf for weightless blocks)
    lowest = []
    with np.errstate(invalid="ignore", divide="ignore"):
        for j in range(n_levels):
            means = []
            for k in range(j, n_levels):
                block_w = cum_w[k + 1] - cum_w[j]
                means.append(np.where(block_w > 0, (cum_wx[k + 1] - cum_wx[j]) / block_w, np.inf))
            for k in range(len(means) - 2, -1, -1):
                np.minimum(means[k], means[k + 1], out=means[k])
            lowest.append(means)
    fit = np.empty(values.shape)
    for i in range(n_levels):
        best = lowest[0][i]
        for j in range(1, i + 1):
            best = np.maximum(best, lowest[j][i - j])
        fit[i] = best
    return np.moveaxis(np.where(w > 0, fit, np.nan), 0, -1)
