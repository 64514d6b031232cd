"""The engine's organ-dose summary: its histogram against numpy's, on the edges too."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from theradose.dose_summary import HIST_BINS, HIST_SPAN, add_to_histogram, hist_quantile


def numpy_bins(values, limit):
    """numpy.histogram over [0, 4 × limit], with every value from the top edge up in the last
    bin (the rule add_to_histogram states)."""
    edges = np.linspace(0.0, HIST_SPAN * limit, HIST_BINS + 1)
    values = values[np.isfinite(values)]
    return np.histogram(np.minimum(values, edges[-1]), bins=edges)[0]


def binned(values, limit):
    counts = np.zeros(HIST_BINS, dtype=np.int64)
    add_to_histogram(counts, np.asarray(values, dtype=float), limit)
    return counts


def test_each_bin_holds_the_values_inside_it():
    limit = 23.0
    width = HIST_SPAN * limit / HIST_BINS
    inside = np.concatenate([(np.arange(HIST_BINS) + f) * width for f in (0.01, 0.5, 0.99)])
    counts = binned(inside, limit)
    assert (counts == 3).all()
    np.testing.assert_array_equal(counts, numpy_bins(inside, limit))


def test_values_past_the_span_go_to_the_last_bin_and_nan_or_inf_nowhere():
    counts = binned([92.0, 1e300, np.inf, np.nan, 0.0], 23.0)
    assert counts[-1] == 2 and counts[0] == 1 and counts.sum() == 3


@settings(max_examples=60, deadline=None)
@given(
    limit=st.floats(0.01, 1e4),
    scale=st.floats(0.001, 10.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_the_bins_are_numpys_but_on_an_edge(limit, scale, seed):
    """numpy's bins, except that a value within rounding of an edge may be on either side."""
    values = np.random.default_rng(seed).exponential(scale * limit, size=2_000)
    edges = np.linspace(0.0, HIST_SPAN * limit, HIST_BINS + 1)[::97]
    values = np.concatenate([values, edges, np.nextafter(edges, np.inf)])
    position = values * HIST_BINS / (HIST_SPAN * limit)
    near = np.abs(position - np.round(position)) <= 1e-9 * np.maximum(position, 1.0)
    counts = binned(values[~near], limit)
    np.testing.assert_array_equal(counts, numpy_bins(values[~near], limit))
    assert counts.sum() == (~near).sum()
    for value, at in zip(values[near], np.round(position[near]), strict=True):
        one = binned(np.array([value]), limit)
        assert one.sum() == 1 and np.flatnonzero(one)[0] in (min(at, HIST_BINS - 1), at - 1)


def test_counts_add_up_block_by_block():
    values = np.random.default_rng(5).gamma(2.0, 10.0, size=10_000)
    whole = binned(values, 23.0)
    counts = np.zeros(HIST_BINS, dtype=np.int64)
    for block in np.array_split(values, 7):
        add_to_histogram(counts, block, 23.0)
    np.testing.assert_array_equal(counts, whole)


def test_the_quantile_is_its_bins_midpoint():
    limit = 10.0
    width = HIST_SPAN * limit / HIST_BINS
    counts = binned(np.array([0.5 * width, 100.5 * width, 100.5 * width, 200.5 * width]), limit)
    assert hist_quantile(counts, limit, 0.5) == pytest.approx(100.5 * width, rel=1e-15)
    assert hist_quantile(counts, limit, 0.95) == pytest.approx(200.5 * width, rel=1e-15)
    assert hist_quantile(np.zeros(HIST_BINS, dtype=np.int64), limit, 0.5) is None
