"""edgewatch replay: CSV parsing and pacing (pure) and replay to a real Mosquitto."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edge_runtime.pipeline.decode import Decoder
from edge_runtime.tools.replay import ReplayError, pacing_delays, read_recording, replay_command
from tests.conftest import SKAB_DIR
from tests.edge_runtime.mqtt_helpers import Collector, wait_until

SKAB_LIKE = (
    "datetime;Accelerometer1RMS;Current;Pressure;anomaly;changepoint\n"
    "2020-03-09 10:14:33;0.0265878;1.3302;0.054711;0.0;0.0\n"
    "2020-03-09 10:14:34;0.0261697;1.35399;0.382638;0.0;0.0\n"
    "2020-03-09 10:14:36;0.0270000;1.40000;0.100000;1.0;1.0\n"
)


def write(tmp_path: Path, text: str, name: str = "rec.csv", bom: bool = False) -> Path:
    p = tmp_path / name
    p.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return p


@pytest.mark.parametrize("bom", [False, True])
def test_reads_semicolon_csv_with_datetime_and_label_columns(tmp_path: Path, bom: bool) -> None:
    rec = read_recording(write(tmp_path, SKAB_LIKE, bom=bom))
    assert rec.channels == ("Accelerometer1RMS", "Current", "Pressure")
    assert rec.values.shape == (3, 3) and rec.values.dtype == np.float32
    assert rec.values[1, 1] == pytest.approx(1.35399)
    assert rec.ts is not None
    assert rec.ts[0] == pytest.approx(1583748873.0)  # 2020-03-09 10:14:33 UTC
    np.testing.assert_allclose(np.diff(rec.ts), [1.0, 2.0])


def test_reads_comma_csv_with_epoch_ms_and_picks_channels(tmp_path: Path) -> None:
    text = "timestamp,a,b,c\n1700000000000,1,2,3\n1700000000500,4,5,6\n"
    rec = read_recording(write(tmp_path, text), channels=["c", "a"], exclude=("b",))
    assert rec.channels == ("c", "a")
    np.testing.assert_array_equal(rec.values, [[3, 1], [6, 4]])
    np.testing.assert_allclose(rec.ts, [1.7e9, 1.7e9 + 0.5])


@pytest.mark.parametrize("scale", [1, 10**3, 10**6, 10**9])
def test_epoch_column_in_s_ms_us_ns(tmp_path: Path, scale: int) -> None:
    """Microseconds were read as milliseconds (1000x too far apart); every unit now gives 0.25 s steps."""
    rows = "".join(f"{(1_700_000_000 * 4 + k) * scale // 4},{k}\n" for k in range(3))
    rec = read_recording(write(tmp_path, "ts,x\n" + rows))
    assert rec.ts is not None
    np.testing.assert_allclose(rec.ts, [1.7e9, 1.7e9 + 0.25, 1.7e9 + 0.5])


@pytest.mark.parametrize("units", [False, True])
def test_an_unnamed_first_column_of_dates_is_the_time_as_fit_reads_it(tmp_path: Path, units: bool) -> None:
    text = "Zeitstempel;Druck\n" + (";bar\n" if units else "") + "".join(
        f"2026-03-01 00:{m:02d}:00;{m},5\n" for m in range(3))
    rec = read_recording(write(tmp_path, text), decimal=",")
    assert rec.channels == ("Druck",)
    np.testing.assert_allclose(rec.ts - rec.ts[0], [0, 60, 120])  # a minute apart, not the 1 s --period


def test_exclude_and_no_time_column(tmp_path: Path) -> None:
    rec = read_recording(write(tmp_path, "x\ty\tid\n1\t2\t7\n3\t4\t8\n"), exclude=("id",))
    assert rec.ts is None and rec.channels == ("x", "y")


@pytest.mark.parametrize(
    ("text", "msg"),
    [
        ("datetime;a;b\n2020-01-01 00:00:00;1;2\n2020-01-01 00:00:01;x;2\n", "line 3, column 'a': non-numeric value 'x'"),
        ("datetime;a;b\n2020-01-01 00:00:00;1;2\n2020-01-01 00:00:01;;2\n", "line 3, column 'a': missing value"),
        ("datetime;a\n2020-01-01 00:00:01;1\n2020-01-01 00:00:00;2\n",
         "line 3, column 'datetime': timestamps go backwards ('2020-01-01 00:00:00' after '2020-01-01 00:00:01'); "
         "sort the rows by time"),
        ("datetime;a\nyesterday;1\n", "line 2, column 'datetime': bad timestamp"),
        ("datetime;a;b\n2020-01-01 00:00:00;1\n", "line 2: 2 cells, the header has 3"),
        ("datetime;a;b\n2020-01-01 00:00:00;1;2\n2020-01-01 00:00:01,3,4\n",
         "line 3: 1 cell, the header has 3: this line is separated by ',' where the header uses ';'"),
        ("datetime;a\n", "no data rows"),
        ("", "empty file"),
        ("datetime;name\n2020-01-01 00:00:00;pump\n", "no numeric channel columns"),
    ],
)
def test_bad_files_name_line_and_column(tmp_path: Path, text: str, msg: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ReplayError) as err:
        read_recording(path)
    assert msg in str(err.value) and str(path) in str(err.value)


def test_a_nan_cell_is_a_missing_value_as_fit_reads_it(tmp_path: Path) -> None:
    path = write(tmp_path, "datetime;a;b\n2020-01-01 00:00:00;1;NaN\n2020-01-01 00:00:01;2;3\n")
    with pytest.raises(ReplayError, match=r"column 'b': non-finite value 'NaN' \(a missing value: use --fill"):
        read_recording(path)
    assert np.isnan(read_recording(path, fill="null").values[0, 1])
    np.testing.assert_array_equal(read_recording(path, fill="ffill").values[:, 1], [3.0, 3.0])  # back-filled start


def test_columns_left_out_as_not_numeric_are_named(tmp_path: Path) -> None:
    rec = read_recording(write(tmp_path, "x,name,y\n1,pump,2\n3,pump,4\n"))
    assert rec.channels == ("x", "y") and rec.skipped == ("name",)
    # a trailing delimiter (an unnamed empty column), a sparse text column, a numeric one starting empty
    rec = read_recording(write(tmp_path, "x;note;y;\n1;;;\n3;valve opened;4;\n5;;6;\n"), fill="null")
    assert rec.channels == ("x", "y") and rec.skipped == ("note",)  # the empty trailing column is no loss: not named
    assert np.isnan(rec.values[0, 1]) and rec.values[1, 1] == 4.0
    rec = read_recording(write(tmp_path, "x;;y\n1;a;2\n3;b;4\n"))
    assert rec.skipped == ("(column 2, unnamed)",)  # one with text in it is
    rec = read_recording(write(tmp_path, "x,y\n1,NA\n2,n/a\n3,4\n"), fill="null")  # fit's missing cells too
    assert rec.channels == ("x", "y") and np.isnan(rec.values[:2, 1]).all()


def test_missing_requested_column(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="no column 'Temperature'"):
        read_recording(write(tmp_path, SKAB_LIKE), channels=["Temperature"])


def test_pacing_scales_with_speed_and_batches() -> None:
    ts = np.array([0.0, 1.0, 2.0, 4.0, 5.0])
    np.testing.assert_allclose(pacing_delays(ts, 1, 1.0), [0, 1, 2, 4, 5])
    np.testing.assert_allclose(pacing_delays(ts, 1, 10.0), [0, 0.1, 0.2, 0.4, 0.5])
    np.testing.assert_allclose(pacing_delays(ts, 2, 1.0), [1, 4, 5])  # due when a batch's last sample is


def test_replay_fast_publishes_every_row_in_order(mosquitto, tmp_path: Path) -> None:
    path = write(tmp_path, SKAB_LIKE)
    col = Collector(mosquitto.port, ["sensors/+/data"])
    try:
        res = CliRunner().invoke(replay_command, [str(path), "--device", "valve1", "--broker", mosquitto.url, "--fast"])
        assert res.exit_code == 0, res.output
        wait_until(lambda: len(col.messages) >= 3, 10, "3 messages")
        dec = Decoder(["Accelerometer1RMS", "Current", "Pressure"], max_future_s=0)  # arrival 0 below
        samples = [dec.decode(p, 0.0) for t, p, _ in col.messages if t == "sensors/valve1/data"]
        ts = np.concatenate([s.ts for s in samples])
        np.testing.assert_allclose(ts, read_recording(path).ts)
        np.testing.assert_allclose(samples[2].values, [[0.027, 1.4, 0.1]], rtol=1e-6)
    finally:
        col.close()


def test_replay_topic_prefix_publishes_under_it_as_the_daemon_reads(mosquitto, tmp_path: Path) -> None:
    """A daemon run with topics.prefix site-1 reads site-1/sensors/{device}/data: replay --topic-prefix sends there."""
    path = write(tmp_path, SKAB_LIKE)
    col = Collector(mosquitto.port, ["#"])
    try:
        res = CliRunner().invoke(replay_command, [str(path), "--device", "valve1", "--broker", mosquitto.url, "--fast",
                                                  "--topic-prefix", "/site-1/"])
        assert res.exit_code == 0, res.output
        assert "to site-1/sensors/valve1/data" in res.output
        wait_until(lambda: len(col.messages) >= 3, 10, "3 messages")
        assert {t for t, _, _ in col.messages} == {"site-1/sensors/valve1/data"}
    finally:
        col.close()


def test_replay_keyed_batches_with_restamp(mosquitto, tmp_path: Path) -> None:
    path = write(tmp_path, SKAB_LIKE)
    col = Collector(mosquitto.port, ["sensors/+/data"])
    try:
        res = CliRunner().invoke(replay_command, [str(path), "--device", "v", "--broker", mosquitto.url, "--fast",
                                                  "--format", "batch", "--batch", "2", "--restamp"])
        assert res.exit_code == 0, res.output
        wait_until(lambda: len(col.messages) >= 2, 10, "2 batches")
        dec = Decoder(["Accelerometer1RMS", "Current", "Pressure"], max_future_s=0)  # arrival 0 below
        ts = np.concatenate([dec.decode(p, 0.0).ts for _, p, _ in col.messages])
        np.testing.assert_allclose(np.diff(ts), [1.0, 2.0], atol=1e-5)
        assert ts[0] > 1.7e9  # shifted to now
    finally:
        col.close()


def test_a_topic_that_already_carries_the_prefix_is_warned_about(tmp_path: Path) -> None:
    good = write(tmp_path, SKAB_LIKE, "good.csv")
    res = CliRunner().invoke(replay_command, [str(good), "--device", "d", "--fast", "--topic-prefix", "site-1",
                                              "--topic", "site-1/sensors/{device}/data", "--broker", "mqtt://127.0.0.1:1"])
    assert "already starts with --topic-prefix 'site-1': publishing to 'site-1/site-1/sensors/{device}/data'" in res.output


@pytest.mark.parametrize(
    ("args", "msg", "code"),
    [
        (["nosuch.csv", "--device", "d"], "cannot read", 66),
        (["{bad}", "--device", "d"], "non-numeric value", 65),
        (["{good}", "--device", "d", "--speed", "0", "--fast"], "--speed must be > 0", 2),
        (["{good}", "--device", "d", "--speed", "5", "--fast"], "give --fast or --speed N, not both", 2),
        (["{good}", "--device", "d", "--channels", "Nope"], "no column 'Nope'", 65),
        (["{good}", "--device", "a/b", "--fast"], "--device 'a/b': a device id is one topic level", 2),
        (["{good}", "--device", "x+", "--fast"], "--device 'x+': a device id is one topic level", 2),
        (["{good}", "--device", "", "--fast"], "--device '': a device id is one topic level", 2),
        (["{good}", "--device", "d", "--fast", "--period", "0"], "--period > 0", 2),  # before connecting
        (["{good}", "--device", "d", "--fast", "--batch", "0", "--format", "batch"], "--batch must be >= 1", 2),
        (["{comma}", "--device", "d", "--fast"], "column 'b': not a number: '2,5' (a decimal comma: use --decimal ,)",
         65),
        (["{good}", "--device", "d", "--fast", "--time-format", "%Q"], "--time-format '%Q' is no strptime format", 2),
        (["{good}", "--device", "d", "--fast", "--topic-prefix", "site/+"],
         "--topic-prefix: 'site/+' must be a topic level (or levels) without wildcards", 2),
    ],
)
def test_cli_errors_are_one_line_and_their_exit_code(tmp_path: Path, args: list[str], msg: str, code: int) -> None:
    good = write(tmp_path, SKAB_LIKE, "good.csv")
    bad = write(tmp_path, "datetime;a\n2020-01-01 00:00:00;1\n2020-01-01 00:00:01;oops\n", "bad.csv")
    comma = write(tmp_path, "datetime;a;b\n2020-01-01 00:00:00;1;2,5\n", "comma.csv")  # not dropped silently
    args = [a.replace("{good}", str(good)).replace("{bad}", str(bad)).replace("{comma}", str(comma)) for a in args]
    res = CliRunner().invoke(replay_command, [*args, "--broker", "mqtt://127.0.0.1:1"])
    assert res.exit_code == code  # edge_runtime/clierror.py: 2 usage, 65 bad file, 66 no file
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("edgewatch replay: error:") and msg in last
    assert "Traceback" not in res.output


@pytest.mark.skab
@pytest.mark.skipif(not (SKAB_DIR / "valve1" / "0.csv").exists(), reason="SKAB data not present")
def test_reads_a_real_skab_file() -> None:
    rec = read_recording(SKAB_DIR / "valve1" / "0.csv")
    assert len(rec.channels) == 8 and "anomaly" not in rec.channels and "changepoint" not in rec.channels
    assert rec.ts is not None and np.all(np.diff(rec.ts) >= 0)


def test_model_picks_its_channels_and_refuses_a_file_without_them(tmp_path: Path, demo_model_path: Path) -> None:
    from edge_runtime.tools.simulate import model_channels

    names = model_channels(demo_model_path)
    text = "timestamp," + ",".join(["extra", *reversed(names)]) + "\n1700000000,9," + ",".join(
        str(i) for i in range(len(names), 0, -1)) + "\n"
    rec = read_recording(write(tmp_path, text), channels=names)
    assert rec.channels == tuple(names)
    np.testing.assert_array_equal(rec.values[0], np.arange(1, len(names) + 1))
    res = CliRunner().invoke(replay_command, [str(write(tmp_path, SKAB_LIKE, "skab.csv")), "--device", "d",
                                              "--model", str(demo_model_path), "--broker", "mqtt://127.0.0.1:1"])
    assert res.exit_code == 65  # EX_DATAERR: the file lacks the model's columns
    # names match ignoring case ('pressure' is the file's 'Pressure'): the first one missing is named
    header = {h.lower() for h in SKAB_LIKE.splitlines()[0].split(";")}
    missing = next(n for n in names if n.lower() not in header)
    assert f"no column '{missing}'" in res.output.strip().splitlines()[-1]


GAPPY = "datetime;a;b\n2020-01-01 00:00:00;1;2\n2020-01-01 00:00:01;;4\n2020-01-01 00:00:02;3;\n"


@pytest.mark.parametrize(("fill", "a", "b"), [
    ("ffill", [1, 1, 3], [2, 4, 4]),
    ("zero", [1, 0, 3], [2, 4, 0]),
    ("interpolate", [1, 2, 3], [2, 4, 4]),
])
def test_fill_uses_the_trainers_methods(tmp_path: Path, fill: str, a: list, b: list) -> None:
    rec = read_recording(write(tmp_path, GAPPY), fill=fill)
    assert rec.values[:, 0].tolist() == a and rec.values[:, 1].tolist() == b


def test_fill_null_publishes_null_for_the_edge_to_fill(tmp_path: Path) -> None:
    from edge_runtime.tools.simulate import encode_payload

    rec = read_recording(write(tmp_path, GAPPY), fill="null")
    assert np.isnan(rec.values[1, 0]) and np.isnan(rec.values[2, 1])
    single = [json.loads(p) for p in encode_payload("single", rec.ts, rec.values, rec.channels)]
    assert single[1]["values"] == [None, 4.0] and single[2]["values"] == [3.0, None]
    keyed = json.loads(encode_payload("keyed", rec.ts[:2], rec.values[:2], rec.channels)[1])
    assert "a" not in keyed and keyed["b"] == 4.0  # keyed: a missing channel is left out (absent)
    assert encode_payload("csv", rec.ts[1:2], rec.values[1:2], rec.channels)[0].decode().endswith(",,4.0")


def test_missing_value_error_names_the_fill_and_an_empty_column_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="use --fill ffill"):
        read_recording(write(tmp_path, GAPPY))
    with pytest.raises(ReplayError, match="column 'b': no values at all"):
        read_recording(write(tmp_path, "datetime;a;b\n2020-01-01 00:00:00;1;\n2020-01-01 00:00:01;2;\n"),
                       channels=["a", "b"], fill="ffill")


GERMAN = "zeit;druck;temp\n{unit0};bar;°C\n01.12.2026 10:00:00;4,702;59,6\n01.12.2026 10:00:01;4,711;59,7\n"


def test_a_units_row_under_the_header_is_skipped(tmp_path: Path) -> None:
    f = tmp_path / "u.csv"
    f.write_text("timestamp,pressure,temp,anomaly\n,[bar],degC,\n1700000000,3.1,60.5,0\n1700000001,3.2,60.7,0\n")
    rec = read_recording(f)
    assert rec.channels == ("pressure", "temp") and np.allclose(rec.values, [[3.1, 60.5], [3.2, 60.7]])
    assert rec.ts is not None and rec.ts.tolist() == [1700000000.0, 1700000001.0]
    f.write_text("timestamp,pressure,temp\n,bar,the temperature in the tank\n1700000000,3.1,60.5\n")
    with pytest.raises(ReplayError, match="line 2: a units row"):
        read_recording(f)


@pytest.mark.parametrize("unit0", ["", "-", "dd.mm.yyyy hh:mm:ss"])
def test_a_units_row_above_an_unnamed_time_column_is_skipped_as_fit_skips_it(tmp_path: Path, unit0: str) -> None:
    """The time column's cell in the units row: empty, '-', or its format (as exports write it); with the
    model's --time-format replay read that cell as the first time and refused the file fit had read."""
    f = tmp_path / "de.csv"
    f.write_text(GERMAN.format(unit0=unit0), encoding="utf-8")
    rec = read_recording(f, decimal=",", time_format="%d.%m.%Y %H:%M:%S")
    assert rec.channels == ("druck", "temp") and np.allclose(rec.values[1], [4.711, 59.7])
    assert rec.ts is not None and rec.ts[1] - rec.ts[0] == 1.0


