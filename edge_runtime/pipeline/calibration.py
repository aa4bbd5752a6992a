"""Calibration on site: a device's own threshold (and input offsets) learnt from its warm-up. Pure.

A new device is scored, but raises nothing, until its warm-up (``input.warmup``: samples or a duration in
the device's own time) is complete. The warm-up has two halves:

1. **offsets** (``input.warmup_offsets``): the per-channel mean of the device's windows, minus the model's
   training mean, is learnt; from then on it is subtracted from the device's samples before scoring (a
   machine that runs at another operating point than the training one is scored around its own level);
2. **threshold**: the device's scores (offsets applied) are fitted like ``fit`` calibrates a model
   (:func:`lognormal_threshold`, the model's false-alarm budget and scale).

Guards, so a warm-up over a fault or a stopped machine is never learnt as normal:

- a *stopped* window (every channel's spread in the window below ``stopped_std`` training standard
  deviations) is not learnt; the warm-up waits for running data;
- a *trend* (the last third's median score more than ``trend_ratio`` x the first third's) means the
  warm-up saw something grow: it is extended (its older half forgotten), up to ``max_extend`` times;
- a threshold beyond ``max_factor`` x the model's means the data looks anomalous against the model: the
  warm-up is extended likewise; after ``max_extend`` extensions it is *refused* (the model's threshold is
  used, the state document says why) and never learnt;
- the learnt threshold is never below ``min_factor`` x the model's.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

OFF, OFFSETS, THRESHOLD, CALIBRATED, REFUSED = "off", "offsets", "threshold", "calibrated", "refused"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class CalibrationError(ValueError):
    """A warm-up setting or a set of scores that cannot be calibrated."""


def lognormal_threshold(scores: npt.ArrayLike, budget: float = 1e-3) -> tuple[float, dict[str, Any]]:
    """The score exceeded by a fraction ``budget`` of normal windows, from ``scores`` (N,) > 0: a normal fit
    of ``log(score)`` (a tail fit that works with a few dozen windows); with at least ``10 / budget`` windows
    the empirical quantile instead. Shared by ``edgewatch-train fit`` (trainer/threshold.py) and the warm-up."""
    if not 0.0 < budget < 1.0:
        raise CalibrationError(f"false-alarm budget must be in (0, 1) per window, got {budget}")
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        raise CalibrationError("no scores to calibrate on")
    if np.any(s <= 0) or not np.all(np.isfinite(s)):
        raise CalibrationError("the lognormal tail needs positive, finite scores")
    logs = np.log(s)
    mu, sigma = float(logs.mean()), float(max(logs.std(), 1e-6))
    if s.size >= 10 / budget:
        value, tail = float(np.quantile(s, 1.0 - budget)), "empirical"
    else:
        value, tail = math.exp(mu + NormalDist().inv_cdf(1.0 - budget) * sigma), "lognormal"
    return value, {"budget": budget, "tail": tail, "log_mean": mu, "log_std": sigma}


@dataclass(frozen=True)
class WarmupSpec:
    """``input.warmup`` parsed: ``samples`` > 0 or ``seconds`` > 0 (device time), or neither (off)."""

    samples: int = 0
    seconds: float = 0.0

    @property
    def on(self) -> bool:
        return self.samples > 0 or self.seconds > 0


def parse_warmup(text: str) -> WarmupSpec:
    """``""`` (off), ``"2000"`` (samples) or ``"90s"`` / ``"30m"`` / ``"2h"`` / ``"1d"`` (a duration)."""
    t = text.strip().lower()
    if not t or t == "0":
        return WarmupSpec()
    if t.isdigit():
        return WarmupSpec(samples=int(t))
    m = _DURATION.match(t)
    if m is None:
        raise CalibrationError(f"{text!r} is not a number of samples (2000) or a duration (90s, 30m, 2h, 1d)")
    seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    if seconds <= 0:
        raise CalibrationError(f"{text!r}: the duration must be > 0")
    return WarmupSpec(seconds=seconds)


@dataclass(frozen=True)
class WarmupPolicy:
    """How warm-ups are run; ``budget``/``scale`` are the model's (its threshold's fit)."""

    spec: WarmupSpec
    hop: int
    window: int
    budget: float = 1e-3
    scale: float = 1.0
    offsets: bool = False
    min_windows: int = 30
    max_factor: float = 10.0
    min_factor: float = 0.5
    trend_ratio: float = 2.0
    stopped_std: float = 0.01
    max_extend: int = 3

    def windows_needed(self) -> int:
        """Windows per half of a warm-up given in samples (at least ``min_windows``)."""
        if self.spec.samples <= 0:
            return self.min_windows
        n = max(1, (self.spec.samples - self.window) // max(1, self.hop) + 1)
        return max(self.min_windows, n // 2 if self.offsets else n)


@dataclass
class Calibration:
    """One device's calibration: where its warm-up stands and what it learnt."""

    phase: str = OFFSETS
    threshold: float | None = None  # learnt threshold (phase calibrated)
    offsets: list[float] | None = None  # (C,) raw units, subtracted from the device's samples
    reason: str = ""  # why a warm-up was extended or refused
    windows: int = 0  # windows learnt from (the threshold half)
    extensions: int = 0
    stopped: int = 0  # stopped windows skipped
    params: dict[str, Any] = field(default_factory=dict)
    # working state of the current half (not persisted)
    _scores: list[F64] = field(default_factory=list, repr=False)
    _means: list[F64] = field(default_factory=list, repr=False)
    _t0: float | None = field(default=None, repr=False)

    @property
    def done(self) -> bool:
        return self.phase in (CALIBRATED, REFUSED, OFF)

    def to_doc(self) -> dict[str, Any]:
        """JSON-ready, for the state file and the state document."""
        doc: dict[str, Any] = {"phase": self.phase, "threshold": self.threshold, "windows": self.windows,
                               "extensions": self.extensions, "stopped_windows": self.stopped}
        if self.offsets is not None:
            doc["offsets"] = self.offsets
        if self.reason:
            doc["reason"] = self.reason
        return doc

    @classmethod
    def from_doc(cls, doc: Any, n_channels: int) -> Calibration | None:
        """A finished calibration read back from the state file; None when ``doc`` is not one."""
        if not isinstance(doc, dict) or doc.get("phase") not in (CALIBRATED, REFUSED):
            return None
        thr, offsets = doc.get("threshold"), doc.get("offsets")
        if doc["phase"] == CALIBRATED and not (isinstance(thr, (int, float)) and math.isfinite(thr) and thr > 0):
            return None
        if offsets is not None and not (isinstance(offsets, list) and len(offsets) == n_channels
                                        and all(isinstance(v, (int, float)) and math.isfinite(v) for v in offsets)):
            return None
        windows = doc.get("windows", 0)
        learnt = float(thr) if doc["phase"] == CALIBRATED and isinstance(thr, (int, float)) else None
        return cls(phase=doc["phase"], threshold=learnt,
                   offsets=[float(v) for v in offsets] if offsets is not None else None,
                   reason=str(doc.get("reason", ""))[:200], windows=windows if isinstance(windows, int) else 0)


