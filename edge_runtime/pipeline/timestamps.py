"""Timestamps -> epoch seconds: numbers in s, ms, us or ns (told apart by magnitude) and ISO 8601. Pure.

One parser for every reader of time (payload decoding, ``edgewatch replay``, the trainer's CSV loader):

- a number is seconds below 1e11, milliseconds below 1e14, microseconds below 1e17, nanoseconds above
  (1e11 s is the year 5138; 1e11 ms is 1973), per value in :func:`epoch_seconds` and
  :func:`parse_timestamp`, and once per column in :func:`column_seconds` (a file's column has one unit);
- a string is a number as above, or an ISO 8601 date-time (naive means UTC, ``Z`` accepted);
- a file's column may be read instead with a ``strptime`` format (``--time-format``) and as wall-clock time in a
  time zone (:func:`local_column_seconds`); a column in a common other form is named by :func:`time_format_hint`;
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


_DIGITS = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18])  # YYYY-MM-DD?hh:mm:ss: the digits' places


def _naive_iso_at_once(cells: Sequence[object]) -> FloatArray | None:
    """Cells that are all naive ISO 8601 date-times of one shape (``YYYY-MM-DDThh:mm:ss`` or with a space, with or
    without 1-6 digits of fraction) as epoch seconds (UTC), parsed by numpy in one call (a file's time column:
    ~10x the per-cell :func:`datetime.fromisoformat`, the same values); None for any other column, which the
    per-cell path reads or refuses with its reason."""
    if len(cells) < 64 or not all(isinstance(c, str) and len(c) <= 26 for c in cells):
        return None  # (a long cell would make numpy's fixed-width array that wide for every row)
    a = np.asarray(cells)
    if a.dtype.kind != "U" or a.dtype.itemsize // 4 < 19:
        return None
    code = a.view(np.uint32).reshape(len(a), -1)  # one code point per column, 0-padded to the longest
    n = int(np.count_nonzero(code[0]))
    if not (n == 19 or 21 <= n <= 26) or (code.shape[1] > n and code[:, n].any()) or not code[:, n - 1].all():
        return None  # not one length (or longer than the fraction allows)
    digits = code[:, _DIGITS if n == 19 else np.concatenate([_DIGITS, np.arange(20, n)])]
    ok = ((digits >= 48) & (digits <= 57)).all() and (code[:, [4, 7]] == 45).all() and (code[:, [13, 16]] == 58).all()
    ok = ok and ((code[:, 10] == 84) | (code[:, 10] == 32)).all() and (n == 19 or (code[:, 19] == 46).all())
    if not ok:
        return None
    try:
        us = a.astype("datetime64[us]").astype(np.int64)  # numpy refuses day 30 of February as fromisoformat does
    except ValueError:
        return None
    out = us / 1e6
    return out if (out >= 0).all() else None


def column_seconds(cells: Sequence[object]) -> FloatArray:
    """A column of n timestamps -> (n,) float64 epoch seconds, numbers in ONE unit for the whole column
    (from the magnitude of its largest number), so a column in ms is never part read as seconds.

    Raises TimestampError naming (and with ``index``) the 0-based index of the first bad cell.
    """
    fast = _naive_iso_at_once(cells)
    if fast is not None:
        return fast
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


def local_column_seconds(
    cells: Sequence[object], tz: tzinfo | None, time_format: str | None = None, prev: float = -math.inf,
) -> FloatArray:
    """:func:`column_seconds` with naive date-times read as wall-clock time in ``tz`` (None: UTC), and text cells
    read with ``time_format`` (a ``strptime`` format such as ``%d.%m.%Y %H:%M:%S``; None: ISO 8601).

    Across a DST fall-back the repeated hour is read as its first occurrence until the column would go
    backwards, then as its second (``fold=1``); a wall-clock time inside a spring-forward gap is read
    with the offset before the gap (``zoneinfo``'s ``fold=0``). The trainer and replay both use this.
    With ``time_format`` every cell is read by it (``%Y%m%d%H%M%S`` looks like a number but is not one).
    ``prev``: the epoch seconds of the cell before ``cells`` (a column read in chunks reads as it does whole).
    """
    if tz is None and time_format is None:
        return column_seconds(cells)
    aware: list[object] = []
    for i, c in enumerate(cells):
        s = c.strip() if isinstance(c, str) else None
        if s is None or len(s) > MAX_TEXT or (time_format is None and _number(s) is not None):
            aware.append(c)
            continue
        try:
            d = datetime.strptime(s, time_format) if time_format else datetime.fromisoformat(s)
        except ValueError:
            if time_format:
                err = TimestampError(f"index {i}: {s[:40]!r} does not match --time-format {time_format!r}", i)
                err.reason = f"{s[:40]!r} does not match --time-format {time_format!r}"
                raise err from None
            aware.append(c)  # column_seconds names it
            continue
        if d.tzinfo is None:
            first = d.replace(tzinfo=tz or timezone.utc)
            d = first.replace(fold=1) if first.timestamp() < prev < first.replace(fold=1).timestamp() + 1 else first
        prev = d.timestamp()
        aware.append(d.isoformat())
    return column_seconds(aware)


def parse_local(text: str, tz: tzinfo | None, time_format: str | None = None) -> float:
    """One cell as :func:`local_column_seconds` reads a column of one."""
    return float(local_column_seconds([text], tz, time_format)[0])


def in_dst_gap(text: str, tz: tzinfo | None, time_format: str | None = None) -> bool:
    """Is ``text`` a naive wall-clock time that does not exist in ``tz`` (inside a spring-forward gap)?"""
    if tz is None:
        return False
    try:
        d = datetime.strptime(text.strip(), time_format) if time_format else datetime.fromisoformat(text.strip())
    except ValueError:
        return False
    if d.tzinfo is not None:
        return False
    there = d.replace(tzinfo=tz)
    return there.astimezone(timezone.utc).astimezone(tz).replace(tzinfo=None) != d


def dst_gap_note(before: str, cell: str, tz: tzinfo | None, zone_name: str | None,
                 time_format: str | None = None) -> str:
    """Why a column went backwards from ``before`` to ``cell`` when one of them is inside ``tz``'s spring-forward
    gap (the message fit and replay give); '' when neither is."""
    gap = next((c.strip() for c in (before, cell) if in_dst_gap(c, tz, time_format)), None)
    if gap is None:
        return ""
    return (f"{gap!r} does not exist in {zone_name} (the clocks skip that hour when DST starts): are the times in "
            "another zone, or in UTC?")


# -- time formats ----------------------------------------------------------------------------------------
_DATES = ("%d.%m.%Y", "%d/%m/%Y", "%m/%d/%Y", "%Y/%m/%d", "%d-%m-%Y", "%m-%d-%Y", "%Y.%m.%d", "%d.%m.%y",
          "%d/%m/%y", "%m/%d/%y")
_TIMES = (" %H:%M:%S", " %H:%M:%S.%f", " %H:%M", " %I:%M:%S %p", " %I:%M %p", ", %H:%M:%S", ", %H:%M",
          " %H:%M:%S %z", " %H:%M %z")
COMMON_FORMATS = tuple(d + t for d in _DATES for t in _TIMES) + _DATES
_PROBE = datetime(2024, 10, 20, 13, 5, 7, tzinfo=timezone.utc)  # aware: %z and %Z write something to read back


def check_time_format(fmt: str) -> str:
    """``fmt`` when it is a ``strptime`` format that reads back what it writes; else TimestampError saying why."""
    if "%" not in fmt:
        raise TimestampError(f"--time-format {fmt!r} has no % directive (e.g. '%d.%m.%Y %H:%M:%S')")
    if "%Z" in fmt:  # strptime reads a zone name but leaves the time naive: it would be read in --timezone
        raise TimestampError(f"--time-format {fmt!r}: %Z (a zone name) is not applied by strptime; use %z for an "
                             "offset (+0200), or --timezone for the zone of naive times")
    try:
        datetime.strptime(_PROBE.strftime(fmt), fmt)
    except ValueError as exc:
        why = str(exc) if "directive" in str(exc) else "it cannot read back a time it writes itself"
        raise TimestampError(f"--time-format {fmt!r} is no strptime format that reads back: {why}") from None
    return fmt


def guess_time_formats(cells: Sequence[str]) -> list[str]:
    """The :data:`COMMON_FORMATS` that read every one of ``cells`` (up to 50 looked at), for a hint; more than
    one when the cells allow both (``03/04/2024``: day or month first): the user chooses, nothing is guessed."""
    sample = [c.strip() for c in cells[:50] if isinstance(c, str) and c.strip()]
    if not sample or all(_number(c) is not None for c in sample):
        return []
    found = []
    for fmt in COMMON_FORMATS:
        try:
            for c in sample:
                datetime.strptime(c, fmt)
        except ValueError:
            continue
        found.append(fmt)
    return found


def time_format_hint(cells: Sequence[str]) -> str:
    """`` (times in '%d.%m.%Y %H:%M'? give --time-format '%d.%m.%Y %H:%M')`` for cells a common format reads,
    naming every format that does when they are ambiguous; '' when none does."""
    found = guess_time_formats(cells)
    if not found:
        return ""
    if len(found) == 1:
        return f" (times? give --time-format '{found[0]}')"
    return " (times? give one of --time-format " + ", ".join(f"'{f}'" for f in found[:3]) + \
        ": these cells fit more than one)"
