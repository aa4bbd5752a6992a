"""The files plants export: decimal comma, encodings (BOM, cp1252), .xlsx/.parquet, naive local time across
DST, column names in any case, warnings that name columns; trainer and replay read them the same way."""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from edge_runtime.pipeline.timestamps import local_column_seconds
from edge_runtime.tools.replay import ReplayError, read_recording
from trainer.data import DataError, ReadOptions, fit_normalisation, load_paths, parse_rows, read_options

BERLIN = ZoneInfo("Europe/Berlin")


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_decimal_comma_refused_with_a_hint_then_read(tmp_path: Path) -> None:
    f = write(tmp_path / "p.csv", "Zeit;Druck;Temp\n2026-01-01 00:00:00;37,510;-0,5\n2026-01-01 00:00:01;37,6;1\n")
    with pytest.raises(DataError, match=r"line 2, column 'Druck': not a number: '37,510' \(a decimal comma: use --decimal ,\)"):
        load_paths([f])
    (s,) = load_paths([f], opts=ReadOptions(decimal=","))
    assert s.channels == ["Druck", "Temp"]
    np.testing.assert_allclose(s.values, [[37.51, -0.5], [37.6, 1.0]], rtol=1e-6)


def test_decimal_commas_beside_a_text_column_are_named_not_taken_for_a_units_row(tmp_path: Path) -> None:
    """A status word (RUN) beside decimal-comma numbers looked like a units row ('5,129' is no number with '.'):
    the error must name the decimal comma, then, with --decimal ',', the text column."""
    f = write(tmp_path / "p.csv", "time;Druck;status\n2026-01-01 00:00:00;5,129;RUN\n2026-01-01 00:00:01;5,2;RUN\n")
    with pytest.raises(DataError, match=r"line 2, column 'Druck': not a number: '5,129' \(a decimal comma: use --decimal ,\)"):
        load_paths([f])
    with pytest.raises(DataError, match=r"column 'status': not a number: 'RUN'"):
        load_paths([f], opts=ReadOptions(decimal=","))


def test_cp1252_header_gets_a_one_line_hint_and_reads_with_encoding(tmp_path: Path) -> None:
    f = write(tmp_path / "w.csv", "time;T °C;p\n0;20,5;1\n1;21;1,5\n", encoding="cp1252")
    with pytest.raises(DataError) as err:
        load_paths([f], opts=ReadOptions(decimal=","))
    msg = str(err.value)
    assert "\n" not in msg and "not utf-8 text (line 1, byte 0xb0 ('°' in cp1252))" in msg
    assert "--encoding cp1252" in msg
    (s,) = load_paths([f], opts=ReadOptions(decimal=",", encoding="cp1252"))
    assert s.channels == ["T °C", "p"]


@pytest.mark.parametrize("codec", ["utf-8-sig", "utf-16"])
def test_byte_order_mark_chooses_the_encoding(tmp_path: Path, codec: str) -> None:
    f = write(tmp_path / "b.csv", "time,T °C\n0,1\n1,2\n", encoding=codec)
    (s,) = load_paths([f])
    assert s.channels == ["T °C"] and s.values[:, 0].tolist() == [1, 2]


def test_unknown_options_are_one_line_errors() -> None:
    with pytest.raises(DataError, match="--encoding 'nope': unknown encoding"):
        ReadOptions(encoding="nope").check()
    with pytest.raises(DataError, match="--timezone 'Mars/Base': unknown time zone"):
        ReadOptions(timezone="Mars/Base").check()


