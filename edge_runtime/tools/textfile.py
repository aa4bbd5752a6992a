"""What plants' exported text files need before a CSV reader sees them: encoding, decimal comma, time zone.

Shared by the trainer's reader (``trainer/data.py``) and ``edgewatch replay``, so both read a file the
same way. ``encoding`` None means UTF-8, or what a byte-order mark says (UTF-8, UTF-16 or UTF-32);
a file that does not decode gets one line naming the first bad byte, its line and an encoding to try.

No pandas; never imports torch, onnx or trainer.
"""

from __future__ import annotations

import codecs
import difflib
import io
import re
from collections.abc import Sequence
from datetime import tzinfo
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edge_runtime.clierror import EXIT_DATAERR, EXIT_USAGE

DECIMALS = (".", ",")
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)

TIME_COLUMNS = ("timestamp", "time", "datetime", "date", "ts", "date_time", "time_stamp")  # fit's and replay's



MISSING_CELLS = frozenset({"", "nan", "na", "n/a", "null", "none", "-"})  # a cell with no value (lower case)


def is_missing(cell: str) -> bool:
    """A cell with no value: empty, NaN, NA, n/a, null, none or - (any case), as fit and replay read it."""
    return cell.strip().lower() in MISSING_CELLS


class TextFileError(ValueError):
    """An unusable encoding, decimal or time zone option, or a file that does not decode (one line)."""

    exit_code = EXIT_USAGE  # an option; a file that does not decode is EXIT_DATAERR (decode_error)


def check_encoding(name: str | None) -> str | None:
    """``name`` when Python knows the codec (None passes); raises TextFileError otherwise."""
    if name is None:
        return None
    try:
        codecs.lookup(name)
    except LookupError:
        raise TextFileError(f"--encoding {name!r}: unknown encoding (e.g. utf-8, cp1252, latin-1, utf-16)") from None
    return name


def check_decimal(mark: str) -> str:
    """``.`` or ``,``; raises TextFileError otherwise."""
    if mark not in DECIMALS:
        raise TextFileError(f"--decimal must be '.' or ',', got {mark!r}")
    return mark


def zone(name: str | None) -> tzinfo | None:
    """The IANA time zone ``name`` (``Europe/Berlin``) naive timestamps are in; None: UTC."""
    if name is None or name.upper() == "UTC":
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise TextFileError(f"--timezone {name!r}: unknown time zone (an IANA name such as Europe/Berlin)") from None


def detect_encoding(head: bytes, encoding: str | None) -> str:
    """The codec to read a file starting with ``head``: a BOM's, else ``encoding``, else UTF-8."""
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    return encoding or "utf-8"


def decode_error(path: Path, encoding: str, exc: UnicodeDecodeError) -> TextFileError:
    """One line for a file that is not ``encoding`` text: the first bad byte, its line, what to try."""
    line, byte, shown = _first_bad_byte(path, encoding)
    where = f"line {line}, " if line else ""
    what = f"byte 0x{byte:02x}" if byte is not None else exc.reason
    if shown:
        what += f" ({shown!r} in cp1252)"
    hint = "try --encoding cp1252 (Windows export) or latin-1" if encoding.startswith("utf") else "check --encoding"
    err = TextFileError(f"{path}: not {encoding} text ({where}{what}): {hint}")
    err.exit_code = EXIT_DATAERR
    return err


def _first_bad_byte(path: Path, encoding: str) -> tuple[int | None, int | None, str]:
    """(1-based line, byte value, that byte in cp1252) of the first byte ``encoding`` cannot decode."""
    dec = codecs.getincrementaldecoder(encoding)()
    line = 1
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 16):
            try:
                line += dec.decode(chunk).count("\n")
            except UnicodeDecodeError as exc:
                ok = chunk[: exc.start]
                line += ok.count(b"\n")  # lines in the good part of this chunk (a single-byte-safe count)
                b = chunk[exc.start]
                try:
                    shown = bytes([b]).decode("cp1252")
                except UnicodeDecodeError:
                    shown = ""
                return line, b, shown
    return None, None, ""


# what a file that is not text starts with, and what it then is
BINARY_FORMATS = (
    (b"PK\x03\x04", "a zip archive (an Excel .xlsx workbook?): name it .xlsx to read its first sheet"),
    (b"PAR1", "a parquet file: name it .parquet"),
    (b"\x1f\x8b", "gzip-compressed: gunzip it first"),
    (b"\x93NUMPY", "a numpy .npy array: name it .npy"),
)


def open_text(path: Path, encoding: str | None = None) -> tuple[TextIO, str]:
    """``(text stream, codec)`` for ``path`` (BOM detected, newline='' for csv); the caller closes it."""
    raw = path.open("rb")
    head = raw.peek(8)[:8]
    binary = next((what for magic, what in BINARY_FORMATS if head.startswith(magic)), None)
    head = head[:4]
    if binary is not None:  # a hint to --encoding would lead nowhere
        raw.close()
        err = TextFileError(f"{path}: {binary}, not a text (CSV) file despite its name")
        err.exit_code = EXIT_DATAERR
        raise err
    codec = detect_encoding(head, encoding)
    return io.TextIOWrapper(raw, encoding=codec, newline=""), codec


SEPARATORS = (",", ";", "\t")
_SEPARATOR_NAMES = {",": "','", ";": "';'", "\t": "tabs"}


