"""The alerts ``evaluate`` lists: each raise to its clear, when and for how long, its peak, and what the daemon's
alert would have said of the raising window (its top channels, measured against expected:
:mod:`edge_runtime.pipeline.explain`, the functions the daemon's alert documents use).

Rows come from the daemon's decisions (:mod:`trainer.decisions`): an alert is a run of flagged rows; its first row
is the last sample of the window that raised it, and the row after its last is the last sample of the window that
cleared it. The raising window is filled and left out as the daemon's sensor checks leave its channels out
(:mod:`trainer.sensor_view`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edge_runtime.pipeline.alerts import severity
from edge_runtime.pipeline.documents import iso_utc
from edge_runtime.pipeline.explain import (
    channel_normals,
    describe_channels,
    fmt_duration,
    peak_departure,
    raise_summary,
    top_channels,
)
from edge_runtime.pipeline.factor_fill import fill_excluded, residual_projection
from edge_runtime.pipeline.hysteresis import AlertPolicy
from trainer.decisions import hop_starts
from trainer.metrics import segments
from trainer.sensor_view import SensorView

TOP_K = 3  # channels named per alert, as the daemon's alerts.top_k default
PRINTED = 20  # alerts ``evaluate`` prints; the report holds them all


@dataclass
class ListedAlert:
    """One alert of one file. ``cleared_row`` None: still raised at the file's end. Times are UTC, from the file's
    time column (None without one); ``duration_s`` from the times, else from the sample period. ``true``: for a
    labelled file, whether it overlaps a labelled anomaly or starts within the tolerance after one."""

    file: str
    raised_row: int
    cleared_row: int | None
    raised_at: str | None
    cleared_at: str | None
    duration_s: float | None
    peak_ratio: float
    severity: str
    summary: str
    top_channels: list[dict[str, Any]] = field(default_factory=list)
    true: bool | None = None
    after_event: bool = False  # true only by the tolerance: raised after a labelled anomaly ended, overlapping none

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def list_alerts(model: Any, name: str, values: np.ndarray, flags: np.ndarray, scores: np.ndarray,
                scored: np.ndarray | None, hop: int, restarts: Sequence[int], policy: AlertPolicy,
                view: SensorView | None = None, ts: np.ndarray | None = None, period_s: float | None = None,
                labels: np.ndarray | None = None, tolerance: int = 0, row_offset: int = 0) -> list[ListedAlert]:
    """The alerts of one file from its daemon decisions ``flags`` (T,) and hop-1 window ``scores`` (T-W+1,) as the
    daemon scores them (``scored``: the windows it scores at all); ``ts`` (T,) epoch seconds when the file has
    times. The listed rows are the file's data rows: the series' own plus ``row_offset`` (where ``--rows`` started
    it)."""
    meta = model.metadata
    w, thr = meta.window, float(meta.threshold.value)
    n_win = len(scores)
    starts = hop_starts(n_win, hop, restarts)
    if scored is not None:
        starts = starts[np.asarray(scored, dtype=bool)[starts]]
    ends = starts + w - 1
    normal = channel_normals(meta.scoring, meta.threshold.validation, meta.n_channels)
    y = None if labels is None else np.asarray(labels) != 0
    out = []
    for a, b in segments(np.asarray(flags, dtype=bool)):
        a, b = int(a), int(b)
        if a < w - 1:  # (no window has ended yet: the decisions flag no such row)
            continue
        raised = a - w + 1  # the window ending at the first flagged row raised it
        during = scores[starts[(ends >= a) & (ends < b)]]
        peak = float(during.max()) if len(during) else float(scores[raised])
        cleared = b if b < len(flags) else None
        tops, measured = _explain(model, values, raised, view, normal)
        if measured is not None:
            tops = describe_channels(tops, meta.channels, meta.units, *measured)
        sev_raise = severity(float(scores[raised]), thr, policy.critical_ratio)
        if ts is not None and len(ts) == len(flags):
            at = [iso_utc(float(ts[a])), None if cleared is None else iso_utc(float(ts[cleared]))]
            duration = None if cleared is None else float(ts[cleared] - ts[a])
        else:
            at = [None, None]
            duration = None if cleared is None or not period_s else (cleared - a) * period_s
        out.append(ListedAlert(
            file=name, raised_row=a + row_offset, cleared_row=None if cleared is None else cleared + row_offset,
            raised_at=at[0], cleared_at=at[1], duration_s=duration,
            peak_ratio=round(peak / thr, 3) if thr > 0 else 0.0, severity=severity(peak, thr, policy.critical_ratio),
            summary=raise_summary(tops, sev_raise), top_channels=tops,
            true=None if y is None else bool(y[max(0, a - tolerance) : b].any()),
            after_event=y is not None and not y[a:b].any() and bool(y[max(0, a - tolerance) : a].any())))
    return out


def _explain(model: Any, values: np.ndarray, i: int, view: SensorView | None,
             normal: np.ndarray) -> tuple[list[dict[str, Any]], tuple[np.ndarray, ...] | None]:
    """The raising window ``i``'s top channels (the daemon's excess ranking; channels its sensor checks leave out
    are filled as it fills them and not named) and (measured, expected, peak measured, peak expected) (C,) each, or
    None when the model exports no reconstruction."""
    meta = model.metadata
    raw = np.asarray(values[i : i + meta.window], dtype=np.float32)  # (W, C), the device's values
    win = raw[None].copy()
    excluded = None
    if view is not None and i < len(view.excluded) and view.excluded[i].any():
        excluded = view.excluded[i]
        mean = np.asarray(meta.normalisation.mean, dtype=np.float32)
        std = np.asarray(meta.normalisation.std, dtype=np.float32)
        fill_excluded(win, excluded, mean, std, residual_projection(meta.scoring, meta.n_channels))
    _, ce = model.run(win)
    ce = np.asarray(ce, dtype=np.float64)[0]
    if excluded is not None:
        ce = np.where(excluded, 0.0, ce)
    tops = top_channels(ce, meta.channels, TOP_K, normal)
    recon = model.reconstruct(win)
    if recon is None or recon.shape != win.shape:
        return tops, None
    curve = np.asarray(recon[0], dtype=np.float32)
    pm, pe = peak_departure(raw, curve)
    return tops, (raw.mean(axis=0, dtype=np.float64), curve.mean(axis=0, dtype=np.float64), pm, pe)


def alert_lines(alerts: Sequence[dict[str, Any]], many_files: bool, most: int = PRINTED) -> list[str]:
    """The lines ``evaluate`` prints: one per alert (at most ``most``), then how many more the report holds."""
    lines = []
    for n, a in enumerate(alerts[:most], 1):
        where = f"{a['file']} " if many_files else ""
        rows = f"rows {a['raised_row']:,}-" + ("end" if a["cleared_row"] is None else f"{a['cleared_row']:,}")
        when = f", {_span(a['raised_at'], a['cleared_at'])}" if a["raised_at"] else ""
        length = "" if a["duration_s"] is None else f", {fmt_duration(a['duration_s'])}"
        truth = "" if a["true"] is None else "  [false alarm]" if not a["true"] else (
            "  [true: raised after the labelled anomaly ended, within --tolerance; the anomaly itself counts as missed]"
            if a.get("after_event") else "  [true]")
        lines.append(f"  {n}. {where}{rows}{when}{length}: peak {a['peak_ratio']:.2g}x threshold ({a['severity']}); "
                     f"{a['summary']}{truth}")
    if len(alerts) > most:
        lines.append(f"  ... and {len(alerts) - most:,} more (the report's alert_list)")
    return lines


def _span(start: str, end: str | None) -> str:
    """``2026-11-30 09:30:06 to 09:37:34 UTC`` from two ISO times (the date once when it is the same)."""
    def short(iso: str) -> tuple[str, str]:
        day, _, clock = iso.rstrip("Z").partition("T")
        return day, clock.split(".")[0]

    d0, c0 = short(start)
    if end is None:
        return f"{d0} {c0} UTC to the end"
    d1, c1 = short(end)
    return f"{d0} {c0} to {c1 if d1 == d0 else f'{d1} {c1}'} UTC"
