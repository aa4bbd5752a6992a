"""Threshold calibration on validation scores of normal data (numpy only).

- ``quantile``: the ``q`` quantile of the validation scores, times ``scale``.
- ``pot``: peaks over threshold (the initial step of SPOT, Siffer et al. 2017): the scores
  above the ``level`` quantile ``t`` are fitted with a generalised Pareto distribution
  (maximum likelihood via Grimshaw's one-dimensional reduction) and the threshold is the
  score exceeded with probability ``risk``:
  ``z = t + sigma/gamma * ((risk * n / n_t) ** -gamma - 1)``, times ``scale``.
- ``lognormal`` (the default of ``fit``): the score exceeded by a fraction ``budget`` of normal
  windows, from a normal fit of ``log(score)`` (a tail fit that works with a few dozen windows);
  with at least ``10 / budget`` windows the empirical quantile instead. Times ``scale``: the margin
  for normal data that departs from the calibration period (chosen by leave-one-fault-kind-out).
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np

from edge_runtime.clierror import EXIT_DATAERR
from edge_runtime.contract import THRESHOLD_METHODS, Threshold
from edge_runtime.pipeline.calibration import CalibrationError
from edge_runtime.pipeline.calibration import lognormal_threshold as _edge_lognormal

POT_MIN_PEAKS = 10


class ThresholdError(ValueError):
    """Calibration impossible with these scores or parameters."""

    exit_code = EXIT_DATAERR


def score_summary(scores: np.ndarray) -> dict[str, float]:
    """n, mean, std, min, p50, p90, p99, max of ``scores`` (N,)."""
    s = np.asarray(scores, dtype=np.float64)
    q = np.quantile(s, [0.5, 0.9, 0.99])
    return {
        "n": int(s.size),
        "mean": float(s.mean()),
        "std": float(s.std()),
        "min": float(s.min()),
        "p50": float(q[0]),
        "p90": float(q[1]),
        "p99": float(q[2]),
        "max": float(s.max()),
    }


def quantile_threshold(scores: np.ndarray, q: float = 0.999) -> float:
    """The ``q`` quantile of ``scores`` (N,)."""
    if not 0.0 < q < 1.0:
        raise ThresholdError(f"quantile q must be in (0, 1), got {q}")
    return float(np.quantile(np.asarray(scores, dtype=np.float64), q))


def quantile_min_windows(q: float) -> int:
    """Validation windows needed before the ``q`` quantile is more than the largest score: ``1 / (1 - q)``."""
    return math.ceil(1.0 / (1.0 - q) - 1e-9)


def pot_max_peaks(n: int, level: float) -> int:
    """The most scores of ``n`` that can lie strictly above their ``level`` quantile (no ties)."""
    return max(0, n - 1 - math.floor(level * (n - 1) + 1e-9))


def check_calibration(n_val: int, method: str, params: dict[str, Any]) -> str | None:
    """Check before training that ``n_val`` validation windows can calibrate ``method``.

    Raises :class:`ThresholdError` where they cannot (``pot`` with fewer than 10 possible peaks);
    returns a warning (one line) where they can only poorly (``quantile`` with fewer windows than
    ``1 / (1 - q)``, where the quantile is just the largest score), else None.
    """
    if method == "pot":
        level = float(params.get("level", 0.98))
        if not 0.0 < level < 1.0:
            raise ThresholdError(f"POT level must be in (0, 1), got {level}")
        peaks = pot_max_peaks(n_val, level)
        if peaks < POT_MIN_PEAKS:
            raise ThresholdError(
                f"POT needs at least {POT_MIN_PEAKS} validation scores above its level {level} quantile; "
                f"{n_val} validation windows give at most {peaks}: use more validation data, a lower --level, "
                "or --threshold quantile"
            )
    elif method == "quantile":
        q = float(params.get("q", 0.999))
        if not 0.0 < q < 1.0:
            raise ThresholdError(f"quantile q must be in (0, 1), got {q}")
        needed = quantile_min_windows(q)
        if n_val < needed:
            return (
                f"only {n_val} validation windows: the q={q} quantile is then just the largest validation score; "
                f"{needed} windows are needed for it to mean more (use more data, a larger --val-fraction, "
                "a smaller --hop or a lower --q)"
            )
    return None


def _gpd_loglik(y: np.ndarray, gamma: float, sigma: float) -> float:
    if sigma <= 0:
        return -math.inf
    if abs(gamma) < 1e-9:
        return float(-y.size * math.log(sigma) - y.sum() / sigma)
    arg = 1.0 + gamma * y / sigma
    if np.any(arg <= 0):
        return -math.inf
    return float(-y.size * math.log(sigma) - (1.0 + 1.0 / gamma) * np.log(arg).sum())


def fit_gpd(excesses: np.ndarray) -> tuple[float, float]:
    """Maximum-likelihood GPD fit of positive ``excesses`` (N,): returns ``(gamma, sigma)``.

    Grimshaw's reduction: for ``theta = gamma / sigma`` the likelihood is maximised at
    ``gamma = mean(log(1 + theta * y))``, so a 1-D search over ``theta`` suffices
    (a log-spaced grid on both signs, then golden-section refinement).
    """
    y = np.asarray(excesses, dtype=np.float64)
    y = y[y > 0]
    if y.size < 3:
        raise ThresholdError(f"need at least 3 positive excesses to fit a GPD, got {y.size}")
    ymax, ymean = float(y.max()), float(y.mean())

    def profile(theta: float) -> float:
        if abs(theta) < 1e-12:
            return _gpd_loglik(y, 0.0, ymean)
        g = float(np.mean(np.log1p(theta * y)))
        return _gpd_loglik(y, g, g / theta)

    lo_neg = -1.0 / ymax * (1 - 1e-6)
    grid = np.concatenate(
        [
            lo_neg * np.logspace(0, -6, 60),
            [0.0],
            (1.0 / ymean) * np.logspace(-6, 3, 90),
        ]
    )
    vals = np.array([profile(t) for t in grid])
    i = int(np.nanargmax(np.where(np.isfinite(vals), vals, -np.inf)))
    a = grid[max(i - 1, 0)]
    b = grid[min(i + 1, grid.size - 1)]
    phi = (math.sqrt(5) - 1) / 2
    c, d = b - phi * (b - a), a + phi * (b - a)
    fc, fd = profile(c), profile(d)
    for _ in range(80):
        if fc > fd:
            b, d, fd = d, c, fc
            c = b - phi * (b - a)
            fc = profile(c)
        else:
            a, c, fc = c, d, fd
            d = a + phi * (b - a)
            fd = profile(d)
    theta = (a + b) / 2
    if profile(theta) < vals[i]:
        theta = grid[i]
    if abs(theta) < 1e-12:
        return 0.0, ymean
    gamma = float(np.mean(np.log1p(theta * y)))
    return gamma, gamma / theta


def pot_threshold(
    scores: np.ndarray, risk: float = 1e-3, level: float = 0.98
) -> tuple[float, dict[str, Any]]:
    """SPOT initial threshold for ``scores`` (N,): returns ``(threshold, fitted parameters)``."""
    if not 0.0 < risk < 1.0:
        raise ThresholdError(f"POT risk must be in (0, 1), got {risk}")
    if not 0.0 < level < 1.0:
        raise ThresholdError(f"POT level must be in (0, 1), got {level}")
    s = np.asarray(scores, dtype=np.float64)
    t = float(np.quantile(s, level))
    peaks = s[s > t] - t
    if peaks.size < POT_MIN_PEAKS:
        raise ThresholdError(
            f"POT needs at least {POT_MIN_PEAKS} validation scores above its level {level} quantile, got {peaks.size} "
            f"of {s.size}: use more validation data, a lower level, or the quantile method"
        )
    gamma, sigma = fit_gpd(peaks)
    r = risk * s.size / peaks.size
    z = t - sigma * math.log(r) if abs(gamma) < 1e-09 else t + sigma / gamma * (r ** (-gamma) - 1.0)
    params = {
        "risk": risk,
        "level": level,
        "t": t,
        "gamma": gamma,
        "sigma": sigma,
        "n_peaks": int(peaks.size),
    }
    return float(z), params


def lognormal_threshold(scores: np.ndarray, budget: float = 1e-3) -> tuple[float, dict[str, Any]]:
    """The score exceeded by a fraction ``budget`` of normal windows, from ``scores`` (N,) > 0: the edge's
    fit (edge_runtime/pipeline/calibration.py, shared with the on-site warm-up)."""
    try:
        return _edge_lognormal(scores, budget)
    except CalibrationError as exc:
        raise ThresholdError(str(exc)) from None


def expected_exceedance(threshold: Threshold) -> float | None:
    """The fraction of normal windows above ``threshold`` that its ``lognormal`` fit predicts (None otherwise)."""
    p = threshold.params
    if threshold.method != "lognormal" or "log_mean" not in p:
        return None
    return 1.0 - NormalDist(p["log_mean"], p["log_std"]).cdf(math.log(threshold.value))


def calibrate(scores: np.ndarray, method: str = "quantile", scale: float = 1.0, **params: Any) -> Threshold:
    """Calibrate a :class:`Threshold` on validation scores (N,) of normal windows.

    ``quantile`` takes ``q`` (default 0.999); ``pot`` takes ``risk`` (1e-3) and ``level`` (0.98);
    ``lognormal`` takes ``budget`` (1e-3: the fraction of normal windows allowed above it, before ``scale``).
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        raise ThresholdError("no validation scores to calibrate on")
    if not np.all(np.isfinite(s)):
        raise ThresholdError("validation scores contain non-finite values")
    if not scale > 0:
        raise ThresholdError(f"threshold scale must be > 0, got {scale}")
    if method == "quantile":
        q = float(params.get("q", 0.999))
        value = quantile_threshold(s, q)
        fitted: dict[str, Any] = {"q": q}
    elif method == "pot":
        value, fitted = pot_threshold(s, float(params.get("risk", 1e-3)), float(params.get("level", 0.98)))
    elif method == "lognormal":
        value, fitted = lognormal_threshold(s, float(params.get("budget", 1e-3)))
    else:
        raise ThresholdError(f"threshold method {method!r} is not one of {', '.join(THRESHOLD_METHODS)}")
    fitted["scale"] = scale
    value *= scale
    if not (math.isfinite(value) and value > 0):
        raise ThresholdError(f"calibrated threshold {value!r} is not a finite positive number")
    return Threshold(value=float(value), method=method, params=fitted, validation=score_summary(s))
