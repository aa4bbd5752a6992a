"""The PCA T2+Q baseline: its 99 % limits hold on normal data, a fault is flagged, constant channels drop."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2

from trainer.baselines import PcaT2Q, q_limit


def _plant(n: int, seed: int) -> np.ndarray:
    """(n, 6) rows: two latent factors mixed into 6 channels plus small noise, very different scales."""
    rng = np.random.default_rng(seed)
    mix = np.random.default_rng(99).normal(size=(2, 6))
    x = rng.normal(size=(n, 2)) @ mix + 0.1 * rng.normal(size=(n, 6))
    return x * np.array([1, 10, 100, 0.1, 5, 50]) + 1000


def test_limits_give_about_one_percent_alarms_each_on_normal_data() -> None:
    mon = PcaT2Q.fit(_plant(5000, 0))
    assert mon.k == 2  # two factors explain >= 90 % of the variance
    t2, q = mon.statistics(_plant(20000, 1))
    assert np.mean(t2 > mon.t2_limit) == pytest.approx(0.01, abs=0.004)
    assert np.mean(q > mon.q_limit) == pytest.approx(0.01, abs=0.004)
    assert np.mean(mon.score(_plant(20000, 1)) > 1) < 0.03


def test_a_broken_correlation_is_flagged_by_q() -> None:
    mon = PcaT2Q.fit(_plant(2000, 0))
    x = _plant(200, 2)
    x[:, 3] += 0.1  # 10x channel 3's noise (0.01), well inside its normal range, but off the model plane
    t2, q = mon.statistics(x)
    assert np.mean(q > mon.q_limit) > 0.9


def test_q_limit_is_close_to_the_chi_square_of_equal_residual_eigenvalues() -> None:
    # m equal residual eigenvalues lam: Q ~ lam * chi2(m); Jackson-Mudholkar approximates its quantile
    for m in (3, 10, 40):
        assert q_limit(np.full(m, 0.5)) == pytest.approx(0.5 * chi2.ppf(0.99, m), rel=0.03)
    assert q_limit(np.zeros(0)) == 0.0


def test_constant_training_channels_are_dropped() -> None:
    x = _plant(500, 0)
    x[:, 4] = 7.0
    mon = PcaT2Q.fit(x)
    assert mon.dropped == [4]
    assert np.isfinite(mon.score(_plant(10, 3))).all()
    with pytest.raises(ValueError, match="constant"):
        PcaT2Q.fit(np.ones((50, 3)))
