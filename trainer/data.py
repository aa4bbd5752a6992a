"""Files -> arrays: CSV/.xlsx/.parquet/.npy/.npz loading (decimal comma, encoding, time zone), channel selection, missing values, time split, normalisation.

Every problem a user can cause raises :class:`DataError` with one line naming the file,
the line or column, and the reason.
"""

from __future__ import annotations

import csv
import importlib
import itertools
import logging
import math
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.clierror import EXIT_DATAERR, EXIT_NOINPUT, EXIT_USAGE
from edge_runtime.pipeline.health import FILL_METHODS, fill_column
from edge_runtime.pipeline.timestamps import (
    TimestampError,
    check_time_format,
    dst_gap_note,
    local_column_seconds,
    parse_local,
    time_format_hint,
)
from edge_runtime.pipeline.windowing_offline import window_labels, windows_from_series
from edge_runtime.pipeline.windows import GAP_PERIODS
from edge_runtime.tools.textfile import (
    MISSING_CELLS,
    TIME_COLUMNS,
    DecimalMarks,
    TextFileError,
    check_decimal,
    check_encoding,
    decode_error,
    did_you_mean,
    field_count_error,
    find_column,
    looks_like_decimal_comma,
    number,
    open_text,
    sniff_separator,
    zone,
)
from edge_runtime.tools.units_row import UnitsRowError, units_row
from trainer import row_spool
from trainer.progress import ReadProgress
from trainer.row_spool import RowSpool
from trainer.time_order import MAX_GAPS, BadTimestampError, TimeOrder, TimeOrderError

log = logging.getLogger(__name__)

DATA_SUFFIXES = (".csv", ".tsv", ".txt", ".npy", ".npz", ".xlsx", ".xlsm", ".parquet")
TIMESTAMP_NAMES = TIME_COLUMNS  # the names of a time column (replay finds it by the same)
DEFAULT_LABEL_COLUMN = "anomaly"
# Label-ish columns never used as features unless asked for with --channels (as edge_runtime/tools/replay.py):
# SKAB's `changepoint` beside its `anomaly` labels, and the usual names of label columns.
LABEL_LIKE_COLUMNS = ("anomaly", "changepoint", "label", "labels")


class DataError(ValueError):
    """Bad input data; the message is one line naming file, line/column and reason. Exit code: a data error,
    or ``EXIT_NOINPUT`` for a file that is not there (:func:`no_input`)."""

    exit_code = EXIT_DATAERR


def usage_error(message: str) -> DataError:
    """A :class:`DataError` about the options, not the files (exit code ``EXIT_USAGE``)."""
    err = DataError(message)
    err.exit_code = EXIT_USAGE
    return err


def no_input(message: str) -> DataError:
    """A :class:`DataError` for an input that is not there or cannot be read (exit code ``EXIT_NOINPUT``)."""
    err = DataError(message)
    err.exit_code = EXIT_NOINPUT
    return err


@dataclass
class Series:
    """One input file as arrays.

    ``values``: (T, C) float32 raw units; ``labels``: (T,) int8 or None;
    ``sample_period_s``: median timestamp step when a timestamp column was found;
    ``columns``: every column (CSV header) or array name (npz) the file had; ``ts``: (T,) float64 epoch s
    of every row, read only when asked for (:attr:`ReadOptions.keep_time`); ``states``: (T,) text of the
    operating-state column (:attr:`ReadOptions.state_column`) when the file has it; ``units``: channel ->
    unit from a units row under the header (edge_runtime/tools/units_row.py), when the file has one.
    """

    name: str
    values: np.ndarray
    channels: list[str]
    labels: np.ndarray | None = None
    sample_period_s: float | None = None
    columns: list[str] = field(default_factory=list)
    ts: np.ndarray | None = None
    states: np.ndarray | None = None  # (T,) str: the --state-column's cells, when it was read
    units: dict[str, str] = field(default_factory=dict)
    time_column: str | None = None  # the column read as time, when there was one
    gaps: list[int] = field(default_factory=list)  # rows that begin a stretch after a time gap (:func:`gap_windows`)


def expand_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Files given directly, plus the data files inside given folders (sorted); a file named twice (itself and
    through its folder, or a link to it) is read once, with a warning: twice would weigh it double."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in DATA_SUFFIXES)
            if not found:
                raise no_input(f"{p}: folder holds no data files ({', '.join(DATA_SUFFIXES)})")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise no_input(f"{p}: no such file or folder")
    if not out:
        raise DataError("no data files given")
    first: dict[Path, Path] = {}
    for f in out:
        key = f.resolve()
        if key in first:
            log.warning("%s: the same file as %s, given twice: read once", f, first[key])
        else:
            first[key] = f
    return list(first.values())


