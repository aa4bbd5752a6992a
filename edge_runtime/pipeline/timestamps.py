"""Timestamps -> epoch seconds: numbers in s, ms, us or ns (told apart by magnitude) and ISO 8601. Pure.

One parser for every reader of time (payload decoding, ``edgewatch replay``, the trainer's CSV loader):

- a number is seconds below 1e11, milliseconds below 1e14, microseconds below 1e17, nanoseconds above
  (1e11 s is the year 5138; 1e11 ms is 1973), per value in :func:`epoch_seconds` and
  :func:`parse_timestamp`, and once per column in :func:`column_seconds` (a file's column has one unit);
- a string is a number as above, or an ISO 8601 date-time (naive means UTC, ``Z`` accepted);
- booleans, Python's digit underscores (``"1_7e9"``), non-finite and negative values are refused.

Every refusal raises :class:`TimestampError` (a ``ValueError``) with a one-line reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timezone, tzinfo

import numpy as np
import numpy.typing as npt

MS, US, NS = 1e11, 1e14, 1e17  # smallest magnitude read as milliseconds / microseconds / nanoseconds
MAX_TEXT = 64  # longer strings are refused before parsing

FloatArray = npt.NDArray[np.float64]


class TimestampError(ValueError):
    """A timestamp that is not a finite epoch >= 0 in a known form; ``index``: its position in a column."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index
        self.reason = message


def unit_scale(magnitude: float) -> float:
    """The factor from a number of this magnitude to seconds: 1, 1e-3, 1e-6 or 1e-9."""
    return 1e-9 if magnitude >= NS else 1e-6 if magnitude >= US else 1e-3 if magnitude >= MS else 1.0


def epoch_seconds(x: FloatArray) -> FloatArray:
    """Scale epoch numbers to seconds, each by its own magnitude. (n,) float64 -> (n,) float64."""
    a = np.abs(x)
    scale = np.where(a >= NS, 1e-9, np.where(a >= US, 1e-6, np.where(a >= MS, 1e-3, 1.0)))
    return np.asarray(x * scale, dtype=np.float64)


def _number(text: str) -> float | None:
    """``text`` as a float, or None when it is not a plain number (digit underscores are not)."""
    if "_" in text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def parse_iso(text: str) -> float:
    """An ISO 8601 date-time (naive = UTC, trailing ``Z`` allowed) -> epoch seconds."""
    s = text.strip()
    if len(s) > MAX_TEXT:
        raise TimestampError("timestamp string too long")
    try:
        d = datetime.fromisoformat(s[:-1] + "+00:00" if s.endswith(("Z", "z")) else s)
    except ValueError:
        raise TimestampError(f"not a number or ISO 8601 time: {s[:40]!r}") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return d.timestamp()


def _raw(t: object) -> tuple[float, bool]:
    """(value, is_number) of one timestamp before unit scaling; ISO strings come back in seconds."""
    if isinstance(t, bool):
        raise TimestampError(f"boolean timestamp {t!r}")
    if isinstance(t, (int, float)):
        try:
            return float(t), True
        except OverflowError:
            raise TimestampError("timestamp out of range") from None
    if isinstance(t, str):
        s = t.strip()
        if len(s) > MAX_TEXT:
            raise TimestampError("timestamp string too long")
        v = _number(s)
        return (v, True) if v is not None else (parse_iso(s), False)
    raise TimestampError(f"timestamp of type {type(t).__name__}")


def _check(v: float, t: object) -> float:
    if not math.isfinite(v) or v < 0:
        raise TimestampError(f"timestamp {t!r} is not a finite epoch >= 0")
    return v


def parse_timestamp(t: object) -> float:
    """One timestamp (number, numeric string or ISO 8601 string) -> epoch seconds; raises TimestampError."""
    v, is_number = _raw(t)
    _check(v, t)
    return v * unit_scale(v) if is_number else v


def column_seconds(cells: Sequence[object]) -> FloatArray:
    """A column of n timestamps -> (n,) float64 epoch seconds, numbers in ONE unit for the whole column
    (from the magnitude of its largest number), so a column in ms is never part read as seconds.

    Raises TimestampError naming (and with ``index``) the 0-based index of the first bad cell.
    """
    out = np.empty(len(cells), dtype=np.float64)
    numeric = np.zeros(len(cells), dtype=bool)
    for i, c in enumerate(cells):
        try:
            v, numeric[i] = _raw(c)
            out[i] = _check(v, c)
        except TimestampError as exc:
            err = TimestampError(f"index {i}: {exc}", i)
            err.reason = str(exc)
            raise err from None
    if numeric.any():
        out[numeric] *= unit_scale(float(out[numeric].max()))
    return out


def local_column_seconds(cells: Sequence[object], tz: tzinfo | None) -> FloatArray:
    """:func:`column_seconds` with naive ISO date-times read as wall-clock time in ``tz`` (None: UTC).

    Across a DST fall-back the repeated hour is read as its first occurrence until the column would go
    backwards, then as its second (``fold=1``); a wall-clock time inside a spring-forward gap is read
    with the offset before the gap (``zoneinfo``'s ``fold=0``). The trainer and replay both use this.
    """
    if tz is None:
        return column_seconds(cells)
    aware: list[object] = []
    prev = -math.inf
    for c in cells:
        s = c.strip() if isinstance(c, str) else None
        if s is None or _number(s) is not None or len(s) > MAX_TEXT:
            aware.append(c)
            continue
        try:
            d = datetime.fromisoformat(s)
        except ValueError:
            aware.append(c)  # column_seconds names it
            continue
        if d.tzinfo is None:
            first = d.replace(tzinfo=tz)
            d = first.replace(fold=1) if first.timestamp() < prev < first.replace(fold=1).timestamp() + 1 else first
        prev = d.timestamp()
        aware.append(d.isoformat())
    return column_seconds(aware)