def test_a_units_row_above_decimal_commas_gets_the_decimal_comma_hint(tmp_path: Path) -> None:
    """A units row, then numbers written with decimal commas and no --decimal: the hint, not 'no numeric channel'."""
    f = tmp_path / "de.csv"
    f.write_text("zeit;druck;temp\n;bar;°C\n2024-03-30 12:00:00;4,702;59,6\n2024-03-30 12:00:01;4,711;59,7\n",
                 encoding="utf-8")
    with pytest.raises(ReplayError, match=r"column 'druck': not a number: '4,702' \(a decimal comma: use --decimal ,\)"):
        read_recording(f)
    rec = read_recording(f, decimal=",")
    assert rec.channels == ("druck", "temp") and np.allclose(rec.values[0], [4.702, 59.6])


@pytest.mark.parametrize("first_bad", [2, 4])  # the first data row, or one further down
def test_a_decimal_comma_is_one_error_with_file_line_and_hint_with_or_without_the_model(
        tmp_path: Path, demo_model_path: Path, first_bad: int) -> None:
    """The trial's case: a ';' file with decimal commas said 'line N, column ...: non-numeric value' with --model
    (its channels given) but 'column ...: not a number' without a line when the channels were told from the data.
    One wording, fit's, with the file, the line and the hint, on both paths."""
    from edge_runtime.tools.simulate import model_channels

    names = model_channels(demo_model_path)
    rows = [f"2024-03-30 12:00:0{n};" + ";".join(f"{i}.5" for i in range(len(names))) for n in range(4)]
    k = first_bad - 2
    rows[k] = rows[k].split(";", 1)[0] + ";" + ";".join(f"{i},5" for i in range(len(names)))
    f = write(tmp_path, "datetime;" + ";".join(names) + "\n" + "\n".join(rows) + "\n")
    want = f"{f}: line {first_bad}, column {names[0]!r}: not a number: '0,5' (a decimal comma: use --decimal ,)"
    for channels in (None, names):  # told from the data / the model's
        with pytest.raises(ReplayError) as exc:
            read_recording(f, channels=channels)
        assert str(exc.value) == want
    for extra in ([], ["--model", str(demo_model_path)]):
        res = CliRunner().invoke(replay_command, [str(f), "--device", "d", "--fast", *extra,
                                                  "--broker", "mqtt://127.0.0.1:1"])
        assert res.exit_code == 65 and res.output.strip().splitlines()[-1] == f"edgewatch replay: error: {want}"


