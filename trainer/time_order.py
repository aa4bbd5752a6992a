"""Is a file's timestamp column in time order? Checked while the rows are read, in bounded memory.

The edge drops a sample whose timestamp is older than (``out_of_order``) or equal to (``duplicate``) its
device's latest, and ``edgewatch replay`` refuses a file whose timestamps go backwards; a model trained on
rows out of time order learns dynamics the edge never sees. So ``fit`` and ``evaluate`` refuse a column that
goes backwards (naming the line) and count the rows that repeat the previous timestamp. A cell that is no
timestamp at all is refused as ``replay`` refuses it (the edge drops such a sample, and a row trained on there
would join two stretches the edge sees apart): :class:`BadTimestampError`, naming the line.
"""

from __future__ import annotations

import math
from datetime import tzinfo

import numpy as np

from edge_runtime.pipeline.timestamps import TimestampError, local_column_seconds, unit_scale

CHUNK = 65_536
MAX_GAPS = 100_000  # large steps kept (row, step) at most: an irregular recording is warned about, not split finely


class TimeOrderError(ValueError):
    """The timestamps go backwards at ``line``: ``cell`` is earlier than the row before's ``before``."""

    def __init__(self, line: int, cell: str, before: str) -> None:
        super().__init__(f"line {line}: timestamps go backwards ({cell.strip()!r} after {before.strip()!r})")
        self.line, self.cell, self.before = line, cell, before


class BadTimestampError(ValueError):
    """The cell at ``line`` is not a timestamp (``reason`` says why)."""

    def __init__(self, line: int, cell: str, reason: str) -> None:
        super().__init__(f"line {line}: bad timestamp {cell.strip()!r}: {reason}")
        self.line, self.cell, self.reason = line, cell, reason


class TimeOrder:
    """Feed ``(cell, line)`` per row with :meth:`add`, then :meth:`finish`.

    The column is read in chunks as :func:`local_column_seconds` reads it (one chunk's last cell opens the
    next, and its time is the next chunk's ``prev``, so a DST fall-back across a chunk boundary reads as it does
    in one piece). A cell that is no timestamp raises :class:`BadTimestampError`. With ``keep`` the times are
    kept as float64 (8 bytes a row, not the cells' text): :meth:`seconds`.
    """

    def __init__(self, tz: tzinfo | None, time_format: str | None = None, keep: bool = False) -> None:
        self.tz, self.time_format, self.keep = tz, time_format, keep
        self.cells: list[str] = []
        self.lines: list[int] = []
        self.duplicates = 0
        self.first_duplicate: int | None = None
        self._prev = -math.inf  # the last time of the chunk before (a carried cell's own): fold as read whole
        self._carried = False  # the chunk opens with the last cell of the one before (checked, kept already)
        self._kept: list[tuple[np.ndarray, bool]] = []  # (times, raw epoch numbers not yet in one unit)
        self._next = 0  # the row index of the next new cell
        self._big: list[tuple[int, float, bool]] = []  # (row after a large step, the step, in raw epoch numbers?)
        self._max_raw = 0.0  # the largest raw epoch number (its unit)
        self._ref = 0.0  # the first chunk's median step: a step far above it is a candidate gap, in any chunk
        self.gaps_capped = False  # more than MAX_GAPS candidates: the later ones were not kept

    def add(self, cell: str, line: int) -> None:
        self.cells.append(cell)
        self.lines.append(line)
        if len(self.cells) >= CHUNK:
            self._check()
            self.cells, self.lines = self.cells[-1:], self.lines[-1:]

    def finish(self) -> None:
        """Check the rest; raises :class:`TimeOrderError` at the first step backwards, :class:`BadTimestampError`
        at the first cell that is no timestamp."""
        self._check()
        self.cells, self.lines = [], []

    def gaps(self, longer_than_s: float) -> list[int]:
        """After :meth:`finish`: the rows that begin a new stretch after a time step longer than ``longer_than_s``."""
        scale = unit_scale(self._max_raw)
        return [row for row, step, raw in self._big if (step * scale if raw else step) > longer_than_s]

    def seconds(self) -> np.ndarray:
        """With ``keep``, after :meth:`finish`: every row's time, epoch seconds (n,) float64, as
        :func:`local_column_seconds` reads the whole column (epoch numbers in one unit, from the largest)."""
        scale = unit_scale(max((float(t.max()) for t, raw in self._kept if raw and t.size), default=0.0))
        parts = [t * scale if raw else t for t, raw in self._kept]
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.float64)

    def _check(self) -> None:
        if not self.cells:
            return
        raw = True
        try:  # epoch numbers: their order is that of the numbers, whatever the unit (the fast path)
            if self.time_format is not None:
                raise ValueError("a time format reads every cell, numbers too (%Y%m%d%H%M%S)")
            ts = np.asarray(self.cells, dtype=np.float64)
            if not (np.isfinite(ts).all() and (ts >= 0).all()):
                raise ValueError("nan, inf or negative: refused (and named) below")
        except ValueError:
            raw = False
            try:
                ts = local_column_seconds(self.cells, self.tz, self.time_format, self._prev)
            except TimestampError as exc:
                i = exc.index or 0
                raise BadTimestampError(self.lines[i], self.cells[i], exc.reason) from None
        self._prev = -math.inf if raw else float(ts[-1])
        if self.keep:
            self._kept.append((ts[1:] if self._carried else ts, raw))
        base = self._next - 1 if self._carried else self._next  # the row index of cells[0]
        self._next = base + len(self.cells)
        self._carried = True
        step = np.diff(ts)  # (n - 1,)
        back = np.flatnonzero(step < 0)
        if back.size:
            i = int(back[0]) + 1
            raise TimeOrderError(self.lines[i], self.cells[i], self.cells[i - 1])
        moved = step[step > 0]
        if not self._ref and moved.size:
            self._ref = float(np.median(moved))
        if self._ref:  # steps far above the first chunk's: candidate time gaps (the period is known only at the end)
            far = np.flatnonzero(step > 5.0 * self._ref)
            room = MAX_GAPS - len(self._big)
            self.gaps_capped |= len(far) > room
            self._big.extend((base + int(j) + 1, float(step[j]), raw) for j in far[:room])
        if raw and ts.size:
            self._max_raw = max(self._max_raw, float(ts.max()))
        same = np.flatnonzero(step == 0)  # (a carried cell: its step was checked in the chunk before)
        if same.size:
            self.duplicates += int(same.size)
            if self.first_duplicate is None:
                self.first_duplicate = self.lines[int(same[0]) + 1]