def _parse_time(text: str, time_format: str | None = None) -> float | None:
    """Epoch seconds of one timestamp cell (edge_runtime.pipeline.timestamps; naive read as UTC), None when it is
    not one."""
    try:
        return parse_local(text, None, time_format)
    except TimestampError:
        return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class ReadOptions:
    """How to read a file: ``decimal`` mark, ``encoding`` (None: UTF-8 or the BOM's), ``timezone`` of naive
    timestamps (None: UTC), ``time_format`` of text timestamps (a ``strptime`` format; None: ISO 8601),
    ``fill`` for missing values; ``progress``: rows/s and bytes on stderr;
    ``keep_time``: keep every row's timestamp (``Series.ts``; the plot's time axis); ``state_column``: a text
    column of operating states (``RUN``/``STOP``), read as text beside the features (``Series.states``);
    ``time_column``: the time column by name (else the first named like one, or a first column of dates).

    :meth:`preprocessing` is what ``fit`` stores in the model, and ``evaluate`` and ``replay`` reuse.
    """

    fill: str | None = None
    decimal: str = "."
    encoding: str | None = None
    timezone: str | None = None
    time_format: str | None = None
    progress: bool = False
    keep_time: bool = False
    state_column: str | None = None
    require_state: bool = False  # a file without the state column is an error (fit), else its states are None
    rows: tuple[int, int | None] | None = None  # --rows: only data rows start..stop-1 of each file (0-based)
    time_column: str | None = None  # --time-column: named, it must be in every file

    def check(self) -> ReadOptions:
        """Self, or DataError naming the bad option."""
        if self.fill is not None and self.fill not in FILL_METHODS:
            raise usage_error(f"--fill must be one of {', '.join(FILL_METHODS)}, got {self.fill!r}")
        try:
            check_decimal(self.decimal)
            check_encoding(self.encoding)
            zone(self.timezone)
            if self.time_format is not None:
                check_time_format(self.time_format)
        except (TextFileError, TimestampError) as exc:
            raise usage_error(str(exc)) from None  # an option: exit 2, as replay
        return self

    def preprocessing(self) -> dict[str, Any]:
        return {"fill": self.fill, "decimal": self.decimal, "encoding": self.encoding, "timezone": self.timezone,
                "time_format": self.time_format, "state_column": self.state_column, "time_column": self.time_column}


ISO_TIMES = "iso"  # --time-format iso: ISO 8601 or epoch numbers, over a model's stored format


def parse_rows(spec: str | None) -> tuple[int, int | None] | None:
    """``--rows``: ``N`` (the first N data rows), ``A:B``, ``A:`` or ``:B`` (0-based, B excluded) as ``(A, B)``;
    a usage error for anything else."""
    if spec is None:
        return None
    text = spec.strip()
    lo, colon, hi = text.partition(":")
    try:
        start = int(lo) if lo.strip() else 0
        stop = (int(hi) if hi.strip() else None) if colon else start
        if not colon:
            start = 0
    except ValueError:
        raise usage_error(f"--rows {spec!r}: give N (the first N rows), START:END, START: or :END") from None
    if start < 0 or (stop is not None and stop <= start):
        raise usage_error(f"--rows {spec!r}: needs 0 <= START < END")
    return start, stop


def format_rows(rows: tuple[int, int | None] | None) -> str:
    """``(0, 400)`` as ``0:400``, ``(400, None)`` as ``400:``."""
    if rows is None:
        return "all"
    return f"{rows[0]}:{'' if rows[1] is None else rows[1]}"


def read_options(stored: dict[str, Any], **given: Any) -> ReadOptions:
    """Options from a model's stored ``preprocessing``, each overridden by a ``given`` one that is not None.

    A bad given option is a usage error (exit 2); a bad stored one that no given option overrides (a model
    edited by hand, a time zone this machine does not know) is a data error naming the model's stored value.
    """
    keys = ("fill", "decimal", "encoding", "timezone", "time_format", "state_column", "time_column")
    chosen = {k: v for k, v in given.items() if v is not None}
    ReadOptions(**_no_none_fill(chosen)).check()
    base = {k: stored[k] for k in keys if stored.get(k) is not None}
    base.update(chosen)
    try:
        return ReadOptions(**_no_none_fill(base)).check()
    except DataError as exc:
        raise DataError(f"the model's stored reading options (its preprocessing metadata) do not work here: {exc}; "
                        "give that option to read with another value") from None


def _no_none_fill(options: dict[str, Any]) -> dict[str, Any]:
    """``fill = "none"`` (a stored or given "no fill") and ``time_format = "iso"`` (the default, given over a
    model's stored format) as None."""
    out = {**options, "fill": None} if options.get("fill") == "none" else dict(options)
    if out.get("time_format") == ISO_TIMES:
        out["time_format"] = None
    return out


