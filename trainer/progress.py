"""Progress lines on stderr for long reads and training: rates, sizes and what is left. Formatting is pure."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO

import numpy as np


def duration(seconds: float) -> str:
    """``"42 s"``, ``"3 min 05 s"``, ``"1 h 02 min"``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _mb(n: int) -> str:
    return f"{n / 1e6:.0f}" if n >= 1e7 else f"{n / 1e6:.1f}"


def read_line(name: str, rows: int, seconds: float, done: int, total: int, unit: str) -> str:
    """``"reading a.csv: 1,200,000 rows, 310,000 rows/s, 130 of 221 MB, 0:03 left"``; ``unit`` "line"
    counts bytes (a text file), "row" counts rows (a sheet or parquet file)."""
    rate = rows / seconds if seconds > 0 else 0.0
    size = f"{_mb(done)} of {_mb(total)} MB" if unit == "line" else f"row {done:,} of {total:,}"
    left = ""
    if 0 < done < total and seconds > 0:
        left = f", {duration(seconds * (total - done) / done)} left"
    return f"reading {name}: {rows:,} rows, {rate:,.0f} rows/s, {size}{left}"


class ReadProgress:
    """At most one progress line a second while a file is read (rewritten in place), a last one when done."""

    def __init__(self, name: str, unit: str, stream: TextIO | None = None, every_s: float = 1.0) -> None:
        self.name, self.unit, self.every_s = name, unit, every_s
        self.stream = stream or sys.stderr
        self.t0 = time.perf_counter()
        self.last = self.t0 - every_s  # the first update shows at once

    def update(self, rows: int, done: int, total: int) -> None:
        now = time.perf_counter()
        if now - self.last >= self.every_s:
            self.last = now
            self.stream.write("\r" + read_line(self.name, rows, now - self.t0, done, total, self.unit))
            self.stream.flush()

    def done(self, rows: int, done: int, total: int) -> None:
        seconds = time.perf_counter() - self.t0
        self.stream.write("\r" + read_line(self.name, rows, seconds, total, total, self.unit)
                          + f" in {duration(seconds)}\n")
        self.stream.flush()


def stage(text: str, on: bool, stream: TextIO | None = None) -> None:
    """One line saying what a long step without its own progress is doing (when ``on``)."""
    if on:
        (stream or sys.stderr).write(text + "\n")


def counted(chunks: Iterable[np.ndarray], total: int, what: str, on: bool,
            stream: TextIO | None = None, every_s: float = 1.0) -> Iterator[np.ndarray]:
    """``chunks`` (arrays of n windows each) passed through, with at most one ``what: n of total`` line a
    second and the time left (when ``on``); a final newline when any line was written."""
    out = stream or sys.stderr
    t0 = last = time.perf_counter()
    n, wrote = 0, False
    try:
        for c in chunks:
            yield c  # the consumer may stop early (a window limit): the finally still ends the line
            n += len(c)
            now = time.perf_counter()
            if on and now - last >= every_s:
                last, wrote = now, True
                left = duration((now - t0) * max(total - n, 0) / n) if n else "?"
                out.write(f"\r{what}: {min(n, total):,} of {total:,} windows, {left} left")
                out.flush()
    finally:
        if wrote:
            out.write("\n")


def epoch_line(epoch: int, epochs: int, done: int, total: int, loss: float, epoch_s: float, mean_epoch_s: float,
               min_epochs_left: int) -> str:
    """One training progress line: the epoch's bar and loss, its time left, and the run's time left as a range
    (the earliest a plateau can stop it .. the epoch cap)."""
    bar = "#" * int(20 * done / total)
    epoch_left = epoch_s * (total - done) / done if done else 0.0
    text = f"epoch {epoch:3d}/{epochs} [{bar:<20}] loss {loss:.5f}, epoch {duration(epoch_left)} left"
    if mean_epoch_s > 0 and epoch < epochs:
        lo = epoch_left + mean_epoch_s * min_epochs_left
        hi = epoch_left + mean_epoch_s * (epochs - epoch)
        text += f", run {duration(lo)}" + ("" if hi - lo < 1 else f" to {duration(hi)}") + " left"
    return text
