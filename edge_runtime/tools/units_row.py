"""A units row under a CSV header (``bar``, ``degC``, ``[mm/s]``), told apart from data and from a messy row. Pure.

Recordings exported by loggers and SCADA often carry each column's unit in the row under the header. Such a
row is a **units row** when none of its channel cells is a number and at least one names a unit (the others
empty, ``-`` or another "no unit" mark); a unit is a short word such as ``bar``, ``degC``, ``°C``, ``mm/s``,
``m³/h``, ``1/min`` or ``%``, optionally in brackets (``[bar]``, ``(bar)``). A row with a number in it is
data (a text cell there is the reader's "not a number" error, naming line and column); a row of units and
text that is no unit is neither: :class:`UnitsRowError` names the cell. The time column's cell may hold its
format instead of a unit (``dd.mm.yyyy hh:mm:ss``, ``%Y-%m-%d``, as exports write it): no unit. Used by
``edgewatch-train`` (trainer/data.py: stored as the model's units like ``fit --units``) and ``edgewatch replay``
(skipped).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from edge_runtime.tools.textfile import number

NO_UNIT = frozenset({"", "-", "--", "n/a", "na", "nan", "none", "null"})  # also what a missing cell looks like
MAX_UNIT = 24
_UNIT = re.compile(r"^(?=.*[A-Za-z%°µμΩ‰])[A-Za-z0-9%°µμΩ‰/·*^._()\-²³ ]+$")
_BRACKETS = ("[]", "()", "{}")
_TOKEN = r"(?:d{1,2}|m{1,2}|y{2,4}|h{1,2}|s{1,2}|f+|ms)"
# a date/time format written in the units row of a time column: dd.mm.yyyy hh:mm:ss, YYYY-MM-DD, %d.%m.%Y %H:%M
_TIME_FORMAT = re.compile(rf"^(?:{_TOKEN}(?:[ .:/T_,-]+{_TOKEN})+|(?:%[A-Za-z][ .:/T_,-]*){{2,}})$", re.IGNORECASE)


class UnitsRowError(ValueError):
    """The row under the header is neither data nor a units row (the message names the cells)."""


def is_time_format(text: str) -> bool:
    """Does ``text`` spell a date/time format (``dd.mm.yyyy hh:mm:ss``, ``YYYY-MM-DD``, ``hh:mm``, ``%d.%m.%Y``),
    not a unit (``mm/s``, ``h/d``, ``m/d`` are units)?"""
    if not _TIME_FORMAT.match(text):
        return False
    if text.startswith("%") or ":" in text:
        return True
    tokens = re.findall(r"[a-z]+", text.lower())
    return any(t.startswith("y") for t in tokens) or ({"dd", "mm"} <= set(tokens))


def unit_of(cell: str) -> str | None:
    """The unit a cell names (brackets taken off; ``""``: none), or None when it does not look like a unit."""
    t = cell.strip()
    if len(t) >= 2 and t[0] + t[-1] in _BRACKETS:
        t = t[1:-1].strip()
    if t.lower() in NO_UNIT or is_time_format(t):  # (a time column's format is no unit either)
        return ""
    if len(t) <= MAX_UNIT and t.count(" ") <= 2 and _UNIT.match(t):
        return t
    return None


def _parses(cell: str, decimal: str) -> bool:
    try:
        number(cell, decimal)
    except ValueError:
        return False
    return True


def units_row(cells: Mapping[str, str], decimal: str = ".") -> dict[str, str] | None:
    """``cells`` (column -> text of the first row under the header, channel columns only): ``{column: unit}``
    for the columns that name one when it is a units row; None when it is data (the reader then says what is
    wrong with it, if anything); :class:`UnitsRowError` when it is neither. A cell that reads as a number
    with ``decimal`` as the decimal mark (``inf`` too), or with the other one (``5,129`` in a file read with
    ``.``: the reader then names the decimal comma), is data."""
    other = "," if decimal == "." else "."
    if any(_parses(v, decimal) or _parses(v, other) for v in cells.values()):
        return None  # data: a text cell among numbers is the reader's "not a number" (a status column, a typo)
    units = {c: unit_of(v) for c, v in cells.items()}
    named = {c: u for c, u in units.items() if u}
    if not named:
        return None
    first = next(iter(named))
    bad = [c for c, u in units.items() if u is None]
    if bad:
        raise UnitsRowError(
            f"a units row ({first!r}: {named[first]!r}), but column {bad[0]!r} holds {cells[bad[0]].strip()[:40]!r}, "
            f"not a unit (a short word such as bar, degC, mm/s, [bar]; empty or '-' for none)")
    return named
