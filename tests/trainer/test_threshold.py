"""Threshold calibration: quantile, POT (GPD fit), summaries, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.threshold import ThresholdError, calibrate, fit_gpd, pot_threshold, quantile_threshold


def gpd_sample(n: int, gamma: float, sigma: float, seed: int = 0) -> np.ndarray:
    u = np.random.default_rng(seed).random(n)
    return sigma / gamma * ((1 - u) ** (-gamma) - 1) if gamma else -sigma * np.log(1 - u)


@pytest.mark.parametrize(("gamma", "sigma"), [(0.2, 1.0), (-0.2, 2.0), (0.0, 0.5)])
def test_gpd_fit_recovers_parameters(gamma: float, sigma: float) -> None:
    g, s = fit_gpd(gpd_sample(20000, gamma, sigma))
    assert g == pytest.approx(gamma, abs=0.05)
    assert s == pytest.approx(sigma, rel=0.06)


def test_quantile_threshold() -> None:
    scores = np.arange(1, 1001, dtype=float)
    assert quantile_threshold(scores, 0.5) == pytest.approx(500.5)
    thr = calibrate(scores, "quantile", q=0.99)
    assert thr.method == "quantile" and thr.params == {"q": 0.99, "scale": 1.0}
    assert thr.value == pytest.approx(np.quantile(scores, 0.99))
    assert thr.validation["n"] == 1000 and thr.validation["max"] == 1000


def test_pot_threshold_matches_true_tail_quantile() -> None:
    # Exponential scores: P(S > z) = exp(-z); the 1e-4 tail quantile is ln(1e4) ~ 9.21.
    scores = np.random.default_rng(1).exponential(1.0, 50000)
    z, params = pot_threshold(scores, risk=1e-4, level=0.98)
    assert z == pytest.approx(np.log(1e4), rel=0.08)
    assert params["n_peaks"] == pytest.approx(1000, abs=2)
    thr = calibrate(scores, "pot", risk=1e-4)
    assert thr.method == "pot" and thr.value > np.quantile(scores, 0.999)


def test_scale_multiplies() -> None:
    scores = np.linspace(0.1, 1.0, 100)
    assert calibrate(scores, "quantile", scale=2.0, q=0.5).value == pytest.approx(
        2 * np.quantile(scores, 0.5)
    )


@pytest.mark.parametrize(
    ("scores", "method", "params", "msg"),
    [
        (np.ones(50), "pot", {}, "POT needs at least 10"),
        (np.ones(5), "iforest", {}, "not one of"),
        (np.array([]), "quantile", {}, "no validation scores"),
        (np.zeros(10), "quantile", {}, "not a finite positive"),
        (np.ones(10), "quantile", {"q": 1.5}, "q must be in"),
    ],
)
def test_refusals(scores: np.ndarray, method: str, params: dict, msg: str) -> None:
    with pytest.raises(ThresholdError, match=msg):
        calibrate(scores, method, **params)
