"""Fill for masked channels under a model with the cross-channel term (``scoring.residual_projection``).

Such a model scores what the kept channels' common factors do not explain, ``M z`` with ``M = I - P P^T``.
Filling an excluded (faulty) channel with its training mean would itself break the pattern the factors
expect and raise the healthy channels' residuals. Instead the excluded channels ``J`` get the values the
factors expect from the healthy ones ``H``, the least-squares fill that makes the residual smallest:
``z_J = -M_JJ^+ M_JH z_H`` (z: normalised units), row by row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt


def residual_projection(scoring: Any, n_channels: int) -> npt.NDArray[np.float64] | None:
    """``scoring.residual_projection`` as a (C, C) array; None when absent. ValueError when malformed."""
    raw = scoring.get("residual_projection") if isinstance(scoring, dict) else None
    if raw is None:
        return None
    try:
        m = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("scoring.residual_projection: must be a C x C matrix of numbers") from None
    if m.shape != (n_channels, n_channels) or not np.all(np.isfinite(m)):
        raise ValueError(f"scoring.residual_projection: must be a finite {n_channels} x {n_channels} matrix")
    for key in ("residual_coef", "cross_only"):  # the term's other two fields come with it
        v = scoring.get(key)
        if not (isinstance(v, list) and len(v) == n_channels
                and all(isinstance(e, (int, float)) and not isinstance(e, bool) and np.isfinite(e) for e in v)):
            raise ValueError(f"scoring.{key}: must be {n_channels} finite numbers with scoring.residual_projection")
    return m


def fill_excluded(windows: npt.NDArray[np.float32], excluded: npt.NDArray[np.bool_], mean: npt.NDArray[np.float32],
                  std: npt.NDArray[np.float32], projection: npt.NDArray[np.float64] | None) -> None:
    """Overwrite the ``excluded`` (C,) channels of raw ``windows`` (n, W, C) in place, as the scorer masks them: the
    training ``mean`` (its level adds nothing to the level term), or with the cross-channel term's ``projection``
    the factors' estimate from the healthy channels (:func:`factor_fill`)."""
    if projection is None:
        windows[:, :, excluded] = mean[excluded]
    else:
        factor_fill(windows, excluded, mean, std, projection)


def factor_fill(windows: npt.NDArray[np.float32], excluded: npt.NDArray[np.bool_], mean: npt.NDArray[np.float32],
                std: npt.NDArray[np.float32], projection: npt.NDArray[np.float64]) -> None:
    """Overwrite the ``excluded`` (C,) channels of raw ``windows`` (n, W, C) in place with the factors' fill."""
    j = np.flatnonzero(excluded)
    h = np.flatnonzero(~excluded)
    if not len(j):
        return
    mjj = projection[np.ix_(j, j)]
    z_h = (windows[..., h] - mean[h]) / std[h]  # (n, W, |H|)
    z_j = -(z_h @ projection[np.ix_(h, j)]) @ np.linalg.pinv(mjj, rcond=1e-6, hermitian=True)
    windows[..., j] = (z_j * std[j] + mean[j]).astype(windows.dtype, copy=False)
