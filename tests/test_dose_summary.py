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


def test_each_bin_holds_its_lower_edge_and_not_its_upper():
    limit = 23.0
    edges = np.linspace(0.0, HIST_SPAN * limit, HIST_BINS + 1)
    below, above = np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf)
    on_edges = np.concatenate([edges, below[1:], above])
    counts = binned(on_edges, limit)
    np.testing.assert_array_equal(counts, numpy_bins(on_edges, limit))
    # each bin: its lower edge, just above it, just below its upper edge; the last bin also
    # the top edge and just above it
    assert (counts[:-1] == 3).all() and counts[-1] == 5


def test_values_past_the_span_go_to_the_last_bin_and_nan_or_inf_nowhere():
    counts = binned([92.0, 1e300, np.inf, np.nan, 0.0], 23.0)
    assert counts[-1] == 2 and counts[0] == 1 and counts.sum() == 3


@settings(max_examples=60, deadline=None)
@given(
    limit=st.floats(0.01, 1e4),
    scale=st.floats(0.001, 10.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_the_bins_are_numpys(limit, scale, seed):
    values = np.random.default_rng(seed).exponential(scale * limit, size=2_000)
    counts = binned(values, limit)
    np.testing.assert_array_equal(counts, numpy_bins(values, limit))
    assert counts.sum() == values.size


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