def new_calibration(policy: WarmupPolicy) -> Calibration:
    """A device's calibration at its first window."""
    if not policy.spec.on:
        return Calibration(phase=OFF)
    return Calibration(phase=OFFSETS if policy.offsets else THRESHOLD)


def running_mask(windows: npt.NDArray[np.float32], train_std: F64, stopped_std: float) -> npt.NDArray[np.bool_]:
    """Windows (k, W, C) in which at least one channel moves (spread >= ``stopped_std`` training std): (k,)."""
    spread = windows.std(axis=1) / train_std  # (k, C)
    return np.asarray((spread >= stopped_std).any(axis=1))


def observe(cal: Calibration, policy: WarmupPolicy, scores: F64, t_end: F64, running: npt.NDArray[np.bool_],
            means: F64, model_threshold: float, train_mean: F64) -> bool:
    """Feed one device's scored windows (``scores``/``t_end`` (k,), ``running`` (k,), ``means`` (k, C): each
    window's mean in raw units) to its warm-up; True when ``cal`` changed phase (finished or started its
    second half, so the state is published)."""
    if cal.done:
        return False
    keep = running
    cal.stopped += int((~keep).sum())
    if not keep.any():
        return False
    if cal._t0 is None:
        cal._t0 = float(t_end[keep][0])
    cal._scores.append(np.asarray(scores[keep], np.float64))
    cal._means.append(np.asarray(means[keep], np.float64))
    n = sum(a.shape[0] for a in cal._scores)
    if policy.spec.seconds > 0:
        half = policy.spec.seconds / 2 if policy.offsets else policy.spec.seconds
        if float(t_end[keep][-1]) - cal._t0 < half or n < policy.min_windows:
            return False
    elif n < policy.windows_needed():
        return False
    s = np.concatenate(cal._scores)
    if cal.phase == OFFSETS:
        cal.offsets = (np.concatenate(cal._means).mean(axis=0) - train_mean).round(6).tolist()
        cal.phase = THRESHOLD
        _restart(cal)
        return True
    why = _suspect(s, policy, model_threshold)
    if why:
        if cal.extensions >= policy.max_extend:
            cal.phase, cal.reason, cal.threshold = REFUSED, why, None
            _restart(cal)
            return True
        cal.extensions += 1
        cal.reason = f"extended: {why}"
        kept = s[s.shape[0] // 2:]  # forget the older half, learn on
        cal._scores, cal._means, cal._t0 = [kept], [], None
        return False
    value, params = lognormal_threshold(s, policy.budget)
    cal.threshold = max(value * policy.scale, policy.min_factor * model_threshold)
    cal.params, cal.windows, cal.phase, cal.reason = params, int(s.shape[0]), CALIBRATED, ""
    _restart(cal)
    return True


def _restart(cal: Calibration) -> None:
    cal._scores, cal._means, cal._t0 = [], [], None


def _suspect(s: F64, policy: WarmupPolicy, model_threshold: float) -> str:
    """Why the warm-up scores ``s`` (N,) must not be learnt ('' when they may)."""
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        return "non-finite or zero scores"
    third = max(1, s.shape[0] // 3)
    first, last = float(np.median(s[:third])), float(np.median(s[-third:]))
    if last > policy.trend_ratio * first:
        return f"scores grew during the warm-up (median {first:.4g} -> {last:.4g})"
    value, _ = lognormal_threshold(s, policy.budget)
    if value * policy.scale > policy.max_factor * model_threshold:
        return (f"looks anomalous against the model: it would set the threshold to "
                f"{value * policy.scale / model_threshold:.3g} x the model's (max {policy.max_factor:g} x)")
    return ""
