"""The level term's precision matrix: how the kept channels' window levels vary together in normal data (numpy only).

A window's level is ``mean_W(z)`` per channel (z normalised by the training rows). Scoring the level
vector by its Mahalanobis distance instead of channel by channel lets a window whose channels move
against their normal relation (flow down while pressure holds) stand out, and counts two channels
that always move together once. The covariance is shrunk towards its diagonal (``shrinkage``; 0 the
sample covariance, 1 the diagonal), as a few hundred overlapping training windows estimate it poorly.
On SKAB the diagonal (1.0) does as well out of sample; most of the gain over format 2 is the one
validation reference for the whole term (docs/EVALUATION.md, "What was tried").
"""

from __future__ import annotations

import numpy as np

MIN_LEVEL_STD = 0.05  # normalised units
LEVEL_SHRINKAGE = 1.0  # the diagonal: with the power-mean score (format 4) chosen by leave-one-fault-kind-out on SKAB
# over 0.6 (docs/EVALUATION.md); the shares l_c (P l)_c are then never negative


def level_precision(levels: np.ndarray, kept: np.ndarray, shrinkage: float = LEVEL_SHRINKAGE) -> np.ndarray:
    """(C, C) inverse of the shrunk covariance of ``levels`` (N, C) over the ``kept`` (C,) bool channels.

    Rows and columns of channels not kept are 0, so they never reach the score.
    """
    if not 0.0 <= shrinkage <= 1.0:
        raise ValueError(f"shrinkage must be in [0, 1], got {shrinkage}")
    levels = np.asarray(levels, dtype=np.float64)
    kept = np.asarray(kept, dtype=bool)
    c = levels.shape[1]
    out = np.zeros((c, c))
    idx = np.flatnonzero(kept)
    if idx.size == 0:
        return out
    x = levels[:, idx]
    s = np.atleast_2d(np.cov(x, rowvar=False, bias=True)) if len(x) > 1 else np.eye(idx.size)
    s = (1.0 - shrinkage) * s + shrinkage * np.diag(np.diag(s))
    s += np.diag(np.maximum(0.0, MIN_LEVEL_STD**2 - np.diag(s)))  # as the diagonal term's floor on a level's std
    ridge = 1e-6 * max(float(np.trace(s)) / idx.size, 1e-6)
    out[np.ix_(idx, idx)] = np.linalg.pinv(s + ridge * np.eye(idx.size), hermitian=True)
    return out


def mahalanobis(levels: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """(N,) ``l^T P l`` of each row of ``levels`` (N, C)."""
    return np.einsum("nc,cd,nd->n", levels, precision, levels)
