"""Offline windowing: counts, boundaries, no window across series."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.pipeline.windowing_offline import (
    sliding_windows,
    window_labels,
    window_starts,
    windows_from_series,
)


@pytest.mark.parametrize(
    ("t", "w", "hop", "expected"),
    [(10, 4, 2, [0, 2, 4, 6]), (10, 4, 3, [0, 3, 6]), (4, 4, 1, [0]), (3, 4, 1, []), (9, 3, 3, [0, 3, 6])],
)
def test_window_starts(t: int, w: int, hop: int, expected: list[int]) -> None:
    assert window_starts(t, w, hop).tolist() == expected


def test_sliding_windows_content_and_layout() -> None:
    x = np.arange(20, dtype=np.float32).reshape(10, 2)  # (T, C)
    w = sliding_windows(x, 4, 3)
    assert w.shape == (3, 4, 2) and w.flags.c_contiguous
    np.testing.assert_array_equal(w[1], x[3:7])
    np.testing.assert_array_equal(w[-1], x[6:10])


def test_no_window_crosses_series() -> None:
    a = np.zeros((10, 1), np.float32)
    b = np.ones((7, 1), np.float32)
    w = windows_from_series([a, b], 4, 2)
    assert len(w) == 4 + 2
    # every window is all-0 or all-1: none mixes the two series
    assert set(np.unique(w.reshape(len(w), -1).mean(axis=1))) == {0.0, 1.0}


def test_window_labels_any_point() -> None:
    labels = np.zeros(10, np.int8)
    labels[5] = 1
    assert window_labels(labels, 4, 2).tolist() == [0, 1, 1, 0]


def test_bad_window_or_hop() -> None:
    with pytest.raises(ValueError):
        window_starts(10, 0, 1)
    with pytest.raises(ValueError):
        window_starts(10, 4, 0)
