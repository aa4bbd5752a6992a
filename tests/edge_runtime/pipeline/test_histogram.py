"""Histogram: cumulative le-buckets, sum and count against a plain count over the same values."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_runtime.pipeline.histogram import INFERENCE_BUCKETS_S, LATENCY_BUCKETS_S, Histogram


@given(st.lists(st.floats(0, 20, allow_nan=False), max_size=200))
def test_buckets_count_values_at_or_below_each_bound(values: list[float]) -> None:
    h = Histogram(LATENCY_BUCKETS_S)
    for v in values:
        h.observe(v)
    snap = h.snapshot()
    assert snap.counts == tuple(sum(v <= b for v in values) for b in LATENCY_BUCKETS_S)
    assert snap.count == len(values)
    assert snap.sum == pytest.approx(sum(values))


def test_weighted_observation_and_bounds_checked() -> None:
    h = Histogram(INFERENCE_BUCKETS_S)
    h.observe(0.001, 5)  # a bound itself is inside its bucket (le)
    snap = h.snapshot()
    assert snap.counts[INFERENCE_BUCKETS_S.index(0.001)] == 5
    assert snap.counts[INFERENCE_BUCKETS_S.index(0.001) - 1] == 0
    assert (snap.count, snap.sum) == (5, pytest.approx(0.005))
    with pytest.raises(ValueError):
        Histogram((0.1, 0.1))
