"""``edgewatch feedback`` and ``edgewatch record`` (edge_runtime/tools/feedback.py, record.py)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
from click.testing import CliRunner, Result

from edge_runtime.cli import main
from edge_runtime.config import build_config
from edge_runtime.service.feedback_store import FeedbackStore, read_records
from edge_runtime.tools.feedback import label_rows
from edge_runtime.tools.record import record
from edge_runtime.tools.synthetic import channel_names, write_csv
from tests.edge_runtime.mqtt_helpers import Publisher


def _verdict(alert_id: str, verdict: str, start: float, end: float, device: str = "d1") -> dict:
    return {"alert_id": alert_id, "verdict": verdict, "device": device, "window_start": start, "window_end": end}


def test_rows_are_labelled_by_the_latest_verdict_of_each_alert() -> None:
    recs = [_verdict("a", "confirmed", 10, 20), _verdict("b", "false_alarm", 30, 40),
            _verdict("b", "ack", 30, 40), _verdict("c", "false_alarm", 50, 60), _verdict("c", "confirmed", 50, 60),
            _verdict("x", "confirmed", 0, 100, device="other")]
    assert label_rows([5, 15, 35, 55, 70], recs, "d1") == [None, 1, 0, 1, None]


def test_the_log_rotates_within_its_bound_and_reads_back_in_order(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path, max_bytes=2000)
    for i in range(100):
        assert store.append({"i": i, "pad": "x" * 50})
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["feedback.jsonl", "feedback.jsonl.1"]
    assert all(p.stat().st_size <= 2000 for p in tmp_path.iterdir())
    got = [r["i"] for r in read_records(tmp_path)]
    assert got == sorted(got) and got[-1] == 99


def test_an_unwritable_log_degrades_not_fails(tmp_path: Path) -> None:
    (tmp_path / "blocked").write_text("a file where the folder should be")
    store = FeedbackStore(tmp_path / "blocked" / "sub")
    assert store.append({"i": 1}) is False and list(store.memory) == [{"i": 1}]


def test_export_labels_a_recording_the_trainer_reads(tmp_path: Path) -> None:
    from trainer.data import read_csv

    names = channel_names(2)
    x = np.random.default_rng(0).normal(size=(100, 2)).astype(np.float32)
    write_csv(tmp_path / "rec.csv", x, names, t0=1000.0)
    store = FeedbackStore(tmp_path / "state")
    store.append(_verdict("a", "confirmed", 1010.0, 1019.0))
    store.append(_verdict("b", "false_alarm", 1050.0, 1059.0))
    out = tmp_path / "labelled"
    r = CliRunner().invoke(main, ["feedback", "export", "--log", str(tmp_path / "state"), "--data",
                                  str(tmp_path / "rec.csv"), "--labelled", str(out), "--device", "d1"])
    assert r.exit_code == 0, r.output
    assert "10 in confirmed alerts" in r.output and "10 in false alarms" in r.output
    series = read_csv(out / "rec.csv")
    assert series.labels is not None and int(series.labels.sum()) == 10 and series.values.shape == (100, 2)


def test_a_recording_is_labelled_only_by_the_verdicts_of_the_device_named(tmp_path: Path) -> None:
    """The trial: a recording of pump-9 exported without --device took pump-2's confirmed alert, whose time it
    overlapped, as its own: 383 normal rows labelled a fault. A recording has no device column: --device is needed."""
    names = channel_names(2)
    write_csv(tmp_path / "rec9.csv", np.zeros((100, 2), np.float32), names, t0=1000.0)
    store = FeedbackStore(tmp_path / "state")
    store.append(_verdict("pump-2:1", "confirmed", 1010.0, 1049.0, "pump-2"))
    args = ["feedback", "export", "--log", str(tmp_path / "state"), "--data", str(tmp_path / "rec9.csv"),
            "--labelled", str(tmp_path / "out")]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and "--data needs --device D" in r.output and "verdicts for pump-2" in r.output
    assert not (tmp_path / "out").exists()
    r = CliRunner().invoke(main, [*args, "--device", "pump-9"])
    assert r.exit_code == 65 and "no verdicts for device 'pump-9'" in r.output and not (tmp_path / "out").exists()
    r = CliRunner().invoke(main, [*args, "--device", "pump-2"])  # the operator says it is pump-2's: labelled
    assert r.exit_code == 0 and "40 in confirmed alerts" in r.output


def test_an_export_that_would_label_nothing_says_why_and_writes_nothing(tmp_path: Path) -> None:
    names = channel_names(2)
    write_csv(tmp_path / "rec.csv", np.zeros((50, 2), np.float32), names, t0=1000.0)  # 1000..1049
    store = FeedbackStore(tmp_path / "state")
    store.append(_verdict("a", "confirmed", 5000.0, 5009.0))  # long after the recording
    store.append(_verdict("b", "ack", 1010.0, 1019.0))  # an ack labels nothing
    args = ["feedback", "export", "--log", str(tmp_path / "state"), "--data", str(tmp_path / "rec.csv")]
    r = CliRunner().invoke(main, [*args, "--labelled", str(tmp_path / "o1"), "--device", "d1"])
    assert r.exit_code == 1, r.output  # found nothing (docs/TOOLS.md#exit-codes)
    assert "no row of the recordings falls inside a judged alert" in r.output and "nothing written" in r.output
    assert "1970-01-01 01:23:20 to 1970-01-01 01:23:29 UTC" in r.output  # the alerts' span, then the recordings'
    assert not (tmp_path / "o1").exists()
    r = CliRunner().invoke(main, [*args, "--labelled", str(tmp_path / "o2"), "--device", "pump-9"])
    assert r.exit_code == 65 and "no verdicts for device 'pump-9'" in r.output and "for d1" in r.output
    r = CliRunner().invoke(main, ["feedback", "export", "--log", str(tmp_path / "state"), "--evidence",
                                  str(tmp_path), "--labelled", str(tmp_path / "o3")])
    assert r.exit_code == 1 and "none of the 1 judged alerts" in r.output and not (tmp_path / "o3").exists()
    store.append(_verdict("a", "ack", 5000.0, 5009.0))  # an ack after a verdict: the verdict stands
    only_acks = FeedbackStore(tmp_path / "acks")
    only_acks.append(_verdict("b", "ack", 1010.0, 1019.0))
    r = CliRunner().invoke(main, ["feedback", "export", "--log", str(tmp_path / "acks"), "--data",
                                  str(tmp_path / "rec.csv"), "--labelled", str(tmp_path / "o4"), "--device", "d1"])
    assert r.exit_code == 1 and "acks label nothing" in r.output


def test_feedback_without_a_verdict_or_a_broker_is_one_line(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["feedback", "abc"])
    assert r.exit_code == 2 and r.output.strip().startswith("edgewatch feedback: error: give a verdict")
    r = CliRunner().invoke(main, ["feedback", "--false-alarm"])
    assert r.exit_code == 2 and "name the alert" in r.output
    r = CliRunner().invoke(main, ["feedback", "abc", "--false-alarm", "--confirmed"])  # contradictory: refused
    assert r.exit_code == 2 and "not --false-alarm and --confirmed" in r.output
    r = CliRunner().invoke(main, ["feedback", "abc", "--ack", "--recalibrate", "pump-1"])
    assert r.exit_code == 2 and "not --ack and --recalibrate" in r.output
    for bad in (["--bogus"], ["abc", "--ack", "--instance"], ["abc", "--timeout", "x", "--ack"]):
        r = CliRunner().invoke(main, ["feedback", *bad], prog_name="edgewatch")  # named as typed, not as the hidden "send"
        assert r.exit_code == 2 and r.output.startswith("edgewatch feedback: error: "), r.output
        assert r.output.rstrip().endswith("(see `edgewatch feedback ALERT_ID --help`)") and "send" not in r.output
    r = CliRunner().invoke(main, ["feedback", "abc", "--help"])  # the verdict's own options, as it is typed
    assert r.exit_code == 0 and " feedback [ALERT_ID] [OPTIONS]" in r.output.splitlines()[0]  # not "send"
    r = CliRunner().invoke(main, ["feedback", "abc", "--ack", "--broker", "mqtt://127.0.0.1:1", "--timeout", "2"])
    assert r.exit_code == 69 and "cannot connect" in r.output and len(r.output.strip().splitlines()) == 1


def test_feedback_with_no_daemon_says_so(mosquitto) -> None:
    r = CliRunner().invoke(main, ["feedback", "abc", "--ack", "--broker", mosquitto.url, "--timeout", "1",
                                  "--instance", "nobody"])
    assert r.exit_code == 69 and "no reply on edgewatch/nobody/reply" in r.output  # EX_UNAVAILABLE: retry
    r = CliRunner().invoke(main, ["feedback", "abc", "--ack", "--broker", mosquitto.url, "--timeout", "1",
                                  "--instance", "nobody", "--topic-prefix", "site-1"])
    assert r.exit_code == 69 and "no reply on site-1/edgewatch/nobody/reply" in r.output
    r = CliRunner().invoke(main, ["evidence", "fetch", "abc", "--out", "x.npz", "--broker", mosquitto.url,
                                  "--timeout", "1", "--instance", "nobody", "--topic-prefix", "site-1"])
    assert r.exit_code == 69 and "site-1/edgewatch/nobody/" in r.output, r.output


def test_every_command_that_reaches_a_daemon_takes_its_topic_prefix() -> None:
    """A command with --broker talks to the daemons' topics, so it takes --topic-prefix as `run` does."""
    import click

    def walk(cmd: click.Command, path: str):
        yield path, cmd
        if isinstance(cmd, click.Group):  # the lazily loaded commands too
            ctx = click.Context(cmd)
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                if sub is not None and sub is not cmd:
                    yield from walk(sub, f"{path} {name}")

    with_broker = {path: {o for p in cmd.params for o in p.opts} for path, cmd in walk(main, "edgewatch")
                   if any("--broker" in p.opts for p in cmd.params)}
    assert {"edgewatch record", "edgewatch dashboard", "edgewatch feedback send", "edgewatch evidence fetch",
            "edgewatch homeassistant cleanup"} <= set(with_broker)
    assert [path for path, opts in with_broker.items() if "--topic-prefix" not in opts] == []


