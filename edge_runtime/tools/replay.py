"""``edgewatch replay FILE.csv --device NAME``: publish a recording to a sensor topic, paced by its timestamps.

Pure part: :func:`read_recording` parses a CSV (``,`` ``;`` or tab; encoding, decimal comma and time zone
of naive timestamps as the trainer reads them, by default as stored in ``--model``)
with a header and one time column (ISO 8601 date-time or an epoch number in s/ms/us/ns, one unit per column) into timestamps and
channel values; channels are the numeric columns minus the time and label columns. Missing cells are refused
unless a ``fill`` is given: ``ffill``/``interpolate``/``zero`` (:func:`edge_runtime.pipeline.health.fill_block`,
the trainer's own fill; by default the ``--model``'s stored one) or ``null`` (published as ``null``: the
daemon's sensor health carries the last value forward and counts the channel missing past its limit).
:func:`pacing_delays` gives the wait before each message. I/O part: :func:`publish_recording`.

No pandas; never imports torch, onnx or trainer.
"""

from __future__ import annotations

import csv
import io
import math
import shlex
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np

from edge_runtime.clierror import EXIT_DATAERR, EXIT_NOINPUT, EXIT_UNAVAILABLE, EXIT_USAGE, InputPath
from edge_runtime.pipeline.health import FILL_METHODS, fill_block
from edge_runtime.pipeline.timestamps import (
    TimestampError,
    check_time_format,
    dst_gap_note,
    local_column_seconds,
    parse_local,
    time_format_hint,
)
from edge_runtime.tools import textfile
from edge_runtime.tools.simulate import (
    FORMATS,
    MAX_INFLIGHT,
    InFlight,
    SimError,
    SimResult,
    broker_options,
    check_device_id,
    check_publish_options,
    connect_publisher,
    encode_payload,
    fail,
    model_metadata,
    stream_start,
    topic_prefix_option,
)
from edge_runtime.tools.units_row import UnitsRowError, units_row

REPLAY_FILLS = (*FILL_METHODS, "null")  # null: publish a missing value as null, for the edge to fill
DEFAULT_LABELS = ("anomaly", "changepoint", "label", "labels")


class ReplayError(SimError):
    """The recording or an option is unusable (one clear line naming file, line and column); by default a data
    error (an option: ``EXIT_USAGE``; a file that is not there: ``EXIT_NOINPUT``)."""

    exit_code = EXIT_DATAERR


@dataclass(frozen=True)
class Recording:
    """A parsed recording: ``ts`` (n,) float64 epoch s (None when the file has no time column),
    ``values`` (n, C) float32, ``channels`` (C,) names; ``skipped`` the columns left out as not numeric;
    ``duplicates`` rows that repeat the timestamp before them (the daemon drops them), the first at ``first_duplicate``
    (its line)."""

    ts: np.ndarray | None
    values: np.ndarray
    channels: tuple[str, ...]
    skipped: tuple[str, ...] = ()
    duplicates: int = 0
    first_duplicate: int = 0


def _is_number(cell: str, decimal: str = ".") -> bool:
    try:
        return math.isfinite(textfile.number(cell, decimal))
    except ValueError:
        return False


def _is_date(cell: str, decimal: str, time_format: str | None = None) -> bool:
    """A cell that is a date-time (read by ``time_format``, else ISO 8601), not a number."""
    if time_format is None and _is_number(cell, decimal):
        return False
    try:
        parse_local(cell, None, time_format)
    except TimestampError:
        return False
    return True


def _decimal_comma(path: Path, line: int, column: str, cell: str) -> ReplayError:
    """A cell written with a decimal comma in a file read with ``.``: one wording (``fit``'s) whether the channels
    were told from the data or given (``--model``, ``--channels``), with the file, line, column and the hint."""
    return ReplayError(f"{path}: line {line}, column {column!r}: not a number: {cell.strip()!r} "
                       "(a decimal comma: use --decimal ,)")


