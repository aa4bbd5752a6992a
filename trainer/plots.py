"""The evaluation plot: per file, the top channels each in its own panel over time, then the score.

Time on the x axis (the file's timestamps, UTC; the sample index where a file has none), labelled
anomalies shaded orange, the spans the daemon's rule keeps a device raised shaded red, each raise and
clear marked on the score panel. With many channels only the :data:`MAX_CHANNEL_PANELS` that depart most
from normal where it matters (raised or labelled points; everywhere when there are none) get a panel;
the title names how many are left out. Long files are drawn as a min/max envelope (spikes survive).

:func:`tracks` does the arithmetic (pure numpy); :func:`draw` only draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.pipeline.hysteresis import AlertPolicy
from trainer.data import Series
from trainer.decisions import causal_point_scores, daemon_decisions
from trainer.evaluate import daemon_scores, open_model, state_rows, window_restarts
from trainer.metrics import segments

MAX_CHANNEL_PANELS = 6
MAX_POINTS = 4000  # per line: min/max envelope beyond this


@dataclass
class Track:
    """One file, ready to draw. ``x``: (T,) epoch s or sample index (``timed``); ``z``: (T, k) normalised
    values of the ``channels`` shown; ``score``: (T,) the causal point score (NaN before the first window);
    ``labels`` / ``raised``: (T,) bool or None; ``raises`` / ``clears``: sample indices."""

    name: str
    x: np.ndarray
    timed: bool
    z: np.ndarray
    channels: list[str]
    hidden: int
    score: np.ndarray
    threshold: float
    labels: np.ndarray | None
    raised: np.ndarray
    raises: np.ndarray
    clears: np.ndarray


def top_channels(z: np.ndarray, focus: np.ndarray | None, k: int = MAX_CHANNEL_PANELS) -> list[int]:
    """The ``k`` channels of ``z`` (T, C) furthest from their median at the ``focus`` (T,) points (all
    points when there are none), largest first; ties keep the file's order."""
    dev = np.abs(z - np.median(z, axis=0))
    rows = dev[focus] if focus is not None and focus.any() else dev
    strength = rows.max(axis=0)
    return [int(i) for i in np.argsort(-strength, kind="stable")[:k]]


def track(s: Series, score: np.ndarray, mean: np.ndarray, std: np.ndarray, threshold: float, raised: np.ndarray,
          raises: np.ndarray, k: int = MAX_CHANNEL_PANELS) -> Track:
    """A :class:`Track` of series ``s`` with its point ``score`` (T,) and the daemon's ``raised`` (T,) flags."""
    z = (s.values - mean) / std
    labels = None if s.labels is None else s.labels != 0
    focus = raised if labels is None else (raised | labels)
    idx = top_channels(z, focus, k)
    timed = s.ts is not None and len(s.ts) == len(s.values)
    x = np.asarray(s.ts, dtype=np.float64) if timed else np.arange(len(s.values), dtype=np.float64)
    clears = np.array([e for _, e in segments(raised) if e < len(raised)], dtype=np.int64)
    return Track(Path(s.name).name, x, timed, z[:, idx], [s.channels[i] for i in idx], z.shape[1] - len(idx),
                 score, threshold, labels, raised, np.asarray(raises, dtype=np.int64), clears)