def test_record_reads_a_prefixed_site(mosquitto, tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    result: dict = {}

    def run() -> None:
        result["r"] = CliRunner().invoke(main, ["record", "--device", "pump-7", "--channels", "a", "--samples", "3",
                                                "--duration", "20s", "--out", str(out), "--broker", mosquitto.url,
                                                "--topic-prefix", "site-1"])

    t = threading.Thread(target=run)
    t.start()
    time.sleep(1.0)
    pub = Publisher(mosquitto.port)
    pub.send("sensors/pump-7/data", json.dumps({"ts": 1.0, "a": 9}))  # another site's (no prefix): not this one
    for i in range(3):
        pub.send("site-1/sensors/pump-7/data", json.dumps({"ts": 1000.0 + i, "a": i}))
    pub.close()
    t.join(25)
    assert result["r"].exit_code == 0, result["r"].output
    assert out.read_text().splitlines()[1:] == ["1000.000,0", "1001.000,1", "1002.000,2"]


def test_operator_md_states_the_exit_codes_feedback_uses() -> None:
    from edge_runtime.tools import feedback

    text = " ".join((Path(__file__).resolve().parents[3] / "docs" / "OPERATOR.md").read_text().split())
    assert f"0 accepted, {feedback.EXIT_REFUSED} refused" in text
    assert f"{feedback.EXIT_NO_REPLY} the broker cannot be reached or no reply came in time" in text
    assert feedback.EXIT_NO_REPLY == 69  # EX_UNAVAILABLE, as every edge tool (docs/TOOLS.md#exit-codes)


def test_record_writes_what_the_device_sent(mosquitto, tmp_path: Path) -> None:
    cfg = build_config(None, {"broker": mosquitto.url})
    out = tmp_path / "normal.csv"
    result: dict = {}
    t = threading.Thread(target=lambda: result.update(record(cfg, "pump-7", ["a", "b"], out, 20.0, 50)))
    t.start()
    time.sleep(0.5)
    pub = Publisher(mosquitto.port)
    pub.send("sensors/other/data", json.dumps({"ts": 1.0, "a": 9, "b": 9}))
    pub.send("sensors/pump-7/data", b"garbage")
    for i in range(50):
        pub.send("sensors/pump-7/data", json.dumps({"ts": 1000.0 + i, "a": i, "b": -i}))
    pub.close()
    t.join(20)
    assert result["samples"] == 50 and sum(result["skipped"].values()) == 1
    lines = out.read_text().splitlines()
    assert lines[0] == "timestamp,a,b" and lines[1] == "1000.000,0,0" and lines[-1] == "1049.000,49,-49"


def test_export_from_the_evidence_store_labels_each_judged_alert(tmp_path: Path) -> None:
    from edge_runtime.service.evidence_store import EvidenceStore
    from trainer.data import read_csv

    store = EvidenceStore(tmp_path / "evidence")
    ts = 1000.0 + np.arange(60, dtype=np.float64)
    arrays = {"ts": ts, "values": np.ones((60, 2), np.float32), "win_end": ts[::10],
              "win_score": np.ones(6), "win_error": np.ones((6, 2), np.float32)}
    out = tmp_path / "labelled"

    def keep(aid: str, **meta: object) -> None:
        assert store.write({"alert_id": aid, "device": "pump.1", "channels": ["a", "b"], "anomalous_since": 1020.0,
                            "cleared_end": 1039.0, "complete": True, **meta}, arrays)

    def export(*more: str) -> Result:
        return CliRunner().invoke(main, ["feedback", "export", "--log", str(tmp_path / "state"), *more,
                                         "--labelled", str(out)])

    for aid in ("pump.1:3", "pump.1:9", "pump.1:12"):
        keep(aid)
    log = FeedbackStore(tmp_path / "state")
    log.append(_verdict("pump.1:3", "confirmed", 1020.0, 1039.0, "pump.1"))
    log.append(_verdict("pump.1:9", "false_alarm", 1020.0, 1039.0, "pump.1"))
    log.append(_verdict("pump.1:77", "confirmed", 0, 1, "pump.1"))  # no evidence kept for it
    r = export("--evidence", str(tmp_path / "evidence"))
    assert r.exit_code == 0, r.output
    assert "2 alerts' evidence" in r.output and "1 judged alerts have no evidence" in r.output
    confirmed, false_alarm = read_csv(out / "pump.1:3.csv"), read_csv(out / "pump.1:9.csv")
    assert int(confirmed.labels.sum()) == 20 and int(false_alarm.labels.sum()) == 0
    # the raising window started before anomalous_since (its end): its rows, the onset's, are labelled too
    log.append(_verdict("pump.1:3", "confirmed", 1012.0, 1039.0, "pump.1"))
    r = export("--evidence", str(tmp_path / "evidence"))
    assert r.exit_code == 0, r.output
    labels = read_csv(out / "pump.1:3.csv").labels
    assert int(labels.sum()) == 28 and labels[12] == 1 and labels[11] == 0
    # an alert adopted after a restart: its episode starts at anomalous_since, the raise event has the window
    keep("pump.1:30", events=[{"event": "raise", "window_start": 1008.0}])
    log.append(_verdict("pump.1:30", "confirmed", 1020.0, 1039.0, "pump.1"))
    r = export("--evidence", str(tmp_path / "evidence"))
    assert r.exit_code == 0, r.output
    labels = read_csv(out / "pump.1:30.csv").labels
    assert int(labels.sum()) == 32 and labels[8] == 1 and labels[7] == 0
    assert not (out / "pump.1:12.csv").exists()  # not judged
    r = export()
    assert r.exit_code == 2 and "--data" in r.output
    assert "incomplete" not in r.output
    keep("pump.1:20", anomalous_since=1050.0, cleared_end=None, complete=False)  # still open: up to the raise
    log.append(_verdict("pump.1:20", "confirmed", 1050.0, 1059.0, "pump.1"))
    r = export("--evidence", str(tmp_path / "evidence"))
    assert r.exit_code == 0 and "warning: 1 of them still open" in r.stderr and "export again later" in r.stderr
    assert "ended early" not in r.stderr
    r = export("--evidence", str(tmp_path / "evidence"), "--data", str(out / "pump.1:3.csv"))
    assert r.exit_code == 2 and "not both" in r.output
