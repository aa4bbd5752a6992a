"""Channel screening learned from normal training data alone (numpy only).

A channel is screened out of the score (weight 0) when it is constant (stuck) in the training
part, or when its level moves between the training and validation parts by more than
``drift_limit`` training standard deviations (a drifting channel, e.g. a temperature, would raise
false alarms as it keeps drifting). Every kept channel gets the same weight ``C / n_kept`` on its
*relative* error, so a noisy or large channel counts as much as a quiet one. Every decision keeps
its reason, for ``fit`` and ``inspect`` to print.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from trainer.data import column_stats, constant_mask

DRIFT_LIMIT = 0.6  # training std; chosen by leave-one-fault-kind-out on SKAB (docs/EVALUATION.md)
HIGH_ERROR_RATIO = 3.0  # a channel's normal error above this many times the median is reported


@dataclass
class ChannelScreen:
    """One channel's screening: ``kept`` in the score or not, and why."""

    name: str
    kept: bool
    reason: str
    drift: float  # |mean(validation) - mean(training)| / std(training)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def screen_channels(
    train: Sequence[np.ndarray], val: Sequence[np.ndarray], channels: Sequence[str], drift_limit: float = DRIFT_LIMIT
) -> list[ChannelScreen]:
    """Screen ``channels`` on training arrays ``train`` and validation arrays ``val`` (each (T, C) raw).

    Drift is measured per file (each file's validation part against its own training part) and
    the largest is kept. If every non-constant channel drifts, all of them are kept (and say so).
    """
    _, _, std, lo, hi = column_stats(train)
    constant = constant_mask(lo, hi)
    # a counter or an epoch time: only rises, by little against its level (a heating ramp 20 -> 30 degC is neither)
    counter = only_rises(train) & ((hi - lo) < 0.01 * np.maximum(np.abs(lo), np.abs(hi)))
    drift = np.zeros(len(channels))
    for a, b in zip(train, val, strict=True):
        if len(a) and len(b):
            d = np.abs(np.mean(b, axis=0, dtype=np.float64) - np.mean(a, axis=0, dtype=np.float64))
            drift = np.maximum(drift, d / np.where(std > 0, std, np.inf))
    out = []
    for c, name in enumerate(channels):
        if constant[c]:
            out.append(ChannelScreen(name, False, f"constant in training (value {lo[c]:.6g})", 0.0))
        elif drift[c] > drift_limit:
            out.append(ChannelScreen(
                name, False, f"drifts: its level moved {drift[c]:.2f} training std between the training "
                f"and validation parts (limit {drift_limit})" + (
                    "; it only rises: a counter or a time column? --exclude it, or --time-column names it"
                    if counter[c] else ""), float(drift[c])))
        else:
            out.append(ChannelScreen(name, True, f"kept (level moved {drift[c]:.2f} training std)", float(drift[c])))
    if not any(s.kept for s in out):
        for s in out:
            if s.drift > 0:
                s.kept, s.reason = True, f"kept although it drifts ({s.drift:.2f} std): every channel drifts"
    return out


def only_rises(train: Sequence[np.ndarray], chunk: int = 65_536) -> np.ndarray:
    """(C,) bool: channels that never fall in any training array and rise at least 5 times: a totaliser, a time in
    epoch units (in float32 a large one rises in steps, flat in between), counted in row chunks (bounded memory)."""
    arrays = [a for a in train if len(a) > 1]
    if not arrays:
        return np.zeros(train[0].shape[1] if len(train) else 0, bool)
    rises = falls = 0
    for a in arrays:
        for i in range(0, len(a) - 1, chunk):
            d = np.diff(np.asarray(a[i : i + chunk + 1], dtype=np.float64), axis=0)
            rises = rises + np.count_nonzero(d > 0, axis=0)
            falls = falls + np.count_nonzero(d < 0, axis=0)
    return np.asarray((falls == 0) & (rises >= 5))


def weights(screen: Sequence[ChannelScreen]) -> np.ndarray:
    """(C,) ``C / n_kept`` for kept channels, 0 for screened-out ones; raises when none is kept."""
    kept = np.array([s.kept for s in screen], dtype=np.float64)
    if kept.sum() == 0:
        raise ValueError("every channel is constant in the training data: nothing to learn")
    return kept * len(screen) / kept.sum()


def note_high_error(screen: Sequence[ChannelScreen], ae_ref: np.ndarray) -> None:
    """Append to the reason of kept channels whose normal reconstruction error ``ae_ref`` (C,) is large."""
    kept = [i for i, s in enumerate(screen) if s.kept]
    if not kept:
        return
    med = float(np.median(ae_ref[kept]))
    for i in kept:
        if ae_ref[i] > HIGH_ERROR_RATIO * med:
            screen[i].reason += (
                f"; normal reconstruction error {ae_ref[i] / med:.1f}x the median: scored relative to its own"
            )


def format_screen(screen: Sequence[ChannelScreen | dict[str, Any]]) -> str:
    """One line per channel: ``+``/``-``, name, reason."""
    rows = []
    for s in screen:
        d = s if isinstance(s, dict) else s.to_dict()
        rows.append(f"  {'+' if d['kept'] else '-'} {d['name']}: {d['reason']}")
    return "\n".join(rows)
