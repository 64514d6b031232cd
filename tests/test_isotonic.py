"""Isotonic regression of many sequences at once agrees with pool-adjacent-violators run on each
sequence alone (tests/reference_sim.py), zero-weight points left out of the fit."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from reference_sim import pava
from theradose.isotonic import isotonic_increasing

point = st.tuples(
    st.floats(0.0, 1.0),
    st.one_of(st.just(0.0), st.floats(0.01, 1_000.0)),  # weight 0: a level nobody was treated at
)


@given(st.lists(st.lists(point, min_size=1, max_size=8), min_size=1, max_size=6), st.data())
def test_each_row_is_its_own_pool_adjacent_violators_fit(rows, data):
    n_levels = len(rows[0])
    rows = [(row * n_levels)[:n_levels] for row in rows]  # one length for the batch
    values = np.array([[x for x, _ in row] for row in rows])
    weights = np.array([[w for _, w in row] for row in rows])
    fit = isotonic_increasing(values, weights)
    assert fit.shape == values.shape
    for row in range(len(rows)):
        kept = weights[row] > 0
        expected = np.full(n_levels, np.nan)
        if kept.any():
            expected[kept] = pava(values[row, kept], weights[row, kept])
        np.testing.assert_allclose(fit[row], expected, rtol=1e-9, atol=1e-12)
        assert np.all(np.diff(fit[row, kept]) >= -1e-12)  # non-decreasing over the fitted points
    one = data.draw(st.integers(0, len(rows) - 1))
    np.testing.assert_array_equal(isotonic_increasing(values[one], weights[one]), fit[one])