def test_repeated_timestamps_are_warned_about(tmp_path: Path, mosquitto) -> None:
    """The trial: fit warns that the edge drops repeated timestamps as duplicate; replay sent them without a word."""
    f = write(tmp_path, "ts,a\n1000,1\n1001,2\n1001,3\n1002,4\n1002,5\n")
    rec = read_recording(f)
    assert (rec.duplicates, rec.first_duplicate) == (2, 4)
    assert read_recording(write(tmp_path, "ts,a\n1000,1\n1001,2\n", name="ok.csv")).duplicates == 0
    r = CliRunner().invoke(replay_command, [str(f), "--device", "d", "--fast", "--broker", mosquitto.url])
    assert r.exit_code == 0, r.output
    assert "2 row(s) repeat the timestamp of the row before (first at line 4): the daemon drops them" in r.stderr


def test_a_broker_outage_is_waited_out_and_every_message_acknowledged(mosquitto, tmp_path: Path) -> None:
    """The trial: an 8 s outage left a third of a replay NOT acknowledged (exit 69). paho holds what is published
    while disconnected and sends it after its reconnect: the replay waits for that, counts it, and says so."""
    import threading
    import time

    from edge_runtime.tools.replay import publish_recording
    from edge_runtime.tools.simulate import connect_publisher

    rows = "\n".join(f"{1_700_000_000 + i},{i % 7}.5,{i % 3}" for i in range(80))
    rec = read_recording(write(tmp_path, "ts,a,b\n" + rows))
    client = connect_publisher(mosquitto.url, "replay-outage")
    notes: list[str] = []
    out: dict = {}
    t = threading.Thread(target=lambda: out.update(res=publish_recording(
        client, rec, "sensors/p/data", speed=20.0, restamp=True, notify=notes.append, max_inflight=10)))
    t.start()
    time.sleep(1.0)
    mosquitto.stop()  # ---- outage: the replay goes on into paho's queue, then waits ----
    time.sleep(3.0)
    mosquitto.start()
    t.join(60)
    client.disconnect()
    client.loop_stop()
    res = out["res"]
    assert res.messages == 80 and res.acknowledged == 80 and res.unacknowledged() is None
    assert res.outages == 1 and res.outage_s > 1.0 and res.reconnects == 1 and "sent after the reconnect" in res.summary()
    assert res.max_unacknowledged == 10  # the replay paused at its in-flight limit while the broker was away
    assert notes[0].startswith("the broker connection is lost: waiting for it") and "back" in notes[-1]
