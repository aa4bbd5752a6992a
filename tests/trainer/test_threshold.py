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


def test_quantile_min_windows_is_one_over_one_minus_q() -> None:
    from trainer.threshold import quantile_min_windows

    assert quantile_min_windows(0.999) == 1000
    assert quantile_min_windows(0.99) == 100
    assert quantile_min_windows(0.5) == 2


@pytest.mark.parametrize(("n", "level"), [(100, 0.98), (500, 0.98), (501, 0.98), (1000, 0.95), (37, 0.5)])
def test_pot_max_peaks_matches_the_peaks_of_distinct_scores(n: int, level: float) -> None:
    from trainer.threshold import pot_max_peaks

    s = np.random.default_rng(n).random(n)
    assert pot_max_peaks(n, level) == int((s > np.quantile(s, level)).sum())


def test_check_calibration_warns_when_quantile_is_just_the_max() -> None:
    from trainer.threshold import check_calibration

    msg = check_calibration(200, "quantile", {"q": 0.999})
    assert msg is not None and "200 validation windows" in msg and "1000 windows are needed" in msg
    assert "\n" not in msg
    assert check_calibration(1000, "quantile", {"q": 0.999}) is None
    assert check_calibration(200, "quantile", {"q": 0.99}) is None


def test_check_calibration_refuses_pot_with_too_few_windows() -> None:
    from trainer.threshold import check_calibration

    with pytest.raises(ThresholdError, match=r"POT needs at least 10 .* 400 validation windows give at most 8"):
        check_calibration(400, "pot", {"level": 0.98})
    assert check_calibration(600, "pot", {"level": 0.98}) is None


def test_lognormal_tail_matches_a_lognormal_sample() -> None:
    from statistics import NormalDist

    from trainer.threshold import expected_exceedance

    rng = np.random.default_rng(0)
    scores = np.exp(rng.normal(0.0, 0.5, size=400))
    thr = calibrate(scores, "lognormal", budget=1e-2)
    assert thr.params["tail"] == "lognormal"
    assert thr.value == pytest.approx(np.exp(0.5 * NormalDist().inv_cdf(0.99)), rel=0.1)
    assert expected_exceedance(thr) == pytest.approx(1e-2, rel=1e-6)
    wide = calibrate(scores, "lognormal", scale=3.0, budget=1e-2)
    assert wide.value == pytest.approx(3 * thr.value) and expected_exceedance(wide) < 1e-4


def test_lognormal_uses_the_empirical_quantile_with_enough_windows() -> None:
    scores = np.exp(np.random.default_rng(1).normal(size=20_000))
    thr = calibrate(scores, "lognormal", budget=1e-3)
    assert thr.params["tail"] == "empirical" and thr.value == pytest.approx(np.quantile(scores, 0.999))


def test_lognormal_refuses_a_bad_budget() -> None:
    with pytest.raises(ThresholdError, match="budget"):
        calibrate(np.ones(10), "lognormal", budget=2.0)