def envelope(x: np.ndarray, y: np.ndarray, n: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` thinned to about ``n`` points: each bucket's min and max kept (in time order)."""
    if len(y) <= n:
        return x, y
    b = -(-len(y) // (n // 2))
    m = len(y) // b * b
    yb, xb = y[:m].reshape(-1, b), x[:m].reshape(-1, b)
    lo, hi = np.nanargmin(np.nan_to_num(yb, nan=np.inf), axis=1), np.nanargmax(np.nan_to_num(yb, nan=-np.inf), axis=1)
    first, second = np.minimum(lo, hi), np.maximum(lo, hi)
    r = np.arange(len(yb))
    xs = np.stack([xb[r, first], xb[r, second]], axis=1).ravel()
    ys = np.stack([yb[r, first], yb[r, second]], axis=1).ravel()
    return np.r_[xs, x[m:]], np.r_[ys, y[m:]]


def _axis_x(t: Track, v: np.ndarray) -> np.ndarray:
    return (v * 1e3).astype("datetime64[ms]") if t.timed else v


def draw(tracks: Sequence[Track], png: Path) -> None:
    """Write the PNG: per track one panel per shown channel and a score panel (log scale), x shared."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    heights = [r for t in tracks for r in [1.0] * len(t.channels) + [1.8]]
    fig, axes = plt.subplots(len(heights), 1, figsize=(12, 0.2 + 1.05 * sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    row = 0
    for t in tracks:
        panels = [axes[row + i, 0] for i in range(len(t.channels) + 1)]
        for ax in panels[1:]:
            ax.sharex(panels[0])
        row += len(panels)
        x = _axis_x(t, t.x)
        for ax in panels:
            for lo, hi in ([] if t.labels is None else segments(t.labels)):
                ax.axvspan(x[lo], x[min(hi, len(x) - 1)], color="orange", alpha=0.3, lw=0)
            for lo, hi in segments(t.raised):
                ax.axvspan(x[lo], x[min(hi, len(x) - 1)], color="tab:red", alpha=0.12, lw=0)
        for j, (ax, name) in enumerate(zip(panels[:-1], t.channels, strict=True)):
            ex, ey = envelope(t.x, t.z[:, j])
            ax.plot(_axis_x(t, ex), ey, lw=0.6, color="tab:blue")
            ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
            ax.tick_params(labelsize=7, labelbottom=False)
        ax = panels[-1]
        ok = np.isfinite(t.score)
        ex, ey = envelope(t.x[ok], t.score[ok])
        ax.plot(_axis_x(t, ex), ey, lw=0.7, color="k", label="score")
        ax.axhline(t.threshold, color="r", ls="--", lw=1, label="threshold")
        for idx, mark, colour, what in ((t.raises, "^", "tab:red", "raised"), (t.clears, "v", "tab:green", "cleared")):
            idx = idx[(idx >= 0) & (idx < len(t.x))]
            if len(idx):
                ax.plot(x[idx], np.full(len(idx), t.threshold), mark, color=colour, ms=7, ls="none", label=what)
        ax.set_yscale("log")
        ax.set_ylabel("score", rotation=0, ha="right", va="center", fontsize=8)
        ax.set_xlabel("time (UTC)" if t.timed else "sample", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(loc="upper right", fontsize=7, ncol=4)
        shown = (f"{len(t.channels)} of {len(t.channels) + t.hidden} channels, those furthest from normal where "
                 "raised or labelled" if t.hidden else "every channel")
        panels[0].set_title(f"{t.name}: {shown} (normalised)\norange: labelled anomaly; red: device raised "
                            "(the daemon's rule); markers: its raises and clears", fontsize=9, loc="left")
        if t.timed:
            loc = mdates.AutoDateLocator()
            ax.xaxis.set_major_locator(loc)
            ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))
    fig.tight_layout(h_pad=0.3)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)
    plt.close(fig)


def plot_evaluation(model_path: Path, series: Sequence[Series], png: Path, rep: dict[str, Any],
                    max_files: int = 4) -> None:
    """``evaluate``'s PNG for up to ``max_files`` files, decided as the report was (``rep['policy']``, hop)."""
    model = open_model(model_path)
    meta = model.metadata
    policy = AlertPolicy(**rep["policy"])
    mean, std = np.array(meta.normalisation.mean), np.array(meta.normalisation.std)
    out = []
    for s in list(series)[:max_files]:
        st = state_rows(meta, s)  # decided as the report: operating states and the daemon's sensor checks
        running = None if st is None else st[0] == 0
        sc, scored = daemon_scores(model, s.values, running, gaps=s.gaps)
        dec = daemon_decisions(sc, meta.threshold.value, len(s.values), meta.window, rep["decision_hop"], policy,
                               scored, window_restarts(s.gaps, running))
        out.append(track(s, causal_point_scores(sc, len(s.values), meta.window), mean, std, meta.threshold.value,
                         np.asarray(dec.flags, dtype=bool), dec.raises))
    draw(out, png)
