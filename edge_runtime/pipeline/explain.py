"""What an alert tells a person: which channels, by how much, measured against expected, in which direction. Pure.

``channel_error`` (the model's output, see :mod:`edge_runtime.contract`) is each channel's departure relative to
its own normal. A channel's **normal** is the ``channel_error`` it has on normal windows: the model's
``scoring.channel_error_ref`` (its mean over the held-out normal windows, written by ``edgewatch-train fit``),
else, for older models, the validation mean score spread over the kept channels by their weight (``score`` is
the mean of ``channel_error``, so that is what each channel adds on a normal window). A channel's **excess** is
``max(channel_error - normal, 0)``; its ``excess_share`` is its part of the window's total excess, so a channel
that is noisy in normal windows too no longer outranks the one that departed.

The measured and expected values are window means in raw units: the window's samples and the model's
``reconstruction`` of them. Direction is ``high`` when the measured mean is above the expected one, else ``low``.
``peak_measured`` / ``peak_expected``: the same at the window's sample where the channel departs most from its
expected curve; the summary quotes them when a window mean would understate the departure (a step in the
window's last samples, a short spike): at least :data:`PEAK_RATIO` times the mean's departure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
ALSO_SHARE = 0.1  # a summary names further channels that carry at least this part of the excess
PEAK_RATIO = 2.0  # the summary quotes the peak sample when it departs this many times more than the window mean


def channel_normals(scoring: Mapping[str, Any], validation: Mapping[str, Any], n_channels: int) -> FloatArray:
    """Each channel's normal ``channel_error`` (C,) from a model's ``scoring`` and ``threshold.validation``."""
    ref = scoring.get("channel_error_ref")
    if isinstance(ref, list) and len(ref) == n_channels:
        out = np.asarray(ref, dtype=np.float64)
        if np.isfinite(out).all():
            return np.clip(out, 0.0, None)
    mean = validation.get("mean")
    base = float(mean) if isinstance(mean, (int, float)) and math.isfinite(mean) and mean > 0 else 1.0
    weight = scoring.get("weight")
    if isinstance(weight, list) and len(weight) == n_channels:
        w = np.clip(np.asarray(weight, dtype=np.float64), 0.0, None)
        if np.isfinite(w).all() and w.sum() > 0:
            spread: FloatArray = base * w * (n_channels / float(w.sum()))
            return spread
    return np.full(n_channels, base)


def excess(channel_error: npt.ArrayLike, normal: npt.ArrayLike | None) -> FloatArray:
    """``max(channel_error - normal, 0)``: (C,) or (k, C); ``normal`` None is all zeros."""
    ce = np.clip(np.asarray(channel_error, dtype=np.float64), 0.0, None)
    if normal is None:
        return ce
    return np.clip(ce - np.asarray(normal, dtype=np.float64), 0.0, None)


def top_channels(channel_error: npt.ArrayLike, names: Sequence[str], k: int,
                 normal: npt.ArrayLike | None = None) -> list[dict[str, Any]]:
    """The ``k`` channels with the largest excess error of one window, largest first. ``channel_error``: (C,).

    Each entry: ``name``, ``share`` (``channel_error / sum(channel_error)``, as in schema 1) and, with ``normal``,
    ``excess_share`` (the channel's part of the window's excess; 0 when no channel exceeds its normal). A channel
    with no part of the error (both shares 0 as published: a screened or excluded channel, one the model expects
    exactly) is not named: listed, ``share 0.0`` reads "not to blame" beside the channels that are; so fewer
    than ``k`` may come back."""
    ce = np.clip(np.asarray(channel_error, dtype=np.float64), 0.0, None)
    total = float(ce.sum())
    ex = excess(ce, normal)
    ex_total = float(ex.sum())
    order = np.lexsort((-ce, -ex))[:k]  # by excess, ties (no excess at all) by the raw error
    out: list[dict[str, Any]] = []
    for i in order:
        entry: dict[str, Any] = {"name": str(names[i]), "share": round(float(ce[i] / total), 4) if total > 0 else 0.0}
        if normal is not None:
            entry["excess_share"] = round(float(ex[i] / ex_total), 4) if ex_total > 0 else 0.0
        if entry["share"] == 0 and not entry.get("excess_share"):
            continue  # (not break: one with a rounded-off excess may rank before one with a large raw share)
        out.append(entry)
    return out


def out_of_range(window: npt.ArrayLike, lo: npt.ArrayLike, hi: npt.ArrayLike, names: Sequence[str],
                 units: Mapping[str, str]) -> list[dict[str, Any]]:
    """The channels of one window (W, C, raw units) outside the range they are checked against, ``lo``..``hi``
    (C,) each (the range seen in training with its margin: :class:`~edge_runtime.pipeline.health.HealthLimits`),
    furthest out first (by the distance past the limit over the width of the range; over the limit's magnitude
    for a channel limited on one side only, ``health.channel_limits`` with only ``min`` or ``max``): ``name``, ``direction``
    (``high`` above the range, ``low`` below), ``value`` (the window's sample furthest out), ``limit`` (the bound
    it crossed), ``beyond`` (how far past it, raw units) and ``unit`` where the model knows it. Whether or not the
    model sees an error there: a channel the model reconstructs where it lies, far out, is still far out."""
    w = np.asarray(window, dtype=np.float64)
    low, high = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        top, bottom = np.nanmax(w, axis=0), np.nanmin(w, axis=0)  # (C,) each
        above, below = top - high, low - bottom  # > 0: above (below) the range by this much
    span = high - low
    one_side = np.abs(np.where(np.isfinite(high), high, low))  # the one finite limit's magnitude
    width = np.where(np.isfinite(span) & (span > 0), span, one_side)
    width = np.where(np.isfinite(width) & (width > 0), width, 1.0)
    found = []
    for j in np.flatnonzero((above > 0) | (below > 0)).tolist():
        up = bool(above[j] >= below[j])
        past = float(above[j] if up else below[j])
        limit = float(high[j] if up else low[j])
        entry: dict[str, Any] = {"name": str(names[j]), "direction": "high" if up else "low",
                                 "value": _round(float(top[j] if up else bottom[j])), "limit": _round(limit),
                                 "beyond": _round(past)}
        unit = units.get(str(names[j]))
        if unit:
            entry["unit"] = unit
        found.append((past / float(width[j]), entry))
    found.sort(key=lambda fe: -fe[0])
    return [e for _, e in found]


def range_summary(outside: list[dict[str, Any]], most: int = 3) -> str:
    """``outside the range seen in training: Temperature 9 (max 2), Pressure -3 (min 0)``: :func:`out_of_range`'s
    first ``most`` channels for the alert's summary ("" when none)."""
    if not outside:
        return ""
    parts = [f"{o['name']} {fmt_value(o['value'])}{' ' + o['unit'] if o.get('unit') else ''} "
             f"({'max' if o['direction'] == 'high' else 'min'} {fmt_value(o['limit'])})" for o in outside[:most]]
    more = f" and {len(outside) - most} more" if len(outside) > most else ""
    return f"outside the range seen in training: {', '.join(parts)}{more}"