def test_xlsx_read_through_openpyxl(tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Timestamp", "Flow", "Status"])
    t0 = datetime(2026, 3, 1, 8, 0, 0)
    for i in range(5):
        ws.append([t0 + timedelta(seconds=10 * i), 1.5 * i, "ok"])
    f = tmp_path / "plant.xlsx"
    wb.save(f)
    (s,) = load_paths([f], exclude=["status"])
    assert s.channels == ["Flow"] and s.sample_period_s == pytest.approx(10.0)
    np.testing.assert_allclose(s.values[:, 0], [0, 1.5, 3, 4.5, 6])


def test_parquet_read_through_pyarrow(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    t = [datetime(2026, 3, 1) + timedelta(seconds=2 * i) for i in range(4)]
    f = tmp_path / "plant.parquet"
    pq.write_table(pa.table({"time": t, "a": [1.0, 2.0, 3.0, 4.0], "anomaly": [0, 0, 1, 0]}), f)
    (s,) = load_paths([f])
    assert s.channels == ["a"] and s.labels.tolist() == [0, 0, 1, 0] and s.sample_period_s == pytest.approx(2.0)


def test_typed_numbers_of_a_workbook_or_parquet_file_read_as_numbers_under_a_decimal_comma(tmp_path: Path) -> None:
    """A second read: under --decimal , (evaluate takes it from a model fitted on a German CSV) a workbook's typed
    number 39.74 became the text '39.74' and counted as a decimal point beside a text cell '1.234' (refused), and a
    parquet float 12.425 read as 12425. Typed numbers are numbers; text cells are read as the CSV reads them."""
    openpyxl = pytest.importorskip("openpyxl")
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["temp", "counter", "flow"])
    ws.append([39.74, "1.234", 12.425])
    ws.append([39.81, "2.345", 12.431])
    f = tmp_path / "g.xlsx"
    wb.save(f)
    (s,) = load_paths([f], opts=ReadOptions(decimal=","))
    np.testing.assert_allclose(s.values, [[39.74, 1234, 12.425], [39.81, 2345, 12.431]], rtol=1e-6)
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    g = tmp_path / "g.parquet"
    pq.write_table(pa.table({"flow": [12.425, 12.431], "n": [3, 4]}), g)
    (s,) = load_paths([g], opts=ReadOptions(decimal=","))
    np.testing.assert_allclose(s.values, [[12.425, 3], [12.431, 4]], rtol=1e-6)


def test_date_cells_of_a_workbook_are_dates_whatever_the_time_format_says(tmp_path: Path) -> None:
    """A trial: a model fitted on a CSV with --time-format '%d.%m.%Y %H:%M:%S' evaluated an .xlsx of real date cells:
    its times were lost without a word (fit: "not a number: '2024-10-20T08:00:00' (a text column?")."""
    openpyxl = pytest.importorskip("openpyxl")
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Zeit", "flow"])
    t0 = datetime(2024, 10, 20, 8, 0, 0)
    for i in range(5):
        ws.append([t0 + timedelta(seconds=2 * i), 1.0 + i])
    f = tmp_path / "d.xlsx"
    wb.save(f)
    opts = ReadOptions(time_format="%d.%m.%Y %H:%M:%S", keep_time=True)
    (s,) = load_paths([f], opts=opts)
    assert s.channels == ["flow"] and s.sample_period_s == pytest.approx(2.0)
    assert s.ts is not None and s.ts[0] == pytest.approx(datetime(2024, 10, 20, 8, 0, 0, tzinfo=ZoneInfo("UTC")).timestamp())


def test_missing_extra_is_refused_with_the_extra_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    real = importlib.import_module

    def no_openpyxl(name: str, *a: object) -> object:
        if name == "openpyxl":
            raise ModuleNotFoundError(name)
        return real(name, *a)

    monkeypatch.setattr(importlib, "import_module", no_openpyxl)
    f = tmp_path / "x.xlsx"
    f.write_bytes(b"PK")
    with pytest.raises(DataError, match=r"x\.xlsx: reading \.xlsx needs openpyxl: pip install 'edgewatch\[xlsx\]'"):
        load_paths([f])


# Europe/Berlin leaves summer time on 2026-10-25: 03:00 CEST -> 02:00 CET, so 02:00-02:59 happens twice.
FALL_BACK = [f"2026-10-25 {h}:{m}:00" for h, m in
             [("01", "30"), ("02", "00"), ("02", "30"), ("02", "00"), ("02", "30"), ("03", "00")]]


def test_naive_local_time_across_dst_fall_back_is_monotonic() -> None:
    t = local_column_seconds(FALL_BACK, BERLIN)
    assert np.diff(t).tolist() == [1800.0] * 5
    assert t[0] == datetime(2026, 10, 25, 1, 30, tzinfo=BERLIN).timestamp()
    assert local_column_seconds(["2026-10-25T02:00:00+00:00"], BERLIN)[0] == datetime(
        2026, 10, 25, 2, tzinfo=ZoneInfo("UTC")).timestamp()  # explicit offsets are kept


def test_trainer_and_replay_read_dst_the_same_way(tmp_path: Path) -> None:
    f = write(tmp_path / "dst.csv", "time;x\n" + "".join(f"{t};{i},5\n" for i, t in enumerate(FALL_BACK)))
    with pytest.raises(ReplayError, match="timestamps go backwards"):
        read_recording(f, decimal=",")  # naive = UTC: the repeated hour goes backwards
    rec = read_recording(f, decimal=",", timezone="Europe/Berlin")
    np.testing.assert_array_equal(rec.ts, local_column_seconds(FALL_BACK, BERLIN))
    (s,) = load_paths([f], opts=ReadOptions(decimal=",", timezone="Europe/Berlin"))
    assert s.sample_period_s == pytest.approx(1800.0)
    np.testing.assert_allclose(s.values[:, 0], rec.values[:, 0])


GERMAN = "Zeit;Druck\n" + "".join(f"20.10.2024 00:{m:02d}:00;{m},5\n" for m in range(5))


def test_a_time_format_is_read_by_fit_and_replay_alike_and_stored_in_the_model(tmp_path: Path) -> None:
    """Times as a German export writes them: refused naming the format, read with it, and reused from the model."""
    f = write(tmp_path / "de.csv", GERMAN)
    hint = r"\(times\? give --time-format '%d\.%m\.%Y %H:%M:%S'\)"
    with pytest.raises(DataError, match=r"column 'Zeit': not a number: '20\.10\.2024 00:00:00' " + hint):
        load_paths([f], opts=ReadOptions(decimal=","))
    with pytest.raises(ReplayError, match=r"column 'Zeit' looks like times .*" + hint + r"; or --exclude Zeit"):
        read_recording(f, decimal=",")  # never replayed at --period, silently re-timed
    spaced = write(tmp_path / "spaced.csv", GERMAN.replace("Zeit;", "Time stamp;", 1))
    with pytest.raises(ReplayError, match=r"; or --exclude 'Time stamp' to replay"):  # as a shell takes it
        read_recording(spaced, decimal=",")
    fmt = "%d.%m.%Y %H:%M:%S"
    (s,) = load_paths([f], opts=ReadOptions(decimal=",", time_format=fmt))
    rec = read_recording(f, decimal=",", time_format=fmt)
    assert s.channels == ["Druck"] and s.sample_period_s == pytest.approx(60.0) and rec.channels == ("Druck",)
    assert rec.ts[0] == datetime(2024, 10, 20, tzinfo=ZoneInfo("UTC")).timestamp()
    stored = ReadOptions(decimal=",", time_format=fmt).preprocessing()
    assert stored["time_format"] == fmt and read_options(stored).time_format == fmt
    with pytest.raises(ReplayError, match=r"--time-format '%Y' does not read the first column 'Zeit'"):
        read_recording(f, decimal=",", time_format="%Y")


def test_a_bad_time_format_is_a_usage_error_and_a_named_time_column_gets_the_hint(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"--time-format 'dd\.mm\.yyyy' has no % directive") as exc:
        read_options({}, time_format="dd.mm.yyyy")
    assert exc.value.exit_code == 2
    f = write(tmp_path / "t.csv", "timestamp;x\n" + "".join(f"10/2{i}/2024 2:05 PM;{i}\n" for i in range(3)))
    with pytest.raises(DataError, match=r"line 2, column 'timestamp': bad timestamp: not a number or ISO 8601 time: "
                       r"'10/20/2024 2:05 PM' \(times\? give --time-format '%m/%d/%Y %I:%M %p'\)"):
        load_paths([f])
    (s,) = load_paths([f], opts=ReadOptions(time_format="%m/%d/%Y %I:%M %p"))
    assert s.sample_period_s == pytest.approx(86400.0)


def test_a_time_in_the_spring_gap_is_named_when_the_column_goes_backwards(tmp_path: Path) -> None:
    """2024-03-31 in Europe/Berlin: 02:00-02:59 does not exist; a logger on UTC+1 all year writes it."""
    f = write(tmp_path / "gap.csv", "time;x\n31.03.2024 01:30;1\n31.03.2024 02:30;2\n31.03.2024 03:10;3\n")
    said = r"'31\.03\.2024 02:30' does not exist in Europe/Berlin \(the clocks skip that hour when DST starts\)"
    opts = {"timezone": "Europe/Berlin", "time_format": "%d.%m.%Y %H:%M"}
    with pytest.raises(DataError, match=r"line 4, column 'time': timestamps go backwards .*" + said):
        load_paths([f], opts=ReadOptions(**opts))
    with pytest.raises(ReplayError, match=r"line 4, column 'time': timestamps go backwards .*" + said):
        read_recording(f, **opts)


def test_replay_hints_at_encoding_and_decimal(tmp_path: Path) -> None:
    f = write(tmp_path / "w.csv", "time;T °C\n0;20,5\n", encoding="cp1252")
    with pytest.raises(ReplayError, match=r"not utf-8 text .*--encoding cp1252"):
        read_recording(f)
    with pytest.raises(ReplayError, match="use --decimal ,"):
        read_recording(f, encoding="cp1252", channels=["t °c"])
    assert read_recording(f, encoding="cp1252", decimal=",").channels == ("T °C",)
    with pytest.raises(ReplayError, match=r"x\.xlsx: replay reads CSV; save it as CSV first"):
        read_recording(tmp_path / "x.xlsx")


def test_column_names_match_ignoring_case_and_a_miss_suggests(tmp_path: Path) -> None:
    f = write(tmp_path / "c.csv", "Time,Temp,Status,Label\n0,1,ok,0\n1,2,ok,1\n")
    (s,) = load_paths([f], exclude=["status"], label_column="label")
    assert s.channels == ["Temp"] and s.labels.tolist() == [0, 1]
    (s,) = load_paths([f], channels=["temp"])
    assert s.channels == ["temp"]
    with pytest.raises(DataError, match=r"column 'Tmp' not found \(did you mean 'Temp'\?\)"):
        load_paths([f], channels=["Tmp"])
    with pytest.raises(DataError, match=r"not a number: 'ok' \(a text column\? .*\); --exclude 'Stats' matches no "
                       r"column here \(did you mean 'Status'\?\)"):
        load_paths([f], exclude=["Stats"])
    with pytest.raises(DataError, match=r"--exclude names unknown column\(s\) Labl .*\(did you mean 'Label'\?\)"):
        load_paths([f], exclude=["Status", "Labl"])


def test_constant_channel_warning_names_the_column(caplog: pytest.LogCaptureFixture) -> None:
    x = np.stack([np.arange(100.0), np.full(100, 7.0)], axis=1)
    with caplog.at_level(logging.WARNING):
        _, std = fit_normalisation([x], ["flow", "setpoint"])
    assert std[1] == 1.0
    assert "'setpoint' is constant in the training data" in caplog.text and "[1]" not in caplog.text


def test_stored_read_options_are_reused_and_overridable() -> None:
    stored = {"fill": "ffill", "decimal": ",", "encoding": "cp1252", "timezone": "Europe/Berlin", "split": "time"}
    assert read_options(stored) == ReadOptions(fill="ffill", decimal=",", encoding="cp1252", timezone="Europe/Berlin")
    assert read_options(stored, decimal=".", fill="none") == ReadOptions(
        decimal=".", encoding="cp1252", timezone="Europe/Berlin")
    assert read_options({}).preprocessing() == {"fill": None, "decimal": ".", "encoding": None, "timezone": None,
                                                "time_format": None, "state_column": None, "time_column": None}


def test_a_bad_stored_read_option_is_the_models_not_the_users() -> None:
    """A stored time zone this machine does not know: a data error naming the stored value (not exit 2 for an
    option the user never gave); the user's own option overrides it; a bad given option stays a usage error."""
    stored = {"timezone": "Mars/Olympus_Mons"}
    with pytest.raises(DataError, match=r"the model's stored reading options .* --timezone 'Mars/Olympus_Mons'") as err:
        read_options(stored)
    assert err.value.exit_code == 65
    assert read_options(stored, timezone="UTC").timezone == "UTC"
    with pytest.raises(DataError) as given:
        read_options({}, timezone="Mars/Olympus_Mons")
    assert given.value.exit_code == 2 and "stored" not in str(given.value)


@pytest.mark.parametrize(
    ("timezone", "hint"),
    [("Europe/Berlin", "'2026-03-29 02:59' does not exist in Europe/Berlin (the clocks skip that hour when DST "
                       "starts): are the times in another zone, or in UTC?"),
     (None, "sort the rows by time; naive local times across a DST change: --timezone")],
)
def test_times_going_backwards_say_what_to_check(tmp_path: Path, timezone: str | None, hint: str) -> None:
    # 2026-03-29 02:xx does not exist in Berlin (clocks jump 02:00 -> 03:00): read there, 03:00 is before 02:59
    rows = "02:58,1\n02:59,2\n03:00,3\n" if timezone else "02:58,1\n02:59,2\n02:00,3\n"
    f = write(tmp_path / "t.csv", "time,a\n" + "".join(f"2026-03-29 {r}" for r in rows.splitlines(keepends=True)))
    with pytest.raises(DataError) as exc:
        load_paths([f], opts=ReadOptions(timezone=timezone))
    assert "t.csv: line 4, column 'time': timestamps go backwards" in str(exc.value)
    assert str(exc.value).endswith("out_of_order): " + hint)


@pytest.mark.parametrize("name", ["fake.npy", "fake.npz"])
def test_a_file_that_is_not_numpy_says_so(tmp_path: Path, name: str) -> None:
    f = write(tmp_path / name, "timestamp,a\n1,2\n")
    with pytest.raises(DataError, match=rf"{name}: not a \.np[yz] .*: it does not start with numpy's header$"):
        load_paths([f])
    good = tmp_path / "good.npy"
    np.save(good, np.ones((20, 2)))
    (s,) = load_paths([good])
    assert s.values.shape == (20, 2)


def test_a_file_given_twice_is_read_once_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d = tmp_path / "data"
    d.mkdir()
    a = write(d / "a.csv", "x\n" + "1\n" * 20)
    write(d / "b.csv", "x\n" + "2\n" * 20)
    with caplog.at_level(logging.WARNING):
        series = load_paths([a, d, str(a)])
    assert [Path(s.name).name for s in series] == ["a.csv", "b.csv"]
    assert caplog.text.count("given twice: read once") == 2


@pytest.mark.parametrize(("spec", "rows"), [("400", (0, 400)), (":400", (0, 400)), ("400:", (400, None)),
                                            ("10:20", (10, 20)), (None, None)])
def test_rows_spec(spec: str | None, rows: tuple[int, int | None] | None) -> None:
    assert parse_rows(spec) == rows


@pytest.mark.parametrize(("spec", "why"), [("abc", "give N"), ("5:5", "START < END"), ("-3:", "START < END"),
                                           ("0", "START < END")])
def test_rows_spec_refused_as_a_usage_error(spec: str, why: str) -> None:
    with pytest.raises(DataError, match=why) as exc:
        parse_rows(spec)
    assert exc.value.exit_code == 2


def test_rows_take_the_same_rows_from_csv_and_numpy_and_say_when_none_are_left(tmp_path: Path) -> None:
    f = write(tmp_path / "r.csv", "timestamp,a,b,anomaly\n\n" + "".join(
        f"{1.7e9 + i},{i},{-i},{int(i >= 7)}\n" for i in range(10)))  # a blank line is no data row
    (whole,) = load_paths([f])
    for part in ((0, 4), (3, 8), (6, None)):
        (s,) = load_paths([f], opts=ReadOptions(rows=part))
        np.testing.assert_array_equal(s.values, whole.values[slice(*part)])
        np.testing.assert_array_equal(s.labels, whole.labels[slice(*part)])
    np.savez(tmp_path / "r.npz", values=whole.values, labels=whole.labels)
    np.save(tmp_path / "r.npy", whole.values)
    for name in ("r.npz", "r.npy"):
        (s,) = load_paths([tmp_path / name], opts=ReadOptions(rows=(3, 8)))
        np.testing.assert_array_equal(s.values, whole.values[3:8])
    with pytest.raises(DataError, match=r"r\.csv: --rows 12: holds no data rows: the file ends before data row 12"):
        load_paths([f], opts=ReadOptions(rows=(12, None)))
    with pytest.raises(DataError, match=r"r\.npy: --rows 12:20 holds no rows"):
        load_paths([tmp_path / "r.npy"], opts=ReadOptions(rows=(12, 20)))


@pytest.mark.parametrize("chunk", [2, 3, 4, 65_536])
@pytest.mark.parametrize(("cells", "opts"), [
    ([f"{(1_700_000_000 + i) * 1000}" for i in range(9)], {}),  # epoch ms: one unit for the column
    (FALL_BACK + ["2026-10-25 03:30:00"], {"timezone": "Europe/Berlin"}),  # the repeated hour across chunk edges
    ([f"25.10.2026 {c[11:16]}" for c in FALL_BACK], {"timezone": "Europe/Berlin", "time_format": "%d.%m.%Y %H:%M"}),
])
def test_kept_times_are_the_whole_column_read_in_chunks(tmp_path: Path, monkeypatch, chunk: int, cells: list[str],
                                                        opts: dict) -> None:
    """The plot's time axis was every cell's text (~60 bytes a row) read at the end; it is now the order check's
    own times, 8 bytes a row, and the same as reading the column whole."""
    import trainer.time_order

    monkeypatch.setattr(trainer.time_order, "CHUNK", chunk)
    f = write(tmp_path / "t.csv", "time;x\n" + "".join(f"{c};{i}\n" for i, c in enumerate(cells)))
    (s,) = load_paths([f], opts=ReadOptions(keep_time=True, **opts))
    tz = ZoneInfo(opts["timezone"]) if "timezone" in opts else None
    np.testing.assert_array_equal(s.ts, local_column_seconds(cells, tz, opts.get("time_format")))
    assert np.all(np.diff(s.ts) > 0)


def test_fit_and_replay_find_the_same_time_column(tmp_path: Path) -> None:
    """replay knew fewer names than fit (date_time, time_stamp): it stamped such a file now, 1 s apart."""
    for name in ("date_time", "time_stamp", "Timestamp"):
        f = write(tmp_path / f"{name}.csv", f"a,{name}\n" + "".join(f"{i},{1.7e9 + 10 * i}\n" for i in range(5)))
        (s,) = load_paths([f])
        rec = read_recording(f)
        assert s.time_column == name and s.sample_period_s == 10.0 and s.channels == ["a"]
        assert rec.ts is not None and np.diff(rec.ts).tolist() == [10.0] * 4 and rec.channels == ("a",)


def test_a_time_format_with_an_offset_is_accepted_and_hinted(tmp_path: Path) -> None:
    f = write(tmp_path / "o.csv", "timestamp;x\n" + "".join(f"20.10.2024 00:00:0{i} +0200;{i}\n" for i in range(5)))
    with pytest.raises(DataError, match=r"\(times\? give --time-format '%d\.%m\.%Y %H:%M:%S %z'\)"):
        load_paths([f])
    (s,) = load_paths([f], opts=ReadOptions(time_format="%d.%m.%Y %H:%M:%S %z", keep_time=True))
    assert s.ts[0] == datetime(2024, 10, 19, 22, tzinfo=ZoneInfo("UTC")).timestamp()  # +02:00 applied


def test_a_trailing_separator_is_no_column_and_an_unnamed_one_with_values_is_named(tmp_path: Path) -> None:
    f = write(tmp_path / "t.csv", "a;b;\n" + "".join(f"{i};{i * 2};\n" for i in range(5)))
    (s,) = load_paths([f])
    assert s.channels == ["a", "b"]
    g = write(tmp_path / "late.csv", "a;b;\n1;2;\n3;4;oops\n")
    with pytest.raises(DataError, match=r"line 3: 'oops' in column 3, which has no name in the header"):
        load_paths([g])
    h = write(tmp_path / "pandas.csv", ",a,b\n0,1.5,2\n1,1.6,2.1\n")
    with pytest.raises(DataError, match=r"column 1 has no name in the header \(its first value '0'\): name it, or "
                       r"keep it out with --exclude '' \(a pandas index\? write the file with index=False\)"):
        load_paths([h])
    (s,) = load_paths([h], exclude=[""])
    assert s.channels == ["a", "b"]


def test_thousands_dots_under_a_decimal_comma(tmp_path: Path) -> None:
    f = write(tmp_path / "k.csv", "a;b\n6.173,50;1\n1.234;2\n-1.000.000,25;3\n12,5;4\n")
    (s,) = load_paths([f], opts=ReadOptions(decimal=","))
    np.testing.assert_allclose(s.values[:, 0], [6173.5, 1234.0, -1000000.25, 12.5])
    assert read_recording(f, decimal=",").values[0, 0] == pytest.approx(6173.5)


@pytest.mark.parametrize(("head", "says"), [(b"PK\x03\x04rest", "a zip archive (an Excel .xlsx workbook?): name it .xlsx"),
                                           (b"PAR1rest", "a parquet file: name it .parquet"),
                                           (b"\x93NUMPY\x01\x00", "a numpy .npy array: name it .npy")])
def test_a_workbook_or_parquet_file_named_csv_says_what_it_is(tmp_path: Path, head: bytes, says: str) -> None:
    """The trial: an .xlsx named .csv got 'try --encoding cp1252', which led to a column named 'PK\x03\x04...'."""
    f = tmp_path / "plant.csv"
    f.write_bytes(head + bytes(range(256)))
    for read in (lambda: load_paths([f]), lambda: read_recording(f)):
        with pytest.raises((DataError, ReplayError, ValueError), match=re.escape(says)) as exc:
            read()
        assert "--encoding" not in str(exc.value) and getattr(exc.value, "exit_code", 65) == 65


def test_a_column_on_two_scales_under_a_decimal_comma_is_refused(tmp_path: Path) -> None:
    """The trial: flow written 0.997 and 1.007 in a file read with --decimal ,: 0.997 stayed 0.997 and 1.007 became
    1007, silently. A column with both a decimal point and thousands-only dots is refused, naming both lines."""
    f = write(tmp_path / "m.csv", "pressure;flow\n5,01;0.997\n5,02;1.007\n")
    with pytest.raises(DataError, match=r"column 'flow' mixes decimal marks under --decimal ,: line 2 '0.997' has a "
                       r"decimal point, line 3 '1.007' reads as 1007"):
        load_paths([f], opts=ReadOptions(decimal=","))
    with pytest.raises(ReplayError, match=r"column 'flow' mixes decimal marks"):
        read_recording(f, decimal=",")
    # one way per column is fine: points in one (read as written), commas and thousands dots in another
    g = write(tmp_path / "ok.csv", "a;b\n0.997;1.234\n1.5;6.173,5\n")
    (s,) = load_paths([g], opts=ReadOptions(decimal=","))
    np.testing.assert_allclose(s.values, [[0.997, 1234.0], [1.5, 6173.5]], rtol=1e-6)


def test_thousands_dots_beside_decimal_points_in_another_column_are_refused(tmp_path: Path) -> None:
    """A new user's messy export read with --decimal ,: flow written 12.425 (every cell three digits after the dot)
    became 12425 while the temperature beside it, 39.74, stayed 39.74, silently. A column that reads its dots as
    thousands marks and never writes a comma, in a file where another column writes decimal points, is refused."""
    f = write(tmp_path / "m.csv", "pressure;temp;flow\n5,01;39.74;12.425\n5,02;39.81;12.431\n")
    says = (r"column 'flow' reads line 2 '12.425' as 12425 under --decimal , \(dots as thousands marks; the column "
            r"writes no decimal comma\), while column 'temp' writes a decimal point \(line 2 '39.74'\)")
    with pytest.raises(DataError, match=says) as exc:
        load_paths([f], opts=ReadOptions(decimal=","))
    assert exc.value.exit_code == 65
    with pytest.raises(ReplayError, match=says):
        read_recording(f, decimal=",")
    # thousands dots are fine where the column also writes a comma, or where no column writes a decimal point
    for text, want in (("a;b\n0.5;1.234\n1.5;6.173,5\n", [[0.5, 1234.0], [1.5, 6173.5]]),
                       ("a;b\n5,5;1.234\n6,5;2.345\n", [[5.5, 1234.0], [6.5, 2345.0]])):
        g = write(tmp_path / "ok.csv", text)
        (s,) = load_paths([g], opts=ReadOptions(decimal=","))
        np.testing.assert_allclose(s.values, want, rtol=1e-6)
        np.testing.assert_allclose(read_recording(g, decimal=",").values, want, rtol=1e-6)


def test_rows_past_the_end_warn(tmp_path: Path, caplog) -> None:
    f = write(tmp_path / "r.csv", "a\n" + "".join(f"{i}\n" for i in range(10)))
    with caplog.at_level(logging.WARNING, logger="trainer.data"):
        (s,) = load_paths([f], opts=ReadOptions(rows=(4, 400)))
    assert len(s.values) == 6 and "--rows 4:400 reaches past the end of the file: 6 data rows read (rows 4..9)" \
        in caplog.text


def test_review_fixes_reading(tmp_path: Path) -> None:
    """A second read of the reading changes: each of these was wrong in the first version."""
    # a pandas index read with --channels (as evaluate reads with the model's): the columns picked, as before
    f = write(tmp_path / "p.csv", ",timestamp,a,b\n" + "".join(f"{i},{1.7e9 + i},{i % 3},{i % 5}\n" for i in range(9)))
    (s,) = load_paths([f], channels=["a", "b"])
    assert s.channels == ["a", "b"] and len(s.values) == 9
    # two trailing separators are no duplicate name
    (s,) = load_paths([write(tmp_path / "t.csv", "a;b;;\n1;2;;\n3;4;;\n")])
    assert s.channels == ["a", "b"]
    # a bad cell under a format given: no hint to give that format, the fix instead
    g = write(tmp_path / "g.csv", "timestamp;x\n20.10.2024 00:00:00;1\ngarbage;2\n")
    with pytest.raises(DataError, match=r"'garbage' does not match --time-format '%d\.%m\.%Y %H:%M:%S': fix or "
                       r"delete the row") as exc:
        load_paths([g], opts=ReadOptions(time_format="%d.%m.%Y %H:%M:%S"))
    assert "times?" not in str(exc.value)
    with pytest.raises(ReplayError, match=r"does not match --time-format .*: fix or delete the row"):
        read_recording(g, time_format="%d.%m.%Y %H:%M:%S")
    # a leading zero is no thousands group: 0.123 under --decimal , stays 0.123
    (s,) = load_paths([write(tmp_path / "z.csv", "a;b\n0.123;1\n-0.001;2\n1.000,5;3\n")], opts=ReadOptions(decimal=","))
    np.testing.assert_allclose(s.values[:, 0], [0.123, -0.001, 1000.5], rtol=1e-6)
    # --time-format iso over a model's stored format
    stored = ReadOptions(time_format="%d.%m.%Y").preprocessing()
    assert read_options(stored, time_format="iso").time_format is None
    assert read_options(stored).time_format == "%d.%m.%Y"


def test_a_zone_name_format_is_refused_saying_why() -> None:
    with pytest.raises(DataError, match=r"%Z \(a zone name\) is not applied by strptime; use %z") as exc:
        read_options({}, time_format="%d.%m.%Y %H:%M:%S %Z")
    assert exc.value.exit_code == 2