def read_recording(
    path: Path,
    *,
    time_column: str | None = None,
    label_columns: Sequence[str] = DEFAULT_LABELS,
    exclude: Sequence[str] = (),
    channels: Sequence[str] | None = None,
    decimal: str = ".",
    encoding: str | None = None,
    timezone: str | None = None,
    time_format: str | None = None,
    fill: str | None = None,
) -> Recording:
    """Parse ``path``; ``channels`` picks and orders columns (default: every numeric column left), matched
    ignoring case when the exact name is absent. ``decimal``, ``encoding`` (None: UTF-8 or the BOM's) and
    ``timezone`` of naive timestamps (None: UTC) and ``time_format`` of text ones (``strptime``; None: ISO 8601)
    are read as the trainer reads them (:mod:`.textfile`);
    ``fill`` (:data:`REPLAY_FILLS`, None: refuse) what a missing cell becomes."""
    if fill is not None and fill not in REPLAY_FILLS:
        raise ReplayError(f"--fill must be one of {', '.join(REPLAY_FILLS)}, got {fill!r}", EXIT_USAGE)
    path = Path(path)
    if path.suffix.lower() in (".xlsx", ".xlsm", ".parquet"):
        raise ReplayError(f"{path}: replay reads CSV; save it as CSV first ({path.suffix} is read by edgewatch-train)")
    try:
        textfile.check_decimal(decimal)
        tz = textfile.zone(timezone)
        if time_format is not None:
            check_time_format(time_format)
        fh, codec = textfile.open_text(path, textfile.check_encoding(encoding))
        with fh:
            text = fh.read()
    except OSError as exc:
        raise ReplayError(f"{path}: cannot read: {exc.strerror or exc}", EXIT_NOINPUT) from None
    except textfile.TextFileError as exc:
        raise ReplayError(str(exc), exc.exit_code) from None
    except TimestampError as exc:
        raise ReplayError(str(exc), EXIT_USAGE) from None
    except UnicodeDecodeError as exc:
        raise ReplayError(str(textfile.decode_error(path, codec, exc))) from None
    first = text.split("\n", 1)[0]
    if not first.strip():
        raise ReplayError(f"{path}: empty file or empty header line")
    separator = textfile.sniff_separator(first)
    reader = csv.reader(io.StringIO(text), delimiter=separator)
    header = [h.strip() for h in next(reader)]
    rows = [r for r in reader if any(c.strip() for c in r)]
    if not rows:
        raise ReplayError(f"{path}: no data rows after the header")
    lower = [h.lower() for h in header]
    named = [h for h in header if h]  # unnamed cells (trailing separators) are no names
    if len(set(named)) != len(named):
        raise ReplayError(f"{path}: duplicate column names in the header")
    if time_column is not None:
        t_idx: int | None = textfile.find_column(time_column, header)
        if t_idx is None:
            raise ReplayError(f"{path}: no time column {time_column!r}{textfile.did_you_mean(time_column, header)} "
                              f"(columns: {', '.join(header)})")
    else:
        t_idx = next((i for i, h in enumerate(lower) if h in textfile.TIME_COLUMNS), None)  # as fit finds it
    skip = {h.lower() for h in (*label_columns, *exclude)}
    first_line = 2
    if len(rows[0]) == len(header):  # a units row under the header (bar, degC, [mm/s]): not data
        cand = [textfile.find_column(c, header) for c in channels] if channels else [
            i for i, h in enumerate(header) if i != t_idx and h.lower() not in skip]
        try:
            found = units_row({header[i]: rows[0][i] for i in cand if i is not None}, decimal)
        except UnitsRowError as exc:
            raise ReplayError(f"{path}: line 2: {exc}") from None
        below = rows[1] if len(rows) > 1 and len(rows[1]) == len(header) else None
        if found and below is not None and any(  # numbers below (decimal commas too: refused with their hint below)
                _is_number(cell, decimal) or (decimal == "." and textfile.looks_like_decimal_comma(cell))
                for cell in (below[header.index(c)] for c in found)):
            rows, first_line = rows[1:], 3  # (channels are told by the first row's numbers: a text column is none)
    # (after the units row: its time cell, '-' or the time format, is no date)
    first_cell = next((r[0] for r in rows[:2] if r and r[0].strip()), "")
    if time_column is None and t_idx is None and _is_date(first_cell, decimal, time_format):
        t_idx = 0  # an unnamed timestamp (Zeitstempel, horodatage): a first column of dates, as fit reads it
    if t_idx is None and header[0].lower() not in skip:
        # times in a form not read by default (or not by the format given) would be re-timed at --period: refuse
        if time_format is not None and first_cell and not _is_number(first_cell, decimal):
            raise ReplayError(f"{path}: --time-format {time_format!r} does not read the first column {header[0]!r} "
                              f"({first_cell.strip()!r}){time_format_hint([first_cell])}", EXIT_DATAERR)
        hint = time_format_hint([r[0] for r in rows[:50] if r]) if time_format is None else ""
        if hint:
            raise ReplayError(f"{path}: column {header[0]!r} looks like times ({first_cell.strip()!r}) in a form "
                              f"replay reads only with their format{hint}; or --exclude {shlex.quote(header[0])} to replay at "
                              "--period", EXIT_DATAERR)  # 65, as fit: the data needs an option, as a decimal comma
    if channels:
        missing = [c for c in channels if textfile.find_column(c, header) is None]
        if missing:
            raise ReplayError(f"{path}: no column {missing[0]!r}{textfile.did_you_mean(missing[0], header)} "
                              f"(columns: {', '.join(header)})")
        ch_idx = [textfile.find_column(c, header) or 0 for c in channels]
    else:
        cand = [i for i, h in enumerate(header) if i != t_idx and h.lower() not in skip and h and i < len(rows[0])]
        at = {i: next((n for n, r in enumerate(rows[:100]) if i < len(r) and not textfile.is_missing(r[i])), None)
              for i in cand}  # the row of each column's first value
        seen = {i: None if n is None else rows[n][i] for i, n in at.items()}
        ch_idx = [i for i in cand if _is_number(seen[i] or "", decimal)]  # told by its first value
        for i in cand:
            cell, n = seen[i], at[i]
            if i not in ch_idx and cell is not None and n is not None and decimal == "." \
                    and textfile.looks_like_decimal_comma(cell):
                raise _decimal_comma(path, n + first_line, header[i], cell)
        if not ch_idx:
            raise ReplayError(f"{path}: no numeric channel columns (columns: {', '.join(header)})")
    values = np.empty((len(rows), len(ch_idx)), dtype=np.float32)
    ts: np.ndarray | None = None
    marks = textfile.DecimalMarks() if decimal == "," else None
    for n, row in enumerate(rows):
        line = n + first_line
        if len(row) != len(header):
            raise ReplayError(f"{path}: line {line}: {textfile.field_count_error(row, len(header), separator, 'cells')}")
        for j, i in enumerate(ch_idx):
            cell = row[i].strip()
            if textfile.is_missing(cell) and fill is not None:  # empty, NaN, NA, ...: a missing value, as fit reads it
                values[n, j] = np.nan
                continue
            try:
                v = textfile.number(cell, decimal)
            except ValueError:
                if decimal == "." and textfile.looks_like_decimal_comma(cell):
                    raise _decimal_comma(path, line, header[i], cell) from None
                what = f"missing value (use --fill {'|'.join(REPLAY_FILLS)})" if not cell \
                    else f"non-numeric value {cell!r}"  # (a NaN cell parses: refused as missing below)
                raise ReplayError(f"{path}: line {line}, column {header[i]!r}: {what}") from None
            if not math.isfinite(v):
                how = f" (a missing value: use --fill {'|'.join(REPLAY_FILLS)})" if textfile.is_missing(cell) else ""
                raise ReplayError(f"{path}: line {line}, column {header[i]!r}: non-finite value {cell!r}{how}")
            values[n, j] = v
            if marks is not None and ("." in cell or ("," in cell and j not in marks.comma)):
                try:
                    marks.see(j, cell, line)
                except ValueError as exc:
                    raise ReplayError(f"{path}: column {header[i]!r} {exc}") from None
    if marks is not None:
        try:
            marks.finish([header[i] for i in ch_idx])
        except ValueError as exc:
            raise ReplayError(f"{path}: {exc}") from None
    if t_idx is not None:
        cells = [row[t_idx] for row in rows]
        try:
            ts = local_column_seconds(cells, tz, time_format)
        except TimestampError as exc:
            n = exc.index or 0
            hint = "" if time_format else time_format_hint([cells[n]])
            raise ReplayError(f"{path}: line {n + first_line}, column {header[t_idx]!r}: bad timestamp: {exc.reason}"
                              + (hint or ": fix or delete the row (`edgewatch-train fit` refuses it too)")) from None
    if fill in FILL_METHODS and np.isnan(values).any():
        try:
            values = fill_block(values, fill).astype(np.float32)
        except ValueError as exc:  # "column j: column has no values at all"
            j = int(str(exc).split()[1].rstrip(":"))
            raise ReplayError(f"{path}: column {header[ch_idx[j]]!r}: no values at all to fill from") from None
    steps = np.diff(ts) if ts is not None else np.zeros(0)
    if np.any(steps < 0):
        i = int(np.argmax(steps < 0)) + 1
        cell, before = cells[i].strip(), cells[i - 1].strip()
        why = dst_gap_note(before, cell, tz, timezone, time_format)
        raise ReplayError(f"{path}: line {i + first_line}, column {header[t_idx or 0]!r}: timestamps go backwards ({cell!r} "
                          f"after {before!r})" + (f"; {why}" if why else "; sort the rows by time (the daemon drops "
                                                   "such samples as out_of_order; `edgewatch-train fit` refuses the file)"))
    same = np.flatnonzero(steps == 0)
    skipped = () if channels else tuple(h or f"(column {i + 1}, unnamed)" for i, h in enumerate(header)
                                        if i not in ch_idx and i != t_idx and h.lower() not in skip
                                        and (h or any(r[i].strip() for r in rows[:100] if i < len(r))))
    return Recording(ts, values, tuple(header[i] for i in ch_idx), skipped, int(same.size),
                     int(same[0]) + 1 + first_line if same.size else 0)