def read_csv(
    path: Path,
    label_column: str | None = "anomaly",
    exclude: Sequence[str] = (),
    channels: Sequence[str] | None = None,
    fill: str | None = None,
    opts: ReadOptions | None = None,
) -> Series:
    """Read a table with a header row: CSV (delimiter ``,`` ``;`` or tab), ``.xlsx`` (first sheet; the
    ``xlsx`` extra) or ``.parquet`` (the ``parquet`` extra).

    The features are the columns other than the timestamp, ``label_column``, the ``exclude`` columns
    this file has (absent ones are ignored: :func:`load_paths` checks them across files) and the
    label-ish :data:`LABEL_LIKE_COLUMNS`; ``channels`` picks and orders them explicitly instead. Column
    names match ignoring case when the exact name is absent.
    """
    opts = opts or ReadOptions(fill=fill)
    suffix = path.suffix.lower()
    if suffix == ".onnx":  # (read as text it is "not utf-8 text ... try --encoding cp1252")
        raise DataError(f"{path}: an ONNX model, not data: give the recordings (CSV, .xlsx, .parquet, .npy, .npz); "
                        "`edgewatch-train inspect` or `evaluate MODEL DATA...` take a model")
    if suffix in (".xlsx", ".xlsm"):
        return _read_rows(path, *_xlsx_rows(path, opts.decimal, opts.time_format), label_column, exclude, channels,
                          opts, "row")
    if suffix == ".parquet":
        return _read_rows(path, *_parquet_rows(path, opts.decimal, opts.time_format), label_column, exclude,
                          channels, opts, "row")
    try:
        fh, codec = open_text(path, opts.encoding)
    except OSError as exc:
        raise no_input(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        with fh:
            first_line = fh.readline()
            if not first_line.strip():
                raise DataError(f"{path}: line 1: empty file or missing header row")
            delim = sniff_separator(first_line)
            header = next(csv.reader([first_line], delimiter=delim))
            reader = csv.reader(fh, delimiter=delim)
            rows = ((reader.line_num + 1, r) for r in reader)
            total = path.stat().st_size
            raw = fh.buffer
            return _read_rows(path, header, rows, lambda: (raw.tell(), total), label_column, exclude, channels,
                              opts, "line", separator=delim)
    except UnicodeDecodeError as exc:
        raise DataError(str(decode_error(path, codec, exc))) from None


def _cell_text(v: object, decimal: str = ".", time_format: str | None = None) -> str:
    """A spreadsheet or parquet cell as the text a CSV would hold (None empty); a typed number is written with the
    ``decimal`` mark read back (under ``,``: ``39,74``, never a text that reads as thousands marks); a typed date in
    ``time_format`` when one is given (``--time-format``, or the model's, written for a CSV export of the same
    plant) and the date has no time zone, else in ISO 8601: a date cell is a date whatever the format says."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, (datetime, date)):
        naive = not isinstance(v, datetime) or v.tzinfo is None
        if time_format and time_format.lower() != "iso" and naive:
            return v.strftime(time_format)
        return v.isoformat()
    if isinstance(v, float) and decimal == ",":
        return repr(v).replace(".", ",")
    return str(v)


def _need(module: str, extra: str, path: Path) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError:
        raise DataError(
            f"{path}: reading {path.suffix} needs {module}: pip install 'edgewatch[{extra}]' "
            "(or save the sheet as CSV)"
        ) from None


RowSource = tuple[list[str], Iterator[tuple[int, list[str]]], Callable[[], tuple[int, int]]]


def _xlsx_rows(path: Path, decimal: str = ".", time_format: str | None = None) -> RowSource:
    """The first sheet's header and rows (as text, typed numbers with the ``decimal`` mark) through openpyxl
    (read-only: streamed)."""
    openpyxl = _need("openpyxl", "xlsx", path)
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - zip, XML and openpyxl's own errors for a file that is not xlsx
        raise DataError(f"{path}: not a readable .xlsx workbook ({type(exc).__name__})") from None
    ws = wb.worksheets[0]
    it = ws.iter_rows(values_only=True)
    header = [_cell_text(v) for v in next(it, ())]
    total = ws.max_row or 0
    done = [1]

    def rows() -> Iterator[tuple[int, list[str]]]:
        try:
            for i, r in enumerate(it, start=2):
                done[0] = i
                yield i, [_cell_text(v, decimal, time_format) for v in r[: len(header)]]
        finally:
            wb.close()

    return header, rows(), lambda: (done[0], total)


def _parquet_rows(path: Path, decimal: str = ".", time_format: str | None = None) -> RowSource:
    """A parquet file's columns and rows (as text, typed numbers with the ``decimal`` mark) through pyarrow, one
    record batch at a time."""
    _need("pyarrow", "parquet", path)
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow's errors for a file that is not parquet
        raise DataError(f"{path}: not a readable parquet file ({type(exc).__name__})") from None
    header = list(pf.schema_arrow.names)
    total = pf.metadata.num_rows
    done = [0]

    def rows() -> Iterator[tuple[int, list[str]]]:
        n = 1
        for batch in pf.iter_batches(batch_size=65_536):
            cols = [c.to_pylist() for c in batch.columns]
            for r in zip(*cols, strict=True):
                n += 1
                yield n, [_cell_text(v, decimal, time_format) for v in r]
            done[0] = n - 1
    return header, rows(), lambda: (done[0], total)


def _cell_value(cell: str, path: Path, lineno: int, column: str, opts: ReadOptions, where: str = "line") -> float:
    """One feature cell as a float; NaN for a missing one when ``fill`` is set (filled later)."""
    try:
        v = number(cell, opts.decimal)
        if math.isfinite(v):
            return v
    except ValueError:
        pass
    text = cell.strip()
    at = f"{path}: {where} {lineno}, column {column!r}"
    if text.lower() in MISSING_CELLS:  # replay reads the same cells as missing
        if opts.fill is None:
            raise DataError(f"{at}: missing value (use --fill {'|'.join(FILL_METHODS)})")
        return math.nan
    if _is_number(text):
        raise DataError(f"{at}: not a finite number: {text!r}")
    if opts.decimal == "." and looks_like_decimal_comma(text):
        hint = " (a decimal comma: use --decimal ,)"
    elif times := time_format_hint([text]):
        hint = times
    else:  # a text column (a status, a comment): say how to keep it out
        hint = f" (a text column? keep it out with --exclude {column}, or --state-column {column} for a machine state)"
    raise DataError(f"{at}: not a number: {text!r}{hint}")


def _column(name: str, header: list[str], path: Path, what: str) -> int:
    i = find_column(name, header)
    if i is None:
        raise DataError(f"{path}: {what} {name!r} not found{did_you_mean(name, header)}; columns: {', '.join(header)}")
    return i


@dataclass
class _Layout:
    """Which cells of a file's rows hold what (from its header and first rows), and the first data row."""

    header: list[str]
    ts_col: int | None
    lab_col: int | None
    st_col: int | None
    feature_idx: list[int]
    blank: list[int]  # unnamed columns over empty cells (trailing separators): checked empty on every row
    units: dict[int, str]  # a units row's units by column
    first_line: int
    first_row: list[str]

    @property
    def names(self) -> list[str]:
        return [self.header[i] for i in self.feature_idx]


def _next_data_row(rows: Iterator[tuple[int, list[str]]]) -> tuple[int, list[str] | None]:
    return next(((n, r) for n, r in rows if any(c.strip() for c in r)), (0, None))


def _layout(path: Path, header: list[str], rows: Iterator[tuple[int, list[str]]], label_column: str | None,
            exclude: Sequence[str], channels: Sequence[str] | None, opts: ReadOptions, where: str) -> _Layout:
    """The columns of ``header`` (stripped): timestamp, label, state and features; a units row under the header is
    read (and the first data row taken after it); the first data row tells an unnamed timestamp column."""
    named = [h for h in header if h]  # unnamed cells (trailing separators) are told apart below
    if len(set(named)) != len(named):
        dup = next(h for h in named if named.count(h) > 1)
        raise DataError(f"{path}: {where} 1: duplicate column name {dup!r}")
    first_line, first_row = _next_data_row(rows)
    if first_row is None:
        raise DataError(f"{path}: no data rows after the header")
    lower = [h.lower() for h in header]
    ts_col: int | None = _column(opts.time_column, header, path, "--time-column") if opts.time_column else next(
        (i for i, h in enumerate(lower) if h in TIMESTAMP_NAMES), None)
    lab_col = find_column(label_column, header) if label_column else None
    st_col = find_column(opts.state_column, header) if opts.state_column else None
    excluded = {e.lower() for e in exclude}
    units: dict[int, str] = {}
    if len(first_row) == len(header):  # a units row under the header: the units, then the data from the next row
        cand = [_column(c, header, path, "column") for c in channels] if channels else [
            i for i, h in enumerate(lower) if i not in (ts_col, lab_col, st_col) and h not in excluded
            and h not in LABEL_LIKE_COLUMNS]
        try:
            found = units_row({header[i]: first_row[i] for i in cand}, opts.decimal)
        except UnitsRowError as exc:
            raise DataError(f"{path}: {where} {first_line}: {exc}") from None
        if found is not None:
            units = {header.index(c): u for c, u in found.items()}
            first_line, first_row = _next_data_row(rows)
            if first_row is None:
                raise DataError(f"{path}: no data rows after the header and its units row")
    if ts_col is None and first_row:
        # An unnamed timestamp: a first column whose first value is a date, not a number.
        first = first_row[0].strip()
        if (opts.time_format is not None or not _is_number(first)) and _parse_time(first, opts.time_format) is not None:
            ts_col = 0
        elif opts.time_format is not None and not _is_number(first) and time_format_hint([first]):
            raise DataError(f"{path}: {where} {first_line}, column {header[0]!r}: --time-format {opts.time_format!r} "
                            f"does not read {first!r}{time_format_hint([first])}")
    if opts.state_column and st_col is None and opts.require_state:
        raise DataError(f"{path}: --state-column {opts.state_column!r} not found{did_you_mean(opts.state_column, header)}"
                        f"; columns: {', '.join(header)}")
    # a header cell with no name: over empty cells a trailing separator (left out, and checked empty on every row);
    # over values a column nobody named (a pandas index?): refused unless --exclude ''
    unnamed = [i for i, h in enumerate(header) if not h and "" not in excluded and i not in (ts_col, lab_col, st_col)]
    named_by_nobody = [i for i in unnamed if i < len(first_row) and first_row[i].strip()]
    if named_by_nobody and not channels:  # (with --channels, as evaluate reads, the columns picked are the features)
        i = named_by_nobody[0]
        raise DataError(f"{path}: {where} 1: column {i + 1} has no name in the header (its first value "
                        f"{first_row[i].strip()!r}): name it, or keep it out with --exclude ''"
                        + (" (a pandas index? write the file with index=False)" if i == 0 else ""))
    feature_idx = [_column(c, header, path, "column") for c in channels] if channels else [
        i for i, h in enumerate(header)
        if i not in (ts_col, lab_col, st_col) and h.lower() not in excluded and h.lower() not in LABEL_LIKE_COLUMNS
        and i not in unnamed
    ]
    if not feature_idx:
        raise DataError(f"{path}: no feature columns left after removing timestamp, label and excluded columns")
    return _Layout(header, ts_col, lab_col, st_col, feature_idx, [i for i in unnamed if i not in named_by_nobody],
                   units, first_line, first_row)


class _RowReader:
    """Takes the rows of one file by its :class:`_Layout`: the features into a :class:`RowSpool` (float32), the
    labels, states and the first timestamps (the sample period), every timestamp into a :class:`TimeOrder`."""

    def __init__(self, path: Path, lay: _Layout, opts: ReadOptions, where: str, separator: str | None) -> None:
        self.path, self.lay, self.opts, self.where, self.separator = path, lay, opts, where, separator
        self.names = lay.names
        self.spool = RowSpool(len(lay.feature_idx))
        self.labs = array("b")
        self.ts_cells: list[str] = []
        self.st_cells: list[str] = []
        self.order = TimeOrder(zone(opts.timezone), opts.time_format, keep=opts.keep_time) \
            if lay.ts_col is not None else None
        self.marks = DecimalMarks() if opts.decimal == "," else None

    def take(self, r: list[str], lineno: int) -> None:
        lay, path, where = self.lay, self.path, self.where
        if len(r) != len(lay.header):
            raise DataError(f"{path}: {where} {lineno}: {field_count_error(r, len(lay.header), self.separator)}")
        for i in lay.blank:
            if r[i].strip():
                raise DataError(f"{path}: {where} {lineno}: {r[i].strip()!r} in column {i + 1}, which has no name in "
                                "the header (empty above, as after a trailing separator): name it, or --exclude ''")
        names, opts = self.names, self.opts
        self.spool.extend(_cell_value(r[ci], path, lineno, names[j], opts, where) for j, ci in enumerate(lay.feature_idx))
        if self.marks is not None:
            comma = self.marks.comma  # the columns that wrote a comma: their comma cells need no more looks
            for j, ci in enumerate(lay.feature_idx):
                if "." in r[ci] or ("," in r[ci] and j not in comma):
                    try:
                        self.marks.see(j, r[ci], lineno)
                    except ValueError as exc:
                        raise DataError(f"{path}: column {names[j]!r} {exc}") from None
        if lay.lab_col is not None:
            cell = r[lay.lab_col].strip()
            try:
                self.labs.append(1 if float(cell) != 0 else 0)
            except ValueError:
                raise DataError(f"{path}: {where} {lineno}, column {lay.header[lay.lab_col]!r}: label must be 0/1, "
                                f"got {cell!r}") from None
        if lay.st_col is not None:
            self.st_cells.append(r[lay.st_col].strip())
        if lay.ts_col is not None:
            if len(self.ts_cells) < 1000:  # the sample period; every row's time: order.seconds()
                self.ts_cells.append(r[lay.ts_col])
            if self.order is not None:
                self.order.add(r[lay.ts_col], lineno)

    def take_all(self, rows: Iterator[tuple[int, list[str]]], position: Callable[[], tuple[int, int]],
                 exclude: Sequence[str]) -> int:
        """Every data row (``--rows``: those in its range) taken; how many. A bad timestamp, time order or cell is
        a :class:`DataError` that says how to fix it."""
        lay, opts, path, where = self.lay, self.opts, self.path, self.where
        meter = ReadProgress(path.name, where) if opts.progress else None
        n = 0
        start, stop = opts.rows or (0, None)
        try:
            data = itertools.chain([(lay.first_line, lay.first_row)],
                                   ((ln, r) for ln, r in rows if any(c.strip() for c in r)))
            for lineno, r in itertools.islice(data, start, stop):  # --rows: the reading stops at its end
                self.take(r, lineno)
                n += 1
                if meter is not None and n % 8192 == 0:
                    meter.update(n, *position())
            if self.order is not None:
                self.order.finish()
            if self.marks is not None:
                try:
                    self.marks.finish(self.names)
                except ValueError as exc:
                    raise DataError(f"{path}: {exc}") from None
        except BadTimestampError as exc:
            hint = "" if opts.time_format else time_format_hint([exc.cell])  # (a format given: the cell fits it not)
            fix = hint or ": fix or delete the row (`edgewatch replay` refuses it too; the edge drops such a sample)"
            raise DataError(f"{path}: {where} {exc.line}, column {self._ts_name}: bad timestamp: {exc.reason}{fix}"
                            ) from None
        except TimeOrderError as exc:
            local = "" if _is_number(exc.cell) and not opts.time_format else (
                f"; are the times in {opts.timezone}?" if opts.timezone else "; naive local times across a DST "
                "change: --timezone")
            fix = dst_gap_note(exc.before, exc.cell, zone(opts.timezone), opts.timezone, opts.time_format) or \
                f"sort the rows by time{local}"
            raise DataError(f"{path}: {where} {exc.line}, column {self._ts_name}: timestamps go backwards "
                            f"({exc.cell.strip()!r} after {exc.before.strip()!r}; the edge drops such samples as "
                            f"out_of_order): {fix}") from None
        except DataError as exc:
            # a mistyped --exclude leaves its (text) column in: say so beside the cell that failed
            unmatched = [e for e in exclude if find_column(e, lay.header) is None and did_you_mean(e, lay.header)]
            if not unmatched:
                raise
            raise DataError(f"{exc}; --exclude {unmatched[0]!r} matches no column here"
                            f"{did_you_mean(unmatched[0], lay.header)}") from None
        if meter is not None:
            meter.done(n, *position())
        return n

    @property
    def _ts_name(self) -> str:
        return repr(self.lay.header[self.lay.ts_col]) if self.lay.ts_col is not None else "?"

    def values(self) -> np.ndarray:
        """The features (n, C) float32, in memory or mapped from a nameless temporary file, ``--fill`` applied."""
        values = self.spool.finish()
        if self.opts.fill is not None:
            filled = []
            for j, name in enumerate(self.names):
                missing = int(np.count_nonzero(np.isnan(values[:, j])))
                if not missing:
                    continue  # nothing to fill: a mapped column's pages are not written again
                try:
                    values[:, j] = fill_column(values[:, j], self.opts.fill)
                except ValueError as exc:
                    raise DataError(f"{self.path}: column {name!r}: {exc}") from None
                filled.append(f"{name} {missing:,} ({missing / max(1, len(values)):.0%})")
            if filled:  # what was made up, per channel: a channel mostly filled is mostly --fill, not readings
                log.warning("%s: --fill %s filled missing cells of %s of %s rows", self.path, self.opts.fill,
                            ", ".join(filled), f"{len(values):,}")
        return values

    def times(self) -> tuple[float | None, np.ndarray | None]:
        """(the sample period from the first rows' timestamps, every row's time with ``keep_time``), or Nones.
        One unit for the whole column, from its magnitude (an epoch-ms column is not read as seconds); naive
        date-times in ``--timezone``, across DST as replay reads them; irregular sampling is warned about."""
        opts = self.opts
        if self.lay.ts_col is None:
            return None, None
        cells = [c for c in self.ts_cells[:1000] if _parse_time(c, opts.time_format) is not None]
        good = local_column_seconds(cells, zone(opts.timezone), opts.time_format)
        ts = self.order.seconds() if opts.keep_time and self.order is not None else None
        period = None
        if good.size >= 2:
            steps = np.diff(good)
            step = float(np.median(steps))
            period = step if step > 0 else None
            lo, hi = (float(v) for v in np.percentile(steps, [5, 95]))
            if period is not None and steps.size >= 10 and (hi > 2 * step or lo < step / 2):
                log.warning("%s: irregular sampling: timestamp steps of %.3g to %.3g s (5th to 95th percentile of "
                            "the first rows), median %.3g s: the model counts windows in samples and takes %.3g s "
                            "per sample (delays, rates and the stale limit)", self.path, lo, hi, step, step)
        return period, ts


def _read_rows(
    path: Path, header: list[str], rows: Iterator[tuple[int, list[str]]], position: Callable[[], tuple[int, int]],
    label_column: str | None, exclude: Sequence[str], channels: Sequence[str] | None, opts: ReadOptions, where: str,
    separator: str | None = None,
) -> Series:
    """A header and ``(line, cells)`` rows -> :class:`Series`, row by row, the values kept as float32 by a
    :class:`RowSpool` (in memory up to 64 MiB, beyond that mapped from a nameless temporary file).
    ``position()``: ``(done, total)`` bytes (CSV) or rows, for the progress line."""
    lay = _layout(path, [h.strip() for h in header], rows, label_column, exclude, channels, opts, where)
    reader = _RowReader(path, lay, opts, where, separator)
    n = reader.take_all(rows, position, exclude)
    start, stop = opts.rows or (0, None)
    if n == 0:
        raise DataError(f"{path}: --rows {format_rows(opts.rows)} holds no data rows: the file ends before data row "
                        f"{start}")
    if stop is not None and n < stop - start:
        log.warning("%s: --rows %s reaches past the end of the file: %s data rows read (rows %d..%d)", path,
                    format_rows(opts.rows), f"{n:,}", start, start + n - 1)
    if reader.order is not None and reader.order.duplicates:
        log.warning("%s: %d row(s) repeat the timestamp of the row before (first at %s %d); the edge drops such "
                    "samples as duplicate", path, reader.order.duplicates, where, reader.order.first_duplicate)
    values = reader.values()
    period, ts = reader.times()
    gaps = reader.order.gaps(GAP_PERIODS * period) if reader.order is not None and period else []
    if reader.order is not None and reader.order.gaps_capped:
        log.warning("%s: more than %s steps of over 5 sample periods: the time gaps after them were not looked for "
                    "(a very irregular recording)", path, f"{MAX_GAPS:,}")
    names = list(channels) if channels else lay.names
    return Series(
        name=str(path),
        values=values,
        channels=names,
        labels=np.frombuffer(reader.labs, dtype=np.int8).copy() if lay.lab_col is not None else None,
        sample_period_s=period,
        time_column=lay.header[lay.ts_col] if lay.ts_col is not None else None,
        columns=lay.header,
        ts=ts,
        states=np.asarray(reader.st_cells, dtype=str) if lay.st_col is not None else None,
        units={c: lay.units[i] for c, i in zip(names, lay.feature_idx, strict=True) if lay.units.get(i)},
        gaps=gaps,
    )


def _from_array(path: Path, arr: np.ndarray, what: str) -> np.ndarray:
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise DataError(f"{path}: {what} must be 1-D or 2-D (T, C), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"{path}: {what} has non-numeric dtype {arr.dtype}")
    spool = RowSpool(arr.shape[1])  # in blocks: a mapped .npy is never copied whole, not even as float32
    for lo in range(0, arr.shape[0], row_spool.BLOCK_ROWS):
        block = np.asarray(arr[lo : lo + row_spool.BLOCK_ROWS], dtype=np.float64)
        bad = np.argwhere(~np.isfinite(block))
        if bad.size:
            r, c = bad[0]
            raise DataError(f"{path}: row {lo + r}, column {c}: missing or non-finite value")
        spool.extend_rows(block)
    return spool.finish()


def read_numpy(
    path: Path, label_column: str | None = "anomaly", channels: Sequence[str] | None = None,
    rows: tuple[int, int | None] | None = None,
) -> Series:
    """Read ``.npy`` (T, C) or ``.npz`` with ``values`` (or ``x``/``data``), optional ``labels``/``channels``;
    ``rows`` (start, stop): only those rows."""
    part = slice(*(rows or (0, None)))
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
        if magic != b"\x93NUMPY" and not magic.startswith(b"PK"):  # numpy calls any other file "pickled data"
            kind = ".npz archive (a zip)" if path.suffix.lower() == ".npz" else ".npy file"
            raise DataError(f"{path}: not a {kind}: it does not start with numpy's header")
        loaded = np.load(path, allow_pickle=False, mmap_mode="r")  # a .npy is mapped, read in blocks below
    except DataError:
        raise
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: cannot read as numpy: {exc}") from None
    labels = None
    names: list[str] | None = None
    keys: list[str] = []
    if isinstance(loaded, np.ndarray):
        values = _from_array(path, loaded[part], "array")
    else:
        with loaded:
            keys = list(loaded.keys())
            key = next((k for k in ("values", "x", "data") if k in keys), keys[0] if len(keys) == 1 else None)
            if key is None:
                raise DataError(f"{path}: npz needs a 'values' array; found {', '.join(keys)}")
            values = _from_array(path, loaded[key][part], f"array {key!r}")
            for lk in ("labels", label_column or "anomaly"):
                if lk in keys:
                    labels = (np.asarray(loaded[lk]).reshape(-1)[part] != 0).astype(np.int8)
                    if labels.size != values.shape[0]:
                        raise DataError(
                            f"{path}: {lk!r} has {labels.size} entries, values have {values.shape[0]} rows"
                        )
                    break
            if "channels" in keys:
                names = [str(c) for c in loaded["channels"]]
    if names is None:
        names = [f"ch{i}" for i in range(values.shape[1])]
    if len(names) != values.shape[1]:
        raise DataError(f"{path}: {len(names)} channel names for {values.shape[1]} columns")
    if channels:
        missing = [c for c in channels if c not in names]
        if missing:
            raise DataError(
                f"{path}: channel(s) {', '.join(missing)} not found; channels: {', '.join(names)}"
            )
        idx = [names.index(c) for c in channels]
        values, names = values[:, idx], list(channels)
    return Series(name=str(path), values=values, channels=names, labels=labels, columns=[*keys, *names])


def load_paths(
    paths: Sequence[str | Path],
    label_column: str | None = "anomaly",
    exclude: Sequence[str] = (),
    channels: Sequence[str] | None = None,
    fill: str | None = None,
    opts: ReadOptions | None = None,
) -> list[Series]:
    """Load files/folders; all files must end up with the same channels in the same order.

    A column named by ``exclude``, or a ``label_column`` other than the default, must exist in at
    least one file, ignoring case (a typo would otherwise silently turn the real label column into a
    feature); a miss names the closest column. ``opts`` (decimal, encoding, time zone, fill) wins over ``fill``.
    """
    opts = (opts or ReadOptions(fill=fill)).check()
    files = expand_paths(paths)
    out: list[Series] = []
    for p in files:
        if p.suffix.lower() in (".npy", ".npz"):
            s = read_numpy(p, label_column, channels, opts.rows)
            start, stop = opts.rows or (0, None)
            if not s.values.shape[0]:
                raise DataError(f"{p}: --rows {format_rows(opts.rows)} holds no rows: the array ends before row {start}")
            if stop is not None and len(s.values) < stop - start:
                log.warning("%s: --rows %s reaches past the end of the array: %s rows read", p, format_rows(opts.rows),
                            f"{len(s.values):,}")
        else:
            s = read_csv(p, label_column, exclude, channels, opts=opts)
        if out and s.channels != out[0].channels:
            raise DataError(
                f"{p}: channels [{', '.join(s.channels)}] differ from {out[0].name} [{', '.join(out[0].channels)}]"
            )
        note_gaps(s, (opts.rows or (0, None))[0])
        out.append(s)
    file_units(out)
    seen = list(dict.fromkeys(c for s in out for c in s.columns))
    where = files[0] if len(files) == 1 else f"{len(files)} files"
    if label_column and label_column != DEFAULT_LABEL_COLUMN and find_column(label_column, seen) is None:
        raise DataError(
            f"--label-column {label_column!r}: no such column in {where}{did_you_mean(label_column, seen)}; "
            f"columns: {', '.join(out[0].columns)}"
        )
    unknown = [e for e in dict.fromkeys(exclude) if find_column(e, seen) is None]
    if unknown:
        hints = "".join(did_you_mean(e, seen) for e in unknown)
        raise DataError(
            f"--exclude names unknown column(s) {', '.join(unknown)} (in none of {where}){hints}; "
            f"columns: {', '.join(out[0].columns)}"
        )
    return out


def note_gaps(s: Series, first_row: int = 0) -> None:
    """A warning naming ``s``'s time gaps (steps longer than :data:`GAP_PERIODS` sample periods, where the daemon
    restarts a device's window: ``input.gap_s``); no window across one is trained on, calibrated on or scored
    (:func:`gap_windows`). ``first_row``: the ``--rows`` start (the rows are named as the file counts them)."""
    if s.gaps:
        log.warning("%s: %d time gap(s) longer than %g sample periods (%g s: the daemon restarts its window there), "
                    "at data row(s) %s: no window across a gap is trained on, calibrated on or scored", s.name,
                    len(s.gaps), GAP_PERIODS, GAP_PERIODS * (s.sample_period_s or 0.0),
                    ", ".join(str(g + first_row) for g in s.gaps[:5]) + (" ..." if len(s.gaps) > 5 else ""))


def gap_windows(gaps: Sequence[int], n_rows: int, window: int, hop: int = 1, lo: int = 0) -> np.ndarray:
    """(k,) bool: the windows of ``window`` at ``hop`` over rows ``lo``..``n_rows - 1`` (the first starting at
    ``lo``) that span a time gap (a row of ``gaps`` begins a stretch: the window starting at row r spans it when
    r < g <= r + W - 1)."""
    k = max(0, (n_rows - lo - window) // hop + 1)
    out = np.zeros(k, dtype=bool)
    for g in gaps:
        first = max(0, -(-(g - window + 1 - lo) // hop))  # ceil((g - W + 1 - lo) / hop)
        last = min(k - 1, (g - 1 - lo) // hop)
        if last >= first:
            out[first : last + 1] = True
    return out


def normal_mask(s: Series, window: int, hop: int = 1, lo: int = 0, stop: int | None = None) -> np.ndarray | None:
    """(k,) bool: which windows of ``window`` at ``hop`` over rows ``lo``..``stop - 1`` of ``s`` (the first starting
    at ``lo``) touch no labelled row and span no time gap; None when every one does (no labels, no gaps)."""
    stop = len(s.values) if stop is None else stop
    keep = None if s.labels is None else window_labels(s.labels[lo:stop], window, hop) == 0
    if s.gaps:
        across = gap_windows(s.gaps, stop, window, hop, lo)
        keep = ~across if keep is None else keep & ~across
    return keep


def gaps_within(gaps: Sequence[int], lo: int, hi: int) -> list[int]:
    """The gaps of rows ``lo``..``hi - 1``, counted from ``lo`` (one at ``lo`` itself begins the part: none)."""
    return [g - lo for g in gaps if lo < g < hi]


def file_units(series: Sequence[Series]) -> dict[str, str]:
    """The channels' units from the files' units rows (channel -> unit); DataError when two files disagree."""
    out: dict[str, str] = {}
    where: dict[str, str] = {}
    for s in series:
        for c, u in s.units.items():
            if c in out and out[c] != u:
                raise DataError(f"{s.name}: the units row gives {c!r} in {u!r}, {where[c]} in {out[c]!r}")
            out.setdefault(c, u)
            where.setdefault(c, s.name)
    return out


def split_series(
    series: Sequence[Series], val_fraction: float, by: str = "time"
) -> tuple[list[Series], list[Series]]:
    """Split by time (the last ``val_fraction`` of each file) or by whole files (the last files)."""
    if not 0.0 < val_fraction < 1.0:
        raise usage_error(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    if by == "file":
        if len(series) < 2:
            raise DataError("--split file needs at least two files")
        n_val = min(len(series) - 1, max(1, round(len(series) * val_fraction)))
        return list(series[:-n_val]), list(series[-n_val:])
    if by != "time":
        raise DataError(f"--split must be 'time' or 'file', got {by!r}")
    train, val = [], []
    for s in series:
        cut = int(round(s.values.shape[0] * (1.0 - val_fraction)))
        for part, lo, hi in ((train, 0, cut), (val, cut, s.values.shape[0])):
            part.append(
                Series(
                    name=f"{s.name}[{lo}:{hi}]",
                    values=s.values[lo:hi],
                    channels=s.channels,
                    labels=None if s.labels is None else s.labels[lo:hi],
                    sample_period_s=s.sample_period_s,
                    states=None if s.states is None else s.states[lo:hi],
                    gaps=gaps_within(s.gaps, lo, hi),
                )
            )
    return train, val


def check_lengths(series: Sequence[Series], window: int) -> None:
    """Raise when a file is too short for one window."""
    for s in series:
        if s.values.shape[0] < window:
            raise DataError(f"{s.name}: {s.values.shape[0]} rows, fewer than one window of {window}")


def normal_windows(series: Sequence[Series], window: int, hop: int) -> np.ndarray:
    """Windows (N, W, C) of each series cut separately; windows touching a labelled point or spanning a time gap
    are dropped."""
    parts = []
    for s in series:
        if s.values.shape[0] < window:
            continue
        w = windows_from_series([s.values], window, hop)
        keep = normal_mask(s, window, hop)
        parts.append(w if keep is None else w[keep])
    if not parts:
        return np.zeros((0, window, series[0].values.shape[1] if series else 0), dtype=np.float32)
    return np.concatenate(parts, axis=0)


def count_normal_windows(series: Sequence[Series], window: int, hop: int = 1) -> tuple[int, int]:
    """``(normal, all)``: the windows of ``window`` at ``hop`` of each series cut separately, and how many of
    them touch no labelled point and span no time gap (those :func:`normal_windows` keeps), without cutting them."""
    normal = total = 0
    for s in series:
        t = s.values.shape[0]
        if t < window:
            continue
        n = (t - window) // hop + 1
        total += n
        keep = normal_mask(s, window, hop)
        normal += n if keep is None else int(keep.sum())
    return normal, total


def column_stats(series: Sequence[np.ndarray], chunk: int = 65_536) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(n, mean, std, min, max)`` per channel (C,) float64 over arrays (T, C), in row chunks (bounded memory)."""
    arrays = [np.asarray(a) for a in series if len(a)]
    if not arrays:
        raise ValueError("no rows")
    n = sum(len(a) for a in arrays)
    mean = sum(np.sum(a, axis=0, dtype=np.float64) for a in arrays) / n
    sq = sum(
        np.sum((a[i : i + chunk].astype(np.float64) - mean) ** 2, axis=0) for a in arrays for i in range(0, len(a), chunk)
    )
    lo = np.min([a.min(axis=0) for a in arrays], axis=0).astype(np.float64)
    hi = np.max([a.max(axis=0) for a in arrays], axis=0).astype(np.float64)
    return n, mean, np.sqrt(sq / n), lo, hi


def constant_mask(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(C,) bool: channels whose training range ``lo``..``hi`` is at most a millionth of their level (or 1): constant
    as far as float32, the model's input, can tell (the screening's rule; the normalisation tests the std, so a rare
    blip on a flat level is constant there too)."""
    return np.asarray((hi - lo) <= 1e-6 * np.maximum(1.0, np.maximum(np.abs(lo), np.abs(hi))))


def fit_normalisation(
    series: Sequence[np.ndarray], names: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std (C,) float64 over training arrays (T, C); a channel whose std is at most a millionth
    of its level (constant as far as float32 tells, or a rare blip on a flat level) gets std max(1, its range), so
    its normalised values stay within +-1 whatever its level: a counter at 1.5e9 is not scaled by 1 (a warning names
    it: ``names`` (C,), else its index)."""
    _, mean, std, lo, hi = column_stats(series)
    tiny = std <= 1e-6 * np.maximum(1.0, np.abs(mean))  # a rare blip on a flat level stays "constant", std 1
    if tiny.any():
        which = [(names[i] if names else f"#{i}", lo[i], hi[i]) for i in np.flatnonzero(tiny)]
        log.warning("%s constant in the training data; std set to 1 (to its range where it varies)", ", ".join(
            repr(n) if a == b else f"{n!r} (varies only {b - a:.3g} around {a:.7g}: below what float32 resolves at "
            "that level)" for n, a, b in which) + (" is" if len(which) == 1 else " are"))
    std = np.where(tiny, np.maximum(1.0, hi - lo), std)
    return mean, std


def normalise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(x - mean) / std`` over the last axis (C); float32 (computed in float32: no float64 copy of ``x``)."""
    return (np.asarray(x, dtype=np.float32) - np.asarray(mean, np.float32)) * np.asarray(
        1.0 / np.asarray(std, np.float64), np.float32
    )


def denormalise(z: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Inverse of :func:`normalise`; float32."""
    return (z * std + mean).astype(np.float32)
