"""Evaluation through onnxruntime (the edge path): metrics (numpy, by hand), JSON report, PNG plot.

Labelling rules
---------------
- window-wise: a window is anomalous when any of its points is labelled anomalous;
  it is flagged when its score is above the model's threshold.
- point-wise, rule ``min`` (default): a point's score is the lowest score of the windows that
  contain it, so a point is flagged only when every window covering it is above the threshold.
  Rule ``causal`` (what a streaming edge can know): the score of the latest window that ends at
  or before the point. Points without a score (no window covers them / none has ended yet) are left out.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.contract import OUTPUT_SCORE, ModelMetadata
from edge_runtime.windowing_offline import sliding_windows, window_labels, window_starts
from trainer.data import DataError, Series
from trainer.export import ort_session, read_metadata, run_onnx

log = logging.getLogger(__name__)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC-AUC via the Mann-Whitney rank statistic (ties get average ranks); None without both classes."""
    y = np.asarray(labels) != 0
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size, dtype=np.float64)
    sorted_s = s[order]
    i = 0
    while i < s.size:
        j = i
        while j + 1 < s.size and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
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
    steps = np.diff(np.r_[0.0, recall])
    return float(np.sum(steps * precision))


def binary_metrics(labels: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """Precision, recall, F1, false-alarm rate FP/(FP+TN), missed-alarm rate FN/(FN+TP), counts."""
    y = np.asarray(labels) != 0
    p = np.asarray(predicted) != 0
    tp, fp = int(np.sum(y & p)), int(np.sum(~y & p))
    fn, tn = int(np.sum(y & ~p)), int(np.sum(~y & ~p))

    def ratio(a: int, b: int) -> float | None:
        return a / b if b else None

    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    f1 = (
        (2 * precision * recall / (precision + recall))
        if precision and recall
        else (0.0 if tp == 0 and (fp or fn) else None)
    )
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "far": ratio(fp, fp + tn),
        "mar": ratio(fn, fn + tp),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


POINT_RULES = ("min", "causal")


def point_scores(n_steps: int, window: int, hop: int, scores: np.ndarray, rule: str = "min") -> np.ndarray:
    """Point scores (T,) from window scores (N,); NaN where no window applies.

    ``min``: the lowest score of the windows containing the point (flagged only when every
    window covering it is above the threshold; sharp, needs W-1 future samples).
    ``causal``: the score of the latest window that ends at or before the point (what a streaming
    edge knows at that moment).
    """
    if rule not in POINT_RULES:
        raise ValueError(f"point rule must be one of {', '.join(POINT_RULES)}, got {rule!r}")
    starts = window_starts(n_steps, window, hop)
    out = np.full(n_steps, np.nan)
    if starts.size == 0:
        return out
    if rule == "min":
        out[:] = np.inf
        for s0, sc in zip(starts, np.asarray(scores, dtype=np.float64), strict=True):
            np.minimum(out[s0 : s0 + window], sc, out=out[s0 : s0 + window])
        out[np.isinf(out)] = np.nan
        return out
    t = np.arange(n_steps)
    k = np.minimum((t - (window - 1)) // hop, starts.size - 1)  # latest window ending at or before t
    ok = k >= 0
    out[ok] = np.asarray(scores, dtype=np.float64)[k[ok]]
    return out


@dataclass
class FileScores:
    """Scores of one labelled series: ``window_scores`` (N,), ``window_labels`` (N,), ``point_scores`` (T,)."""

    series: Series
    window_scores: np.ndarray
    window_labels: np.ndarray
    point_scores: np.ndarray


def score_series(
    model_path: Path, series: list[Series], hop: int | None = None, point_rule: str = "min"
) -> tuple[ModelMetadata, list[FileScores]]:
    """Score each series' windows through onnxruntime (hop defaults to 1 for a point per step)."""
    meta = read_metadata(model_path)
    hop = hop or 1
    sess = ort_session(model_path)
    out = []
    for s in series:
        if s.channels != meta.channels:
            raise DataError(
                f"{s.name}: channels [{', '.join(s.channels)}] differ from the model's [{', '.join(meta.channels)}]"
            )
        if s.labels is None:
            raise DataError(f"{s.name}: no label column; evaluate needs labelled data (see --label-column)")
        if len(s.values) < meta.window:
            raise DataError(f"{s.name}: {len(s.values)} rows, fewer than one window of {meta.window}")
        sc = run_onnx(sess, sliding_windows(s.values, meta.window, hop))[OUTPUT_SCORE]
        out.append(
            FileScores(
                s,
                sc,
                window_labels(s.labels, meta.window, hop),
                point_scores(len(s.values), meta.window, hop, sc, point_rule),
            )
        )
    return meta, out


def evaluate(
    model_path: Path, series: list[Series], hop: int | None = None, point_rule: str = "min"
) -> dict[str, Any]:
    """Point-wise and window-wise metrics at the model's threshold, as a JSON-ready dict."""
    meta, scored = score_series(model_path, series, hop, point_rule)
    thr = meta.threshold.value
    ws = np.concatenate([f.window_scores for f in scored])
    wl = np.concatenate([f.window_labels for f in scored])
    ps = np.concatenate([f.point_scores for f in scored])
    pl = np.concatenate([f.series.labels for f in scored])
    keep = ~np.isnan(ps)
    ps, pl = ps[keep], pl[keep]

    def block(labels: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
        return {
            **binary_metrics(labels, scores > thr),
            "roc_auc": roc_auc(labels, scores),
            "pr_auc": pr_auc(labels, scores),
            "n": int(labels.size),
            "n_anomalous": int(np.sum(labels != 0)),
        }

    return {
        "model": str(model_path),
        "model_id": meta.model_id,
        "threshold": {"value": thr, "method": meta.threshold.method},
        "window": meta.window,
        "hop": hop or 1,
        "files": [f.series.name for f in scored],
        "rules": {
            "window": "anomalous if any point in the window is labelled; flagged if score > threshold",
            "point": (
                "min: lowest score of the windows containing the point"
                if point_rule == "min"
                else "causal: score of the latest window ending at or before the point"
            )
            + "; points no window covers are excluded",
        },
        "unscored_points": int((~keep).sum()),
        "window_metrics": block(wl, ws),
        "point_metrics": block(pl, ps),
    }


def _spans(mask: np.ndarray) -> list[tuple[int, int]]:
    m = np.r_[False, np.asarray(mask, bool), False]
    d = np.flatnonzero(np.diff(m.astype(np.int8)))
    return list(zip(d[::2], d[1::2], strict=True))


def plot(
    model_path: Path,
    series: list[Series],
    png: Path,
    hop: int | None = None,
    point_rule: str = "min",
    max_files: int = 4,
) -> None:
    """PNG: per file, the signals (labelled spans shaded) and the point score vs the threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meta, scored = score_series(model_path, series[:max_files], hop, point_rule)
    n = len(scored)
    fig, axes = plt.subplots(2 * n, 1, figsize=(12, 4.5 * n), sharex=False, squeeze=False)
    for k, f in enumerate(scored):
        ax_sig, ax_sc = axes[2 * k, 0], axes[2 * k + 1, 0]
        z = (f.series.values - np.array(meta.normalisation.mean)) / np.array(meta.normalisation.std)
        for c, name in enumerate(f.series.channels):
            ax_sig.plot(z[:, c], lw=0.6, label=name)
        ax_sc.plot(f.point_scores, lw=0.7, color="k", label="score")
        ax_sc.axhline(
            meta.threshold.value, color="r", ls="--", lw=1, label=f"threshold ({meta.threshold.method})"
        )
        for lo, hi in _spans(f.series.labels != 0):
            for ax in (ax_sig, ax_sc):
                ax.axvspan(lo, hi, color="orange", alpha=0.25, lw=0)
        ax_sig.set_title(
            f"{Path(f.series.name).name}: signals (normalised), labelled anomalies shaded", fontsize=9
        )
        ax_sig.legend(loc="upper right", fontsize=7, ncol=min(4, len(f.series.channels)))
        ax_sc.set_yscale("log")
        ax_sc.set_title("anomaly score vs threshold", fontsize=9)
        ax_sc.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)
    plt.close(fig)


def write_report(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