def pacing_delays(ts: np.ndarray, batch: int, speed: float) -> np.ndarray:
    """Offsets (m,) in s from the start at which each of the m = ceil(n / batch) messages is due.

    Message k carries samples ``k*batch ..``; it is due when its last sample's time has passed,
    scaled down by ``speed``.
    """
    n = ts.shape[0]
    last = np.minimum(np.arange(1, math.ceil(n / batch) + 1) * batch, n) - 1
    return (ts[last] - ts[0]) / speed


def publish_recording(
    client: Any,
    rec: Recording,
    topic: str,
    *,
    fmt: str = "single",
    batch: int = 1,
    qos: int = 1,
    speed: float = 1.0,
    fast: bool = False,
    period_s: float = 1.0,
    restamp: bool = False,
    stop: threading.Event | None = None,
    max_inflight: int = MAX_INFLIGHT,
    notify: Callable[[str], None] | None = None,
) -> SimResult:
    """Publish ``rec`` to ``topic`` (connected paho ``client``), paced by its timestamps / ``speed``; a lost
    connection is waited for (the client holds what is published meanwhile: :class:`InFlight`, ``notify``).

    A file without a time column is stamped ``period_s`` apart from now; ``restamp`` shifts the
    file's timestamps so the first is now (spacing kept). Either way, sent faster than real time the stream
    starts earlier, so that no sample is stamped ahead of the clock (:func:`stream_start`). At most ``max_inflight`` QoS 1 messages are
    unacknowledged at once; the result counts those the broker acknowledged.
    """
    if fmt not in FORMATS:
        raise ReplayError(f"unknown payload format {fmt!r}; use {', '.join(FORMATS)}", EXIT_USAGE)
    if batch < 1 or not speed > 0:
        raise ReplayError("--batch must be >= 1 and --speed > 0", EXIT_USAGE)
    n = rec.values.shape[0]
    now = time.time()
    if rec.ts is None:
        ts = stream_start(now, (n - 1) * period_s, 0.0 if fast else speed) + np.arange(n, dtype=np.float64) * period_s
    else:
        # restamped: spacing kept, never ahead of the clock when sent faster than recorded (the daemon refuses
        # timestamps beyond input.max_future_s): the first at now at real time, earlier the faster
        ts = rec.ts - rec.ts[0] + stream_start(now, float(rec.ts[-1] - rec.ts[0]), 0.0 if fast else speed) \
            if restamp else rec.ts
    due = pacing_delays(ts, batch, speed)
    res = SimResult(qos=qos, paced=not fast)
    inflight = InFlight(res, max_inflight, stop, connected=client.is_connected, notify=notify)
    began = time.monotonic()
    for k in range(due.shape[0]):
        if stop is not None and stop.is_set():
            break
        if not fast:
            delay = began + float(due[k]) - time.monotonic()
            if delay > 0:
                if stop is not None:
                    stop.wait(delay)
                else:
                    time.sleep(delay)
        lo, hi = k * batch, min(n, (k + 1) * batch)
        for payload in encode_payload(fmt, ts[lo:hi], rec.values[lo:hi], rec.channels):
            info = client.publish(topic, payload, qos=qos)
            res.messages += 1
            inflight.add(info)  # waits while max_inflight are unacknowledged (QoS 0: counts what paho dropped)
        res.samples += hi - lo
    inflight.finish()
    res.elapsed_s = time.monotonic() - began
    return res


