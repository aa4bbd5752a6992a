"""The fill for masked channels under the cross-channel term (edge_runtime/pipeline/factor_fill.py)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.pipeline.factor_fill import factor_fill, residual_projection


def _plant(n: int = 400, c: int = 10, k: int = 2, noise: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    load = rng.normal(size=(c, k))
    x = rng.normal(size=(n, k)) @ load.T + noise * rng.standard_normal((n, c))
    q, _ = np.linalg.qr(load)
    return x.astype(np.float32), np.eye(c) - q @ q.T


def test_the_fill_is_what_the_factors_expect_and_leaves_the_least_residual() -> None:
    x, m = _plant()
    mean, std = np.zeros(10, np.float32), np.ones(10, np.float32)
    windows = x.reshape(20, 20, 10).copy()
    excluded = np.zeros(10, dtype=bool)
    excluded[[2, 7]] = True
    filled = windows.copy()
    filled[..., excluded] = 99.0  # a frozen or out-of-range value, overwritten
    factor_fill(filled, excluded, mean, std, m)
    np.testing.assert_allclose(filled[..., ~excluded], windows[..., ~excluded])  # healthy channels untouched
    np.testing.assert_allclose(filled[..., excluded], windows[..., excluded], atol=0.1)  # noise 0.02: close to truth
    at_mean = windows.copy()
    at_mean[..., excluded] = 0.0

    def residual(w: np.ndarray) -> float:
        return float(np.mean((w @ m) ** 2))

    assert residual(filled) <= residual(windows) + 1e-9  # least squares: no more than the true values leave
    assert residual(at_mean) > 20 * residual(filled)  # the mean fill breaks the pattern


def test_a_channel_outside_the_projection_falls_back_to_its_mean() -> None:
    x, m = _plant()
    m[4], m[:, 4] = 0.0, 0.0  # screened out of the score: no row or column
    mean, std = np.full(10, 3.0, np.float32), np.full(10, 2.0, np.float32)
    windows = (x * 2.0 + 3.0).reshape(20, 20, 10)
    excluded = np.zeros(10, dtype=bool)
    excluded[4] = True
    factor_fill(windows, excluded, mean, std, m)
    np.testing.assert_allclose(windows[..., 4], 3.0)


def test_the_projection_is_read_and_checked_from_the_metadata() -> None:
    term = {"residual_coef": [1.0, 2.0, 0.0], "cross_only": [0, 0, 1]}
    assert residual_projection({}, 3) is None
    got = residual_projection({"residual_projection": np.eye(3).tolist(), **term}, 3)
    assert got is not None and got.shape == (3, 3)
    with pytest.raises(ValueError, match="3 x 3"):
        residual_projection({"residual_projection": np.eye(2).tolist(), **term}, 3)
    with pytest.raises(ValueError, match="matrix"):
        residual_projection({"residual_projection": [[1, "a"], [0, 1]]}, 2)
    with pytest.raises(ValueError, match="residual_coef: must be 3 finite numbers"):
        residual_projection({"residual_projection": np.eye(3).tolist(), "cross_only": [0, 0, 1]}, 3)
    with pytest.raises(ValueError, match="cross_only"):
        residual_projection({"residual_projection": np.eye(3).tolist(), **term, "cross_only": [0, 1]}, 3)
