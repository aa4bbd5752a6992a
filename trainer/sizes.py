"""Sizes that adapt to the data: window, hops and model size when the user sets none (pure).

- window ``W``: a power of two near ``rows / 20`` of the shortest training part, in 8..64, so
  that even a few hundred rows give a few hundred training windows and enough hop-1 validation
  windows to calibrate on; long recordings get W = 64.
- training hop: 1 until the training part holds more than :data:`MAX_TRAIN_WINDOWS` windows, then
  the hop that keeps about that many (memory stays bounded: at most ``MAX_TRAIN_WINDOWS * W * C``
  floats); the edge's default hop is ``W / 4``.
- model: depth 2 (1 for W < 16), width 16, latent ``clamp(W * C / 16, 4, 16)`` (one code value per
  16 inputs, as the demo model's 64 x 4 -> 16).

Too little data to calibrate honestly (fewer than :data:`MIN_TRAIN_WINDOWS` training windows at the
training hop or :data:`MIN_VAL_WINDOWS` hop-1 validation windows, counted as trained and calibrated on:
without the windows that touch a labelled or stopped row) is an error unless forced.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

MIN_TRAIN_WINDOWS = 100
MIN_VAL_WINDOWS = 50
MAX_TRAIN_WINDOWS = 50_000
ROWS_PER_WINDOW = 20


@dataclass
class Sizes:
    """What ``fit`` uses, and one line per choice it made (``notes``)."""

    window: int
    train_hop: int
    edge_hop: int
    depth: int
    width: int
    latent: int
    notes: list[str] = field(default_factory=list)


def count_windows(rows: Sequence[int], window: int, hop: int = 1) -> int:
    """Windows of ``window`` at ``hop`` in files of ``rows`` samples each (none crosses a file)."""
    return sum((r - window) // hop + 1 for r in rows if r >= window)


def choose_sizes(
    train_rows: Sequence[int],
    val_rows: Sequence[int],
    n_channels: int,
    window: int | None = None,
    hop: int | None = None,
    depth: int | None = None,
    width: int | None = None,
    latent: int | None = None,
) -> Sizes:
    """Sizes for training parts of ``train_rows`` and validation parts of ``val_rows`` samples per file."""
    notes = []
    shortest = min(train_rows) if train_rows else 0
    if window is None:
        window = int(min(64, max(8, 2 ** math.floor(math.log2(max(shortest, 1) / ROWS_PER_WINDOW + 1e-9)))))
        notes.append(f"window {window}: about 1/{ROWS_PER_WINDOW} of the shortest training part ({shortest:,} rows), "
                     "a power of two in 8..64")
    if hop is None:
        total = count_windows(train_rows, window)
        train_hop = max(1, math.ceil(total / MAX_TRAIN_WINDOWS))
        edge_hop = max(1, window // 4)
        notes.append(f"training hop {train_hop} ({count_windows(train_rows, window, train_hop):,} training windows"
                     f"{'' if train_hop == 1 else f', at most {MAX_TRAIN_WINDOWS:,}'}); edge hop {edge_hop} (W/4)")
    else:
        train_hop = edge_hop = hop
    if depth is None:
        depth = 2 if window >= 16 else 1
        notes.append(f"depth {depth} ({'W >= 16' if depth == 2 else 'W < 16'})")
    if width is None:
        width = 16
    if latent is None:
        latent = int(min(16, max(4, window * n_channels // 16)))
        notes.append(f"latent {latent}: W x C / 16 clamped to 4..16")
    return Sizes(window, train_hop, edge_hop, depth, width, latent, notes)


def missing_data(n_train: int, n_val: int, window: int, train_hop: int = 1, n_cal: int | None = None,
                 left_out: str = "") -> str | None:
    """Why ``n_train`` training windows (at ``train_hop``) and ``n_val`` hop-1 validation windows are too few
    to train and calibrate honestly at ``window`` (one line), or None. The counts are the windows trained and
    calibrated on: after the labelled or stopped rows are left out, which ``left_out`` says (a clause).
    ``n_cal``: the hop-1 windows of the ``--calibrate`` recordings, when the threshold is calibrated on them."""
    problems = []
    if n_train < MIN_TRAIN_WINDOWS:
        at = "" if train_hop == 1 else f" at training hop {train_hop}"
        problems.append(f"{n_train:,} training window{'' if n_train == 1 else 's'}{at} (need {MIN_TRAIN_WINDOWS:,})")
    use = "to calibrate the threshold" if n_cal is None else "for the per-channel references"
    if n_val < MIN_VAL_WINDOWS:
        problems.append(f"{n_val:,} hop-1 validation window{'' if n_val == 1 else 's'} (need {MIN_VAL_WINDOWS:,} {use})")
    if n_cal is not None and n_cal < MIN_VAL_WINDOWS:
        problems.append(f"{n_cal:,} hop-1 window{'' if n_cal == 1 else 's'} in the --calibrate recording(s) "
                        f"(need {MIN_VAL_WINDOWS:,} to calibrate the threshold)")
    if not problems:
        return None
    return f"too little normal data for window {window}: {' and '.join(problems)}{f', {left_out}' if left_out else ''}"


def rows_needed(window: int, val_fraction: float, train_hop: int = 1) -> int:
    """Rows one file needs for :data:`MIN_TRAIN_WINDOWS` training windows at ``train_hop`` and
    :data:`MIN_VAL_WINDOWS` hop-1 validation windows of ``window`` when its last ``val_fraction`` is the
    validation part."""
    return math.ceil(max((MIN_VAL_WINDOWS + window - 1) / val_fraction,
                         ((MIN_TRAIN_WINDOWS - 1) * train_hop + window) / (1 - val_fraction)))


def more_data_advice(window: int, val_fraction: float, train_short: bool = True, val_short: bool = True,
                     train_hop: int = 1, normal: bool = False, rows: int | None = None) -> str:
    """What to do about :func:`missing_data` (one clause): a larger --val-fraction only helps when only the
    validation part is short, a smaller one when only the training part is, and neither when the ``rows`` there
    are (training and validation parts together) cannot hold both parts at any split; a smaller --hop when the
    training part is short at a training hop above 1. ``normal``: rows were left out, so the rows asked for are
    normal ones."""
    least = (MIN_TRAIN_WINDOWS - 1) * train_hop + window + MIN_VAL_WINDOWS + window - 1  # both parts, any split
    if rows is not None and rows < least:
        return (f"give more {'normal ' if normal else ''}rows: {rows:,} cannot hold {MIN_TRAIN_WINDOWS} training and "
                f"{MIN_VAL_WINDOWS} validation windows of {window} at any --val-fraction (at least {least:,}; "
                f"about {rows_needed(window, val_fraction, train_hop):,} in one file at {val_fraction:g}), or --force "
                "to fit anyway")
    shift = (", a larger --val-fraction" if val_short and not train_short else
             ", a smaller --val-fraction" if train_short and not val_short else "")
    if train_short and train_hop > 1:
        shift += f", a --hop under {train_hop}"
    return (f"give more {'normal ' if normal else ''}rows (about {rows_needed(window, val_fraction, train_hop):,} "
            f"in one file at --val-fraction {val_fraction:g} and window {window}){shift}, or --force to fit anyway")