@click.command("replay")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--device", required=True, help="Device id: the {device} level of the topic.")
@broker_options
@click.option("--speed", type=float, default=1.0, show_default=True,
              help="Time scale (10 = ten times faster than recorded).")
@click.option("--fast", is_flag=True, help="As fast as possible (timestamps unchanged). Can outrun the broker's queue "
              "for a subscriber that falls behind (Mosquitto drops past max_queued_messages, 1000 by default, and "
              "counts them in $SYS/broker/publish/messages/dropped): --speed N paces it.")
@click.option("--topic", "topic_template", default="sensors/{device}/data", show_default=True,
              help="Topic template.")
@topic_prefix_option
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="single", show_default=True,
              help="Payload format.")
@click.option("--batch", type=int, default=1, show_default=True, help="Samples per message for batch/csv.")
@click.option("--qos", type=click.IntRange(0, 2), default=1, show_default=True, help="MQTT QoS.")
@click.option("--time-column", help="Name of the time column.  [default: the first named timestamp, time, datetime, date, ts, date_time or "
              "time_stamp, as fit finds it; else a first column of dates]")
@click.option("--label-column", "labels", multiple=True, help="Label column(s) kept out of the channels "
              "(default: anomaly, changepoint, label).")
@click.option("--exclude", multiple=True, help="More columns kept out of the channels. Repeatable.")
@click.option("--channels", help="Comma-separated columns to publish, in this order.")
@click.option("--model", type=InputPath(dir_okay=False, path_type=Path),
              help="Publish the columns this edgewatch model expects, in its order.")
