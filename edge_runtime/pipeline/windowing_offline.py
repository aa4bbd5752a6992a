"""Offline windowing of whole arrays (training, calibration, evaluation); pure numpy.

A window of length ``W`` starting at sample ``s`` covers ``s..s+W-1``; starts are
``0, hop, 2*hop, ...`` while the window fits. Windows never cross the end of the array,
so cutting each file separately keeps them from crossing file boundaries.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def window_starts(n_steps: int, window: int, hop: int) -> np.ndarray:
    """Start indices (N,) of every full window in a series of ``n_steps`` samples."""
    if window < 1 or hop < 1:
        raise ValueError(f"window and hop must be >= 1, got window={window}, hop={hop}")
    if n_steps < window:
        return np.zeros(0, dtype=np.int64)
    return np.arange(0, n_steps - window + 1, hop, dtype=np.int64)


def sliding_windows(x: np.ndarray, window: int, hop: int) -> np.ndarray:
    """Cut ``x`` (T, C) into windows (N, W, C) (a copy, C-contiguous)."""
    starts = window_starts(x.shape[0], window, hop)
    if starts.size == 0:
        return np.zeros((0, window, x.shape[1]), dtype=x.dtype)
    view = np.lib.stride_tricks.sliding_window_view(x, window, axis=0)  # (T-W+1, C, W)
    return np.ascontiguousarray(view[starts].transpose(0, 2, 1))


def windows_from_series(series: Sequence[np.ndarray], window: int, hop: int) -> np.ndarray:
    """Windows (N, W, C) of several series cut separately and stacked (no cross-series window)."""
    parts = [sliding_windows(x, window, hop) for x in series]
    if not parts:
        raise ValueError("no series given")
    return np.concatenate(parts, axis=0)


def window_labels(labels: np.ndarray, window: int, hop: int) -> np.ndarray:
    """Window labels (N,) int8: 1 when any point of the window is labelled anomalous."""
    starts = window_starts(labels.shape[0], window, hop)
    if starts.size == 0:
        return np.zeros(0, dtype=np.int8)
    csum = np.concatenate([[0], np.cumsum(labels != 0)])
    out: np.ndarray = ((csum[starts + window] - csum[starts]) > 0).astype(np.int8)
    return out