def sniff_separator(header: str) -> str:
    """The separator of a CSV header line: the most frequent of ``SEPARATORS`` (ties: first), ``,`` for none."""
    counts = {d: header.count(d) for d in SEPARATORS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def field_count_error(cells: list[str], expected: int, separator: str | None, word: str = "fields") -> str:
    """``"1 field, the header has 3"`` (``word`` plural, its singular for one), naming another separator when the
    line splits into ``expected`` by it."""
    text = f"{len(cells)} {word[:-1] if len(cells) == 1 and word.endswith('s') else word}, the header has {expected}"
    if separator is None:
        return text
    line = separator.join(cells)
    # a comma last: it is a decimal mark too ("1,5\t2,5" is two fields by tab, not three by comma)
    other = next((d for d in ("\t", ";", ",") if d != separator and len(line.split(d)) == expected), None)
    if other is not None:
        text += (f": this line is separated by {_SEPARATOR_NAMES[other]} where the header uses "
                 f"{_SEPARATOR_NAMES[separator]} (one separator throughout the file)")
    elif len(cells) == 1 and expected > 1:
        text += " (a comment or footer line? delete it)"
    return text


_THOUSANDS_DOTS = re.compile(r"[+-]?[1-9]\d{0,2}(?:\.\d{3})+(?:,\d*)?")  # 6.173,50 and 1.234.567 (dots every 3 digits)


def number(cell: str, decimal: str = ".") -> float:
    """A cell as a float with ``decimal`` as the decimal mark (``"37,51"`` with ``,``; there, dots every three
    digits are thousands marks: ``"6.173,50"``, as a German export writes them); raises ValueError."""
    if decimal != ",":
        return float(cell)
    if "." in cell and _THOUSANDS_DOTS.fullmatch(cell.strip()):
        cell = cell.strip().replace(".", "")
    return float(cell.replace(",", "."))


class DecimalMarks:
    """Under a decimal comma, numbers must be written one way. A column must not hold both a decimal point (``1.5``,
    ``0.997``: read as written) and dots that read as thousands marks (``1.007``: 1007): one column on two scales.
    Nor may a column read its dots as thousands marks when it never shows a decimal comma while another column writes
    decimal points (``12.425`` beside ``39.74``: the file's dots are decimal points). :meth:`see` each cell with a
    dot, and a cell with a comma of a column not yet in :attr:`comma` (the first conflict in a column is a ValueError
    naming both lines); :meth:`finish` at the end (the caller adds the file and column)."""

    __slots__ = ("point", "thousands", "comma")

    def __init__(self) -> None:
        self.point: dict[int, tuple[int, str]] = {}  # column -> (line, cell) of its first decimal point
        self.thousands: dict[int, tuple[int, str]] = {}  # column -> (line, cell) of its first thousands-only dots
        self.comma: set[int] = set()  # the columns that wrote a comma

    def see(self, column: int, cell: str, line: int) -> None:
        text = cell.strip()
        if "," in text:  # 6.173,50 or 37,5: the column writes a decimal comma
            self.comma.add(column)
            return
        grouped = bool(_THOUSANDS_DOTS.fullmatch(text))
        mine, other = (self.thousands, self.point) if grouped else (self.point, self.thousands)
        mine.setdefault(column, (line, text))
        if column in other:
            (pl, pc), (tl, tc) = (self.point[column], self.thousands[column])
            raise ValueError(
                f"mixes decimal marks under --decimal ,: line {pl} {pc!r} has a decimal point, line {tl} {tc!r} reads "
                f"as {number(tc, ','):g} (dots as thousands marks): write every number of the column the same way, "
                "or read the file with --decimal .")

    def finish(self, names: Sequence[str]) -> None:
        """Raise when a column read its dots as thousands marks and never wrote a comma while another column wrote
        decimal points, naming both (``names``: the columns :meth:`see` was given, by index)."""
        alone = [k for k in self.thousands if k not in self.comma]
        if not alone or not self.point:
            return
        c = min(alone, key=lambda k: self.thousands[k][0])
        o = min(self.point, key=lambda k: self.point[k][0])
        (tl, tc), (pl, pc) = self.thousands[c], self.point[o]
        raise ValueError(
            f"column {names[c]!r} reads line {tl} {tc!r} as {number(tc, ','):g} under --decimal , (dots as thousands "
            f"marks; the column writes no decimal comma), while column {names[o]!r} writes a decimal point (line "
            f"{pl} {pc!r}): the file writes its numbers two ways. Write every number the same way (a file whose "
            "numbers all use a decimal point reads with --decimal .)")


def looks_like_decimal_comma(cell: str) -> bool:
    """``"37,510"`` or ``"-0,5"``: a number written with a decimal comma."""
    head, sep, tail = cell.strip().lstrip("+-").partition(",")
    return bool(sep) and head.isdigit() and tail.isdigit()


def find_column(name: str, header: list[str]) -> int | None:
    """Index of ``name`` in ``header``: the exact name, else the one name equal to it ignoring case."""
    if name in header:
        return header.index(name)
    low = [h.lower() for h in header]
    return low.index(name.lower()) if low.count(name.lower()) == 1 else None


def did_you_mean(name: str, header: list[str]) -> str:
    """`` (did you mean 'Temp'?)`` for the closest column name, or ``""``."""
    low = [h.lower() for h in header]
    close = difflib.get_close_matches(name.lower(), low, n=1, cutoff=0.6)
    return f" (did you mean {header[low.index(close[0])]!r}?)" if close else ""