def describe_channels(tops: list[dict[str, Any]], names: Sequence[str], units: Mapping[str, str],
                      measured: npt.ArrayLike, expected: npt.ArrayLike, peak_measured: npt.ArrayLike | None = None,
                      peak_expected: npt.ArrayLike | None = None) -> list[dict[str, Any]]:
    """``tops`` with ``measured``, ``expected`` (window means, raw units: (C,) each), ``direction``, with the
    peaks ``peak_measured`` / ``peak_expected`` (the sample that departs most, (C,) each) and the channel's
    ``unit`` where the model knows it. Non-finite values are left out."""
    index = {str(n): i for i, n in enumerate(names)}
    m = np.asarray(measured, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    pm = None if peak_measured is None else np.asarray(peak_measured, dtype=np.float64)
    pe = None if peak_expected is None else np.asarray(peak_expected, dtype=np.float64)
    out = []
    for t in tops:
        t = dict(t)
        i = index[t["name"]]
        if math.isfinite(m[i]) and math.isfinite(e[i]):
            t["measured"] = _round(m[i])
            t["expected"] = _round(e[i])
            t["direction"] = "high" if m[i] > e[i] else "low"
            if pm is not None and pe is not None and math.isfinite(pm[i]) and math.isfinite(pe[i]):
                t["peak_measured"] = _round(pm[i])
                t["peak_expected"] = _round(pe[i])
        unit = units.get(t["name"])
        if unit:
            t["unit"] = unit
        out.append(t)
    return out


def peak_departure(measured: npt.ArrayLike, curve: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Each channel's sample of one window (W, C) that departs most from the expected ``curve`` (W, C):
    (measured, expected) at that sample, (C,) each."""
    m = np.asarray(measured, dtype=np.float64)
    e = np.asarray(curve, dtype=np.float64)
    j = np.argmax(np.abs(m - e), axis=0)[None]  # (1, C): the sample per channel
    return np.take_along_axis(m, j, 0)[0], np.take_along_axis(e, j, 0)[0]


def _round(v: float) -> float:
    """Six significant digits: enough for a person, no float noise in the payload."""
    return float(f"{v:.6g}")


def fmt_value(v: float) -> str:
    """A value for a person: 3 significant digits (``3.1``, ``4.62``, ``1740``, ``12300``), no exponent from 1,000 to
    a billion (a speed of 1740 rpm read ``1.74e+03``); an exponent only for the very large and the very small."""
    if math.isfinite(v) and 1e3 <= abs(v) < 1e9:
        return f"{float(f'{v:.3g}'):.0f}"
    return f"{v:.3g}"


def raise_summary(tops: list[dict[str, Any]], severity: str) -> str:
    """``discharge_p_bar low: mean 3.1 bar, expected 4.6``: the first top channel, its window mean against the
    expected one (its excess share when the values are missing), then the other top channels with at least 10 % of
    the excess; ``critical:`` in front of a critical alert. When the channel's peak sample departs at least
    :data:`PEAK_RATIO` times more than its window mean: ``discharge_p_bar low: 3.2 bar, expected 4.7 (window mean
    4.62)``, the peak's direction."""
    if not tops:
        return f"{severity}: anomalous"
    t = tops[0]
    unit = f" {t['unit']}" if t.get("unit") else ""
    if "measured" in t and _quote_peak(t):
        pm, pe = float(t["peak_measured"]), float(t["peak_expected"])
        text = (f"{t['name']} {'high' if pm > pe else 'low'}: {fmt_value(pm)}{unit}, expected {fmt_value(pe)} "
                f"(window mean {fmt_value(t['measured'])})")
    elif "measured" in t:
        text = (f"{t['name']} {t['direction']}: mean {fmt_value(t['measured'])}{unit}, "  # the window's mean
                f"expected {fmt_value(t['expected'])}")
    else:
        share = t.get("excess_share", t.get("share", 0.0))
        text = f"{t['name']}: {100 * float(share):.0f}% of the excess error"
    also = [str(x["name"]) for x in tops[1:] if x.get("excess_share", 1.0) >= ALSO_SHARE]
    if also:
        text += f" (also {', '.join(also)})"
    return f"critical: {text}" if severity == "critical" else text


def _quote_peak(t: Mapping[str, Any]) -> bool:
    """The peak sample departs at least :data:`PEAK_RATIO` times more than the window mean."""
    if "peak_measured" not in t or "peak_expected" not in t:
        return False
    peak = abs(float(t["peak_measured"]) - float(t["peak_expected"]))
    return peak > 0 and peak >= PEAK_RATIO * abs(float(t["measured"]) - float(t["expected"]))


def fmt_duration(seconds: float) -> str:
    """``4m 12s``, ``2h 05m``, ``38s``, ``3d 4h``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def clear_summary(duration_s: float, peak_score: float, threshold: float, reason: str = "") -> str:
    """``back to normal after 4m 12s (peak 2.3x threshold)``; with ``reason``: why the daemon let it go."""
    why = f"no longer tracked ({reason})" if reason else "back to normal"
    ratio = peak_score / threshold if threshold > 0 else 0.0
    peak = f"{ratio:.2g}" if ratio < 10 else f"{ratio:.0f}"  # 2.3x, 12x, 100x (not 1e+02x)
    return f"{why} after {fmt_duration(duration_s)} (peak {peak}x threshold)"
