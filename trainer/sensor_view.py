"""The daemon's sensor checks applied offline: what each window leaves out, and which windows are not scored.

The daemon (``health.sensor_checks = true``, its default) checks every channel of every sample
(:class:`edge_runtime.pipeline.health.ChannelHealth`, the model's learned limits) before windowing. A window is
then scored without the channels that were missing or stuck within its span (with ``health.range_excludes`` also
those out of range within it, or outside their range right now, for fewer than ``range_hold`` samples so far;
off by default: an out-of-range value is a real reading and stays in the score): those channels are filled (the training mean,
or the cross-channel factors' estimate) and the score renormalised over the healthy ones
(:func:`edge_runtime.pipeline.health.renormalised_score`). A device is not scored at all while more than
``degraded_share`` of its scored channels are left out (``degraded``), or while more than that share of all its
channels is out of range at once, until it is back for two windows' worth of samples (``out_of_distribution``),
when that happens before the device ran two windows' worth in range since its start or a stop (after, it is a
process excursion and stays scored).
:func:`sensor_view` replays those rules over a recording (the same pure checks, in blocks of rows: the same codes
as sample by sample), :func:`masked_scores` scores its windows as the daemon does; ``evaluate`` and ``benchmark`` feed
both to the daemon's decisions (:func:`trainer.decisions.daemon_decisions` ``scored``). ``tests/trainer/test_sensor_view.py`` checks the replay
against the daemon's own ingest path fed the same samples message by message (the same masks, the same windows
not scored).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_runtime.config import Config
from edge_runtime.pipeline.factor_fill import fill_excluded, residual_projection
from edge_runtime.pipeline.health import (
    OUT_OF_RANGE,
    ChannelHealth,
    HealthLimits,
    left_out,
    renormalised_score,
)
from edge_runtime.service.sensor_health import BACK_IN_WINDOWS

DEGRADED_SHARE = Config().degraded_share  # the daemon's default
SCORE_BATCH = 4096
BLOCK_ROWS = 65_536  # rows checked at a time: the replay's memory is bounded by this, not by the recording


@dataclass
class SensorView:
    """Per hop-1 window (N = T-W+1): ``excluded`` (N, C) the channels left out of its score; ``degraded`` and
    ``out_of_distribution`` (N,) why it is not scored at all; ``scored`` (N,) neither."""

    excluded: np.ndarray
    degraded: np.ndarray
    out_of_distribution: np.ndarray

    @property
    def scored(self) -> np.ndarray:
        return ~(self.degraded | self.out_of_distribution)

    def summary(self) -> dict[str, Any]:
        n = max(len(self.scored), 1)
        return {"windows": int(len(self.scored)),
                "masked_share": float(self.excluded.any(axis=1).sum() / n),
                "degraded_share": float(self.degraded.sum() / n),
                "out_of_distribution_share": float(self.out_of_distribution.sum() / n)}


def _ood_rows(far: np.ndarray, window: int, restarts: np.ndarray | None = None) -> np.ndarray:
    """(T,) bool: out of distribution from the first row with ``far`` until ``BACK_IN_WINDOWS * window`` rows in a
    row are not ``far`` (the row that completes them is scored again), for a stretch the device enters before it
    has run that many rows in range since it started (row 0, or a row of ``restarts``: running again after a stop)
    or since a stretch before it ended; a later one is a process excursion, scored (the daemon's rule)."""
    out = np.zeros(len(far), dtype=bool)
    back = BACK_IN_WINDOWS * window
    rows = np.flatnonzero(far)
    if not len(rows):
        return out
    starts = np.r_[0, np.sort(restarts)] if restarts is not None and len(restarts) else np.zeros(1, dtype=np.int64)
    breaks = np.flatnonzero(np.diff(rows) > back) + 1  # far rows further apart than that end one stretch
    ended = -1  # where the last stretch ended: the device has run in range from there
    for a, b in zip(np.r_[0, breaks], np.r_[breaks, len(rows)], strict=True):
        first = int(rows[a])
        since = int(starts[starts <= first][-1])  # its latest start
        if not (ended >= since or first - since >= back):
            out[first : min(len(far), rows[b - 1] + back)] = True
        ended = int(rows[b - 1]) + back
    return out


@dataclass
class CheckedBlock:
    """Rows ``r0..r1`` of a recording through the checks: ``codes`` (n, C) each value's health state, and the
    checks' ``out_runs`` / ``flat_runs`` after each row; the rows not in ``keep`` are ok (0) and not fed."""

    r0: int
    r1: int
    codes: np.ndarray
    out_runs: np.ndarray
    flat_runs: np.ndarray


def checked_blocks(checks: ChannelHealth, values: np.ndarray, keep: np.ndarray) -> Iterator[CheckedBlock]:
    """``values`` (T, C) fed to the incremental ``checks`` in blocks of ``BLOCK_ROWS`` (the kept rows only, in
    order: the same codes as row by row, in memory bounded by the block)."""
    t, c = values.shape
    for r0 in range(0, t, BLOCK_ROWS):
        r1 = min(t, r0 + BLOCK_ROWS)
        k = keep[r0:r1]
        codes = np.zeros((r1 - r0, c), dtype=np.uint8)
        out_runs = np.zeros((r1 - r0, c), dtype=np.int64)
        flat_runs = np.zeros((r1 - r0, c), dtype=np.int64)
        if k.any():
            codes[k] = checks.update(np.array(values[r0:r1][k], dtype=np.float32))
            out_runs[k], flat_runs[k] = checks.out_runs, checks.flat_runs
        yield CheckedBlock(r0, r1, codes, out_runs, flat_runs)


def sensor_view(meta: Any, values: np.ndarray, degraded_share: float = DEGRADED_SHARE,
                range_excludes: bool = False, running: np.ndarray | None = None) -> SensorView | None:
    """The daemon's sensor checks over raw ``values`` (T, C) with the model's limits; None when the model has none
    (the daemon then checks nothing) or the recording is shorter than a window. ``running`` (T,) bool: only those
    rows are checked (as the daemon checks a running machine only); the others count as ok."""
    w, c = meta.window, len(meta.channels)
    t = values.shape[0]
    if not meta.health or t < w:
        return None
    limits = HealthLimits.build(meta.health, meta.channels, meta.normalisation.mean, meta.sample_period_s)
    checks = ChannelHealth(limits)  # incremental: fed in blocks of rows, as the daemon is fed messages
    keep = np.ones(t, dtype=bool) if running is None else np.asarray(running, dtype=bool)
    weight = np.asarray(meta.scoring.get("weight") or np.ones(c), dtype=np.float64)
    kept = weight > 0
    n = t - w + 1
    excluded = np.zeros((n, c), dtype=bool)
    degraded = np.zeros(n, dtype=bool)
    far = np.zeros(t, dtype=bool)
    carry = np.zeros((0, c), dtype=bool)  # the last W-1 rows' left-out flags of the block before
    for blk in checked_blocks(checks, values, keep):
        r0, r1, codes, out_runs = blk.r0, blk.r1, blk.codes, blk.out_runs
        exc = left_out(codes, blk.flat_runs, limits, range_excludes)  # the daemon's rule, the same function
        far[r0:r1] = (codes == OUT_OF_RANGE).sum(axis=1) > degraded_share * c
        # left out of the window ending at row e when left out at any row of e-W+1..e (the daemon's clean < W)
        ext = np.concatenate([carry, exc])
        csum = np.vstack([np.zeros((1, c), np.int64), np.cumsum(ext, axis=0)])
        first = max(r0, w - 1)  # the first row of this block that ends a window
        if first < r1:
            e = np.arange(first, r1) - r0 + len(carry)  # rows of ext ending a window
            in_span = (csum[e + 1] - csum[e + 1 - w]) > 0
            sl = slice(first - w + 1, r1 - w + 1)
            share = (in_span & kept).sum(axis=1) / max(int(kept.sum()), 1)  # the faulty ones, not the pending
            degraded[sl] = share > degraded_share
            # with range_excludes, a channel outside its range right now (fewer than range_hold samples) too
            excluded[sl] = (in_span | (out_runs[first - r0 :] > 0)) if range_excludes else in_span
        carry = ext[-(w - 1):] if w > 1 else ext[:0]
    ood_rows = np.zeros(t, dtype=bool)
    pos = np.cumsum(keep) - 1  # each row's place among the running rows
    restarts = pos[1:][keep[1:] & ~keep[:-1]]  # where it runs again after a stop (the daemon starts it over)
    ood_rows[keep] = _ood_rows(far[keep], w, restarts)  # over the running rows, as the daemon checks only those
    ood = ood_rows[w - 1 :]
    return SensorView(excluded, degraded & ~ood, ood)


def masked_scores(model: Any, values: np.ndarray, scores: np.ndarray, view: SensorView) -> np.ndarray:
    """Hop-1 window ``scores`` (N,) with each window that leaves channels out scored as the daemon scores it:
    those channels filled (the training mean, or the factors' estimate), the score renormalised over the rest."""
    meta = model.metadata
    out = np.array(scores, dtype=np.float64, copy=True)
    rows = np.flatnonzero(view.excluded.any(axis=1) & view.scored)
    if not len(rows):
        return out
    mean = np.asarray(meta.normalisation.mean, dtype=np.float32)
    std = np.asarray(meta.normalisation.std, dtype=np.float32)
    proj = residual_projection(meta.scoring, len(meta.channels))
    weight = meta.scoring.get("weight")
    w_arr = np.asarray(weight, dtype=np.float64) if weight else None
    x = np.asarray(values, dtype=np.float32)
    view_w = np.lib.stride_tricks.sliding_window_view(x, meta.window, axis=0)  # (N, C, W), no copy
    for lo in range(0, len(rows), SCORE_BATCH):
        idx = rows[lo : lo + SCORE_BATCH]
        win = np.ascontiguousarray(view_w[idx].transpose(0, 2, 1))  # only these windows (masked ones can be far apart)
        exc = view.excluded[idx]
        for pattern in np.unique(exc, axis=0):  # the daemon fills each device's windows by its own pattern
            sel = np.flatnonzero((exc == pattern).all(axis=1))
            part = win[sel]
            fill_excluded(part, pattern, mean, std, proj)  # as the daemon's scorer fills them
            _, ce = model.run(np.ascontiguousarray(part))
            out[idx[sel]] = renormalised_score(np.asarray(ce), pattern, w_arr, meta.score_power())
    return out
