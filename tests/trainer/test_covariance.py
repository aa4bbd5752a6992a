"""The level term's precision matrix (trainer/covariance.py)."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.covariance import level_precision, mahalanobis


def correlated_levels(n: int = 2000, rho: float = 0.95, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(n)
    b = rho * a + np.sqrt(1 - rho**2) * rng.standard_normal(n)
    return np.c_[a, b, rng.standard_normal(n)]  # (N, 3)


def test_a_broken_relation_scores_far_above_the_same_size_move_along_it() -> None:
    p = level_precision(correlated_levels(), np.array([True, True, True]), shrinkage=0.0)
    along, against = mahalanobis(np.array([[1.0, 1.0, 0.0], [1.0, -1.0, 0.0]]), p)
    assert against > 10 * along  # a per-channel (diagonal) term scores both the same


def test_full_shrinkage_is_the_diagonal_and_screened_channels_are_zero() -> None:
    x = correlated_levels() * [1.0, 2.0, 0.5]
    p = level_precision(x, np.array([True, False, True]), shrinkage=1.0)
    assert np.all(p[1] == 0) and np.all(p[:, 1] == 0)
    np.testing.assert_allclose(np.diag(p)[[0, 2]], 1 / x[:, [0, 2]].var(axis=0), rtol=1e-4)
    assert p[0, 2] == 0


def test_a_channel_whose_level_never_moves_is_floored_not_infinite() -> None:
    x = correlated_levels()
    x[:, 2] = 1e-9 * x[:, 2]
    p = level_precision(x, np.ones(3, bool))
    assert np.isfinite(p).all() and p[2, 2] <= 1 / 0.05**2 + 1e-6


def test_shrinkage_outside_0_1_is_refused() -> None:
    with pytest.raises(ValueError, match="shrinkage"):
        level_precision(correlated_levels(), np.ones(3, bool), shrinkage=1.5)
