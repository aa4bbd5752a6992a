"""Detection metrics, pure numpy: point-wise counts, events and alerts, threshold-free AUCs, VUS-PR.

Conventions: ``labels`` (T,) 0/1 ground truth, ``flags`` (T,) bool decisions, ``scores`` (T,) float
(higher = more anomalous); all over the scored rows only. A labelled *event* is a maximal run of
label 1; an *alert* is a maximal run of flagged points (a raise .. clear of the daemon's hysteresis).

- point-wise: precision, recall, F1 = 2PR/(P+R) = TP / (TP + (FP + FN) / 2), FAR = FP/(FP+TN),
  MAR = FN/(FN+TP); :func:`flag_all_f1` is the F1 of a detector that flags every scored point.
- event-wise (:func:`event_counts`): an event is detected when at least one of its points is
  flagged; its delay is (first flagged point inside it) - (its first point), 0 when an alert was
  already up. An alert is true when it overlaps an event extended by ``tolerance`` samples after
  its end (an alert raised up to ``tolerance`` samples after the labelled end still saw anomalous
  samples in its window when ``tolerance < W``); otherwise it is a false alarm. False alarms per
  day divide the false alerts by the time spent in normal (label 0) points.
- threshold-free: ROC-AUC (Mann-Whitney, average ranks for ties), PR-AUC (average precision over
  distinct thresholds), VUS-PR / VUS-ROC (:func:`vus`, Paparrizos et al., VLDB 2022).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

SECONDS_PER_DAY = 86400.0


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def segments(mask: np.ndarray) -> np.ndarray:
    """Maximal runs of True in ``mask`` (T,): (K, 2) int array of ``[start, end)``."""
    m = np.r_[False, np.asarray(mask, dtype=bool), False]
    d = np.flatnonzero(np.diff(m.astype(np.int8)))
    return d.reshape(-1, 2)


# --------------------------------------------------------------------------- point-wise


@dataclass(frozen=True)
class Counts:
    """Point-wise confusion counts; ``+`` pools them (rates of a pool come from summed counts)."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    @classmethod
    def of(cls, flags: np.ndarray, labels: np.ndarray) -> Counts:
        """Counts of ``flags`` (T,) bool against ``labels`` (T,) 0/1."""
        p = np.asarray(flags, dtype=bool)
        y = np.asarray(labels) != 0
        if p.shape != y.shape:
            raise ValueError(f"decisions {p.shape} and labels {y.shape} differ in shape")
        return cls(int(np.sum(p & y)), int(np.sum(p & ~y)), int(np.sum(~p & y)), int(np.sum(~p & ~y)))

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    def rates(self) -> dict[str, Any]:
        """F1, FAR, MAR, precision, recall (fractions), the flag-all F1 and the counts.

        A rate whose denominator is zero is ``None`` (e.g. FAR of a file with no normal point).
        """
        pos = self.tp + self.fn
        return {
            "f1": _ratio(self.tp, self.tp + (self.fp + self.fn) / 2),
            "far": _ratio(self.fp, self.fp + self.tn),
            "mar": _ratio(self.fn, pos),
            "precision": _ratio(self.tp, self.tp + self.fp),
            "recall": _ratio(self.tp, pos),
            "flag_all_f1": _ratio(2 * pos, self.n + pos),
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
        }


def flag_all_f1(labels: np.ndarray) -> float | None:
    """F1 of flagging every point: 2p/(1+p) with p the anomalous fraction; None without points."""
    y = np.asarray(labels) != 0
    return _ratio(2 * int(y.sum()), y.size + int(y.sum()))


# --------------------------------------------------------------------------- events and alerts