@click.option("--period", type=float, default=1.0, show_default=True,
              help="Sample period, s, for a file without a time column.")
@click.option("--restamp", is_flag=True, help="Shift timestamps so the first sample is now (earlier with --speed "
              "or --fast, so that none is ahead of the clock).")
@click.option("--decimal", type=click.Choice([".", ","]), help="Decimal mark (, for 37,5).  [default: the "
              "--model's, else .]")
@click.option("--encoding", metavar="CODEC", help="Text encoding, e.g. cp1252.  [default: the --model's, else "
              "UTF-8 or what a byte-order mark says]")
@click.option("--timezone", metavar="ZONE", help="IANA time zone of naive timestamps, e.g. Europe/Berlin.  "
              "[default: the --model's, else UTC]")
@click.option("--time-format", metavar="FORMAT", help="How text timestamps are written, as strptime codes, e.g. "
              "'%d.%m.%Y %H:%M:%S'; iso: ISO 8601 or epoch numbers.  [default: the --model's, else iso]")
@click.option("--fill", type=click.Choice(REPLAY_FILLS), help="What a missing cell becomes: ffill (the last value), "
              "interpolate, zero (as the trainer fills), or null (sent as null: the daemon carries the last value "
              "forward and reports the channel missing past its limit).  [default: the --model's fill, else a "
              "missing cell is an error]")
