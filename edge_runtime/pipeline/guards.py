"""Guards around the model: inputs far outside its training range, outputs that are not finite. Pure.

- :func:`clip_bounds` / :func:`clip_windows`: values further than ``z`` training standard deviations from
  the training mean (the model's normalisation statistics) are clipped to that bound before the model, so a
  sensor pegged at an error value (float32-max, 1e19) still scores as far out instead of overflowing the
  model to inf or NaN.
- :func:`saturate_non_finite`: a NaN or infinite score or channel error is never silently "normal" (``NaN >
  threshold`` is false): it becomes float32-max, so the window counts as anomalous and its non-finite channels
  lead the alert's ``top_channels``. Documents stay strict JSON.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

F32_MAX = float(np.finfo(np.float32).max)
F32Array = npt.NDArray[np.float32]


def clip_bounds(mean: Sequence[float], std: Sequence[float], z: float) -> tuple[F32Array, F32Array]:
    """Per-channel ``(lo, hi)``, each (C,) float32: ``mean -/+ z * std`` (within float32 range)."""
    m = np.asarray(mean, dtype=np.float64)
    s = np.abs(np.asarray(std, dtype=np.float64))
    s = np.where(np.isfinite(s) & (s > 0), s, 1.0)
    lo = np.clip(m - z * s, -F32_MAX, F32_MAX).astype(np.float32)
    hi = np.clip(m + z * s, -F32_MAX, F32_MAX).astype(np.float32)
    return lo, hi


def clip_windows(batch: F32Array, lo: F32Array, hi: F32Array) -> int:
    """Clip ``batch`` (B, W, C) float32 in place to ``lo``/``hi`` (C,); return how many windows had a value outside.

    Cheap on normal data: one whole-array max and min against the tightest bounds (SIMD passes, ~50x faster
    than reducing over W) settle the usual case; the per-value test runs only when those cannot.
    """
    if batch.size == 0 or (batch.max() <= hi.min() and batch.min() >= lo.max()):
        return 0  # NaN fails both comparisons and takes the full test (NaN is never clipped)
    outside = (batch > hi) | (batch < lo)  # (B, W, C)
    hit = outside.any(axis=(1, 2))  # (B,)
    n = int(hit.sum())
    if n:
        batch[hit] = np.clip(batch[hit], lo, hi)
    return n


def saturate_non_finite(score: np.ndarray, channel_error: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """``score`` (B,), ``channel_error`` (B, C) with every NaN / inf replaced by float32-max (a NaN score whose
    channel errors are finite too); returns them and the number of windows that had a non-finite output."""
    ce_ok = np.isfinite(channel_error)
    bad = ~np.isfinite(score) | ~ce_ok.all(axis=1)
    n = int(bad.sum())
    if n:
        score = np.where(bad, F32_MAX, score).astype(score.dtype)
        channel_error = np.where(ce_ok, channel_error, F32_MAX).astype(channel_error.dtype)
    return score, channel_error, n