@dataclass
class EventCounts:
    """Event-wise tallies of one or more series; ``+`` pools them.

    ``delays``: samples from each detected event's start to its first flagged point;
    ``normal_points``/``normal_seconds``: time spent in label-0 points (seconds None when the
    sampling period is unknown).
    """

    events: int = 0
    detected: int = 0
    alerts: int = 0
    true_alerts: int = 0
    delays: list[int] = field(default_factory=list)
    delays_s: list[float] = field(default_factory=list)
    normal_points: int = 0
    normal_seconds: float | None = 0.0

    def __add__(self, other: EventCounts) -> EventCounts:
        secs = (
            None
            if self.normal_seconds is None or other.normal_seconds is None
            else self.normal_seconds + other.normal_seconds
        )
        return EventCounts(
            self.events + other.events,
            self.detected + other.detected,
            self.alerts + other.alerts,
            self.true_alerts + other.true_alerts,
            self.delays + other.delays,
            self.delays_s + other.delays_s,
            self.normal_points + other.normal_points,
            secs,
        )

    @property
    def false_alerts(self) -> int:
        return self.alerts - self.true_alerts

    def rates(self) -> dict[str, Any]:
        """Event recall/precision, delay median and p90 (samples, seconds), false alarms per day."""

        def q(v: list[float], p: float) -> float | None:
            return float(np.percentile(v, p)) if v else None

        days = None if self.normal_seconds is None else self.normal_seconds / SECONDS_PER_DAY
        return {
            "events": self.events,
            "detected": self.detected,
            "event_recall": _ratio(self.detected, self.events),
            "alerts": self.alerts,
            "true_alerts": self.true_alerts,
            "false_alerts": self.false_alerts,
            "event_precision": _ratio(self.true_alerts, self.alerts),
            "delay_median": q(self.delays, 50),
            "delay_p90": q(self.delays, 90),
            "delay_median_s": q(self.delays_s, 50),
            "delay_p90_s": q(self.delays_s, 90),
            "false_alarms_per_day": _ratio(self.false_alerts, days) if days else None,
            "false_alarms_per_1000_normal_points": _ratio(1000 * self.false_alerts, self.normal_points),
            "normal_hours": None if self.normal_seconds is None else self.normal_seconds / 3600,
        }


def event_counts(
    labels: np.ndarray, flags: np.ndarray, tolerance: int = 0, period_s: float | None = None
) -> EventCounts:
    """Events detected, alerts true or false, detection delays (see the module docstring).

    ``labels``, ``flags``: (T,); ``tolerance``: samples after an event's end in which an alert still
    counts as true; ``period_s``: sampling period for the seconds (None: unknown).
    """
    y = np.asarray(labels) != 0
    f = np.asarray(flags, dtype=bool)
    if y.shape != f.shape:
        raise ValueError(f"decisions {f.shape} and labels {y.shape} differ in shape")
    ev, al = segments(y), segments(f)
    delays = []
    for s, e in ev:
        hit = np.flatnonzero(f[s:e])
        if hit.size:
            delays.append(int(hit[0]))
    true = 0
    if al.size:
        reach = np.zeros(y.size + 1, dtype=np.int64)  # points an alert may overlap to be true
        for s, e in ev:
            reach[s] += 1
            reach[min(y.size, e + max(0, tolerance))] -= 1
        covered = np.cumsum(reach)[:-1] > 0
        csum = np.r_[0, np.cumsum(covered)]
        true = int(np.sum(csum[al[:, 1]] - csum[al[:, 0]] > 0))
    n_normal = int((~y).sum())
    return EventCounts(
        events=len(ev),
        detected=len(delays),
        alerts=len(al),
        true_alerts=true,
        delays=delays,
        delays_s=[d * period_s for d in delays] if period_s else [],
        normal_points=n_normal,
        normal_seconds=n_normal * period_s if period_s else None,
    )


# --------------------------------------------------------------------------- threshold-free


def _average_ranks(s: np.ndarray) -> np.ndarray:
    """1-based ranks of ``s`` (N,), ties sharing their average rank."""
    _, inv, counts = np.unique(s, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    return (upper - (counts - 1) / 2.0)[inv]


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC-AUC via the Mann-Whitney rank statistic (ties: average ranks); None without both classes."""
    y = np.asarray(labels) != 0
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def pr_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Average precision: sum over distinct thresholds of (recall step) x precision; None without positives."""
    y = np.asarray(labels) != 0
    s = np.asarray(scores, dtype=np.float64)
    n_pos = int(y.sum())
    if n_pos == 0:
        return None
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    tp = np.cumsum(y_sorted)
    fp = np.cumsum(~y_sorted)
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), s.size - 1]  # last index of each distinct score
    precision = tp[last] / (tp[last] + fp[last])
    recall = tp[last] / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def buffered_labels(labels: np.ndarray, buffer: int) -> np.ndarray:
    """Soft labels (T,) of VUS: each event widened by ``buffer // 2`` samples on both sides with weight
    ``sqrt(1 - d / buffer)`` at distance ``d`` (contributions add, capped at 1)."""
    y = (np.asarray(labels) != 0).astype(np.float64)
    out = y.copy()
    n, half = y.size, buffer // 2
    for s, e in segments(y > 0):
        last = e - 1
        x1 = np.arange(last, min(last + half, n))
        out[x1] += np.sqrt(1 - (x1 - last) / buffer)
        x2 = np.arange(max(s - half, 0), s)
        out[x2] += np.sqrt(1 - (s - x2) / buffer)
    return np.minimum(out, 1.0)


