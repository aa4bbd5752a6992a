"""pipeline/guards.py: clipping to the training range and saturating non-finite outputs."""

from __future__ import annotations

import numpy as np

from edge_runtime.pipeline.guards import F32_MAX, clip_bounds, clip_windows, saturate_non_finite


def test_clip_bounds_are_mean_plus_minus_z_std_within_float32() -> None:
    lo, hi = clip_bounds([0.0, 10.0, 0.0], [1.0, 2.0, 0.0], 100.0)
    assert lo.tolist() == [-100.0, -190.0, -100.0] and hi.tolist() == [100.0, 210.0, 100.0]  # std 0 -> 1
    lo, hi = clip_bounds([0.0], [1e30], 1e30)
    assert lo[0] == -F32_MAX and hi[0] == F32_MAX


def test_clip_windows_clips_in_place_and_counts_windows() -> None:
    lo, hi = clip_bounds([0.0, 0.0], [1.0, 1.0], 10.0)
    batch = np.zeros((3, 4, 2), np.float32)
    batch[1, 2, 0] = F32_MAX
    batch[2, 0, 1] = -1e20
    assert clip_windows(batch, lo, hi) == 2
    assert batch[1, 2, 0] == 10.0 and batch[2, 0, 1] == -10.0 and batch[0].sum() == 0
    assert clip_windows(batch, lo, hi) == 0



def test_clip_windows_with_channels_of_far_apart_levels_tests_each_channel_against_its_own_bounds() -> None:
    # bounds that do not overlap across channels (0 +- 10 and 1000 +- 10) defeat the whole-array fast path
    lo, hi = clip_bounds([0.0, 1000.0], [1.0, 1.0], 10.0)
    batch = np.zeros((4, 3, 2), np.float32)
    batch[..., 1] = 1000.0
    assert clip_windows(batch, lo, hi) == 0
    batch[2, 1, 0] = 20.0  # beyond channel 0's bound, far inside channel 1's
    batch[3, 0, 1] = 985.0
    before = batch.copy()
    assert clip_windows(batch, lo, hi) == 2
    assert batch[2, 1, 0] == 10.0 and batch[3, 0, 1] == 990.0
    assert np.array_equal(batch[:2], before[:2])


def test_clip_windows_leaves_nan_alone() -> None:
    lo, hi = clip_bounds([0.0], [1.0], 10.0)
    batch = np.zeros((2, 3, 1), np.float32)
    batch[1, 1, 0] = np.nan
    assert clip_windows(batch, lo, hi) == 0 and np.isnan(batch[1, 1, 0])

def test_saturate_non_finite_makes_every_output_finite_and_counts_windows() -> None:
    score = np.array([1.0, np.nan, 2.0, np.inf], np.float32)
    ce = np.array([[1, 1], [1, 1], [np.nan, 1], [1, np.inf]], np.float32)
    s, c, n = saturate_non_finite(score, ce)
    assert n == 3
    assert s.tolist() == [1.0, F32_MAX, F32_MAX, F32_MAX]
    assert np.isfinite(c).all() and c[2, 0] == F32_MAX and c[3, 1] == F32_MAX and c[1].tolist() == [1, 1]
    s2, c2, n2 = saturate_non_finite(s, c)
    assert n2 == 0 and s2 is s and c2 is c
