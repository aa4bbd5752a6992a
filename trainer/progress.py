"""Progress lines on stderr for long reads and training: rates, sizes and what is left. Formatting is pure.

On a terminal a progress line is rewritten in place; on a file or a pipe (a CI log, ``2> fit.log``) each update is
a line of its own, at most one every ``LOG_EVERY_S`` seconds, so a log stays readable.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO

import numpy as np

LOG_EVERY_S = 15.0


def is_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal (progress rewritten in place) rather than a file or a pipe."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class LiveLine:
    """One progress line: rewritten in place on a terminal, a new line at most every ``LOG_EVERY_S`` s elsewhere.

    ``due`` says whether the last write is at least ``every_s`` old, ``show`` writes, ``end`` finishes the line
    with a last text or without one.
    """

    def __init__(self, stream: TextIO | None = None, every_s: float = 1.0, terminal: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.terminal = is_terminal(self.stream) if terminal is None else terminal
        self.every_s = every_s if self.terminal else max(every_s, LOG_EVERY_S)
        self.last = -float("inf")  # the first update shows at once
        self.width = 0  # the length of the text now on a terminal line (a shorter one is padded over it)

    def due(self) -> bool:
        """Whether it is time for the next update."""
        return time.perf_counter() - self.last >= self.every_s

    def show(self, text: str) -> None:
        """Write ``text`` as the line's state now."""
        self.last = time.perf_counter()
        if self.terminal:
            self.stream.write("\r" + text.ljust(self.width))
            self.width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def end(self, text: str | None = None) -> None:
        """Finish the line: ``text`` as its last state, or only a newline where a line is open on a terminal."""
        if text is not None:
            self.last = time.perf_counter()
            self.stream.write(("\r" + text.ljust(self.width) if self.terminal else text) + "\n")
        elif self.terminal and self.width:
            self.stream.write("\n")
        self.width = 0
        self.stream.flush()


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
    """At most one progress line a second while a file is read (see ``LiveLine``), a last one when done."""

    def __init__(self, name: str, unit: str, stream: TextIO | None = None, every_s: float = 1.0,
                 terminal: bool | None = None) -> None:
        self.name, self.unit = name, unit
        self.line = LiveLine(stream, every_s, terminal)
        self.t0 = time.perf_counter()

    def update(self, rows: int, done: int, total: int) -> None:
        if self.line.due():
            self.line.show(read_line(self.name, rows, time.perf_counter() - self.t0, done, total, self.unit))

    def done(self, rows: int, done: int, total: int) -> None:
        seconds = time.perf_counter() - self.t0
        self.line.end(read_line(self.name, rows, seconds, total, total, self.unit) + f" in {duration(seconds)}")


def stage(text: str, on: bool, stream: TextIO | None = None) -> None:
    """One line saying what a long step without its own progress is doing (when ``on``)."""
    if on:
        (stream or sys.stderr).write(text + "\n")


def counted(chunks: Iterable[np.ndarray], total: int, what: str, on: bool,
            stream: TextIO | None = None, every_s: float = 1.0, terminal: bool | None = None) -> Iterator[np.ndarray]:
    """``chunks`` (arrays of n windows each) passed through, with at most one ``what: n of total`` line a
    second and the time left (when ``on``; see ``LiveLine``), and a last line with the count when any was written."""
    line = LiveLine(stream, every_s, terminal)
    t0 = time.perf_counter()
    n, wrote = 0, False
    try:
        for c in chunks:
            yield c  # the consumer may stop early (a window limit): the finally still ends the line
            n += len(c)
            if on and line.due():
                left = duration((time.perf_counter() - t0) * max(total - n, 0) / n) if n else "?"
                line.show(f"{what}: {min(n, total):,} of {total:,} windows, {left} left")
                wrote = True
    finally:
        if wrote:
            line.end(f"{what}: {min(n, total):,} of {total:,} windows in {duration(time.perf_counter() - t0)}")


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