def vus(labels: np.ndarray, scores: np.ndarray, max_buffer: int, n_thresholds: int = 250) -> dict[str, float] | None:
    """VUS-PR and VUS-ROC (Paparrizos et al., "Volume Under the Surface", VLDB 2022).

    The definition of the authors' reference code (``metricor.RangeAUC_volume``): for each buffer
    ``l = 0 .. max_buffer``, labels are softened by :func:`buffered_labels`; at ``n_thresholds``
    thresholds (scores at evenly spaced ranks of the descending sort, ``score >= threshold``)
    range-TPR = min(1, TP / P') x (fraction of buffered events with a hit), range-FPR =
    (predicted - TP) / (T - P'), range-precision = TP / predicted, with TP the soft-label mass
    predicted and P' the mean of the original and the buffered label mass. Range-PR-AUC is the
    trapezoid of precision over TPR from (0, 1); range-ROC-AUC the trapezoid of TPR over FPR from
    (0, 0) to (1, 1). VUS is the mean over the buffers. The benchmarks use ``max_buffer = 2 W``.
    None without events or without normal points.
    """
    y = np.asarray(labels) != 0
    s = np.asarray(scores, dtype=np.float64)
    if not y.any() or y.all():
        return None  # without events, or without a normal point, range precision/FPR are undefined
    n = s.size
    desc = -np.sort(-s)
    th_idx = np.linspace(0, n - 1, n_thresholds).astype(int)
    # first position of each point's value in the descending sort: predicted at threshold k
    # (score >= desc[th_idx[k]]) iff that position <= th_idx[k]
    first = np.searchsorted(-desc, -s, side="left")
    k_of_point = np.searchsorted(th_idx, first, side="left")  # first threshold index predicting it
    n_pred = np.cumsum(np.bincount(k_of_point, minlength=n_thresholds + 1)[:n_thresholds])
    p_orig = float(y.sum())
    ap, auc = [], []
    for buf in range(max_buffer + 1):
        lab = buffered_labels(y, buf)
        tp = np.cumsum(np.bincount(k_of_point, weights=lab, minlength=n_thresholds + 1)[:n_thresholds])
        p_new = (p_orig + lab.sum()) / 2
        segs = segments(lab > 0)
        seg_first = np.sort([k_of_point[a:b].min() for a, b in segs])  # threshold index of each first hit
        exist = np.searchsorted(seg_first, np.arange(n_thresholds), side="right") / len(segs)
        tpr = np.minimum(tp / p_new, 1.0) * exist
        fpr = (n_pred - tp) / (n - p_new)
        prec = tp / n_pred
        t_full = np.r_[0.0, tpr, 1.0]
        f_full = np.r_[0.0, fpr, 1.0]
        p_full = np.r_[1.0, prec]
        auc.append(float(np.sum(np.diff(f_full) * (t_full[1:] + t_full[:-1]) / 2)))
        ap.append(float(np.sum(np.diff(t_full[:-1]) * (p_full[1:] + p_full[:-1]) / 2)))
    return {"vus_pr": float(np.mean(ap)), "vus_roc": float(np.mean(auc)), "max_buffer": max_buffer}


def threshold_free(labels: np.ndarray, scores: np.ndarray, max_buffer: int) -> dict[str, Any]:
    """ROC-AUC, PR-AUC, VUS-PR and VUS-ROC of ``scores`` (T,) against ``labels`` (T,)."""
    v = vus(labels, scores, max_buffer) or {}
    return {
        "roc_auc": roc_auc(labels, scores),
        "pr_auc": pr_auc(labels, scores),
        "vus_pr": v.get("vus_pr"),
        "vus_roc": v.get("vus_roc"),
    }
