"""Weighted isotonic (non-decreasing) regression of many short sequences at once.

The pool-adjacent-violators result equals the min–max formula
``fit[i] = max_{j <= i} min_{k >= i} mean_w(x[j..k])`` (Robertson, Wright & Dykstra 1988,
*Order Restricted Statistical Inference*, Thm 1.4.4). Dose-finding sequences are short (a few
levels), so evaluating every (j, k) block for all trials at once beats a per-trial PAVA loop.
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
    values = np.asarray(values, dtype=float)
    weights = np.asarray(weights, dtype=float)
    if values.ndim == 2 and values.shape[0] > _FEW_ROWS:
        # Trials end in far fewer distinct states than there are trials: fit each once.
        rows = np.ascontiguousarray(np.concatenate([values, weights], axis=1))
        key = rows.view(np.dtype((np.void, rows.itemsize * rows.shape[1]))).ravel()
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        return _fit(values[first], weights[first])[inverse.ravel()]
    return _fit(values, weights)


_FEW_ROWS = 64


def _fit(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    n_levels = values.shape[-1]
    w = np.maximum(weights, 0.0)
    zero = np.zeros(values.shape[:-1] + (1,))
    cum_wx = np.concatenate([zero, np.cumsum(w * np.where(w > 0, values, 0.0), -1)], -1)
    cum_w = np.concatenate([zero, np.cumsum(w, -1)], -1)
    # block[..., j, k] = weighted mean of x[j..k]; +inf where empty or j > k (ignored by the min)
    block_w = cum_w[..., None, 1:] - cum_w[..., :-1, None]
    block_wx = cum_wx[..., None, 1:] - cum_wx[..., :-1, None]
    upper = np.triu(np.ones((n_levels, n_levels), dtype=bool))
    with np.errstate(invalid="ignore", divide="ignore"):
        block = np.where(upper & (block_w > 0), block_wx / block_w, np.inf)
    fit = np.empty(values.shape)
    for i in range(n_levels):
        fit[..., i] = block[..., : i + 1, i:].min(axis=-1).max(axis=-1)
    return np.where(w > 0, fit, np.nan)
