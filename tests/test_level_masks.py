"""The column-by-column reductions over a [trial, level] mask or counts (theradose.state)
against numpy's own reductions along the level axis, on any input."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from theradose.state import NO_LEVEL, any_level, highest_level, row_sums, this_and_above

masks = st.integers(1, 8).flatmap(lambda k: arrays(bool, st.tuples(st.integers(0, 30), st.just(k))))


@given(masks)
def test_any_level_is_any_along_the_levels(mask):
    assert np.array_equal(any_level(mask), mask.any(axis=1))


@given(masks)
def test_highest_level_is_the_last_true_level(mask):
    k = mask.shape[1]
    expected = np.where(mask.any(axis=1), k - 1 - np.argmax(mask[:, ::-1], axis=1), NO_LEVEL)
    assert np.array_equal(highest_level(mask), expected)


@given(masks)
def test_this_and_above_is_a_running_or(mask):
    assert np.array_equal(this_and_above(mask), np.logical_or.accumulate(mask, axis=1))


@given(
    st.integers(0, 8).flatmap(
        lambda k: arrays(
            np.int64, st.tuples(st.integers(0, 30), st.just(k)), elements=st.integers(0, 99)
        )
    )
)
def test_row_sums_are_the_sums_along_the_levels(counts):
    total = row_sums(counts)
    assert total.dtype == counts.dtype and np.array_equal(total, counts.sum(axis=1))


@given(masks)
def test_row_sums_of_flags_count_them(mask):
    counts = row_sums(mask, np.int32)
    assert counts.dtype == np.int32 and np.array_equal(counts, mask.sum(axis=1))