def replay_command(
    file: Path, device: str, broker: str, speed: float, fast: bool, topic_template: str, topic_prefix: str, fmt: str,
    batch: int, qos: int, time_column: str | None, labels: tuple[str, ...], exclude: tuple[str, ...],
    channels: str | None, model: Path | None, period: float, restamp: bool, decimal: str | None,
    encoding: str | None, timezone: str | None, time_format: str | None, fill: str | None, username: str,
    password_file: str, ca_file: str,
) -> None:
    """Replay a CSV recording (e.g. a SKAB file) to sensors/DEVICE/data (under --topic-prefix, if given)."""
    try:
        topic_template = check_publish_options(broker, topic_template, speed, topic_prefix)
        check_device_id("--device", device)
        meta = model_metadata(model) if model else None
        picked = meta.channels if meta else (
            [c.strip() for c in channels.split(",") if c.strip()] if channels else None
        )
        stored = meta.preprocessing if meta else {}  # how the model's training files were read
        rec = read_recording(
            file, time_column=time_column or stored.get("time_column"), label_columns=labels or DEFAULT_LABELS,
            exclude=exclude,
            channels=picked, decimal=decimal or stored.get("decimal") or ".",
            encoding=encoding or stored.get("encoding"), timezone=timezone or stored.get("timezone"),
            time_format=None if time_format == "iso" else time_format or stored.get("time_format"),
            fill=fill or (stored.get("fill") if stored.get("fill") in FILL_METHODS else None),
        )
        if batch < 1 or not (math.isfinite(period) and period > 0):
            raise ReplayError("--batch must be >= 1 and --period > 0", EXIT_USAGE)
        topic = topic_template.replace("{device}", device)
        client = connect_publisher(broker, f"edgewatch-replay-{device}", username, password_file, ca_file)
        click.echo(
            f"replaying {rec.values.shape[0]} samples x {len(rec.channels)} channels "
            f"({', '.join(rec.channels)}) to {topic} "
            + ("as fast as possible" if fast else f"at {speed:g}x")
            + (f"; left out (not numeric, or no name in the header): {', '.join(rec.skipped)} (--channels picks "
               "columns)" if rec.skipped else "")
            + ("" if rec.ts is not None else f"; no time column: stamped now, one sample every --period {period:g} s "
               "(--time-column names one)"),
            err=True,
        )
        if rec.duplicates:
            click.echo(f"edgewatch replay: warning: {file}: {rec.duplicates:,} row(s) repeat the timestamp of the row "
                       f"before (first at line {rec.first_duplicate}): the daemon drops them as duplicate", err=True)
        try:
            res = publish_recording(
                client, rec, topic, fmt=fmt, batch=batch, qos=qos, speed=speed, fast=fast,
                period_s=period, restamp=restamp, notify=lambda m: click.echo(f"edgewatch replay: {m}", err=True),
            )
        finally:
            client.disconnect()
            client.loop_stop()
    except SimError as exc:
        fail("replay", str(exc), exc.exit_code)
        return
    click.echo(res.summary(), err=True)
    lost = res.unacknowledged()
    if lost:
        fail("replay", lost, EXIT_UNAVAILABLE)
