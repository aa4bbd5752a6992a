"""edge_runtime.tools.watch (`edgewatch alerts`): what it shows, when it returns, how it ends and fails.

Against a real Mosquitto; the published documents are the oracle."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time

import pytest

from edge_runtime.config import build_config
from edge_runtime.tools.localbroker import free_port
from edge_runtime.tools.watch import HEADER, RESET, WatchError, format_row, watch_alerts
from tests.edge_runtime.mqtt_helpers import Publisher

ALERT = {"alert_id": "a1", "device": "pump-1", "state": "raised", "seq": 1, "score": 2.5, "threshold": 1.0,
         "window_end": 1.7e9, "time": 1.8e9, "top_channels": [{"name": "Pressure", "share": 0.75}]}
STATE = {"schema_version": 1, "device": "pump-1", "state": "raised", "seq": 1, "since": 1.8e9, "instance": "gw"}


def _watch(broker_url: str, **kw) -> tuple[threading.Thread, list[tuple], list[int], list[str]]:
    got: list[tuple] = []
    seen: list[int] = []
    notes: list[str] = []
    cfg = build_config(None, {"broker": broker_url, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0})

    def run() -> None:
        seen.append(watch_alerts(cfg, lambda *a: got.append(a), notify=notes.append, **kw))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, got, seen, notes


def _alerts_cli(url: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_runtime.cli", "alerts", "--broker", url, *args],
                          capture_output=True, text=True, timeout=timeout)


def test_alerts_only_by_default_one_row_each_and_malformed_ones_counted(mosquitto) -> None:
    t, got, seen, notes = _watch(mosquitto.url, count=2, timeout=15)
    time.sleep(0.5)  # subscribed
    pub = Publisher(mosquitto.port)
    pub.send("alerts/pump-1/state", json.dumps(STATE))  # a state: not shown without include_state
    pub.send("alerts/pump-1", b"not json")
    pub.send("alerts/pump-1", b"[1, 2]")
    pub.send("alerts/pump-1", json.dumps(ALERT))
    pub.send("alerts/pump-2", json.dumps({**ALERT, "alert_id": "a2", "device": "pump-2"}))
    pub.close()
    t.join(15)
    assert seen == [2]
    assert [(topic, d["alert_id"], kind, retained) for topic, d, kind, _, retained in got] == [
        ("alerts/pump-1", "a1", "alert", False), ("alerts/pump-2", "a2", "alert", False)]
    assert all(abs(received - time.time()) < 20 for *_, received, _ in got)
    skipped = [n for n in notes if "skipped a malformed message on alerts/pump-1" in n]
    assert skipped and "not JSON" in skipped[0], notes  # one line per topic root and 10 s, then counted
    assert notes[-1] == "2 malformed message(s) skipped in all", notes


def test_states_are_marked_and_count_counts_the_retained_row(mosquitto) -> None:
    pub = Publisher(mosquitto.port)
    pub.client.publish("alerts/pump-1/state", json.dumps(STATE), qos=1, retain=True).wait_for_publish(5)
    pub.close()
    start = time.monotonic()
    t, got, seen, _ = _watch(mosquitto.url, include_state=True, count=1, timeout=15)
    t.join(15)
    assert seen == [1] and time.monotonic() - start < 5  # the retained row is counted: no waiting for more
    topic, doc, kind, _, retained = got[0]
    assert (topic, kind, retained, doc["since"]) == ("alerts/pump-1/state", "state", True, 1.8e9)


def test_the_timeout_ends_quietly(mosquitto) -> None:
    t, got, seen, notes = _watch(mosquitto.url, timeout=1.0)
    t.join(10)
    assert seen == [0] and got == [] and notes == []  # no "lost the connection ... reconnecting" from our own close


def test_first_connect_failure_is_a_watch_error() -> None:
    cfg = build_config(None, {"broker": f"mqtt://127.0.0.1:{free_port()}"})
    with pytest.raises(WatchError, match="cannot connect to broker 127.0.0.1"):
        watch_alerts(cfg, lambda *a: None, timeout=5)


def test_a_lost_broker_is_reported_and_the_watch_reconnects(mosquitto) -> None:
    t, got, seen, notes = _watch(mosquitto.url, count=1, timeout=30)
    time.sleep(0.5)
    mosquitto.restart(down_s=0.5)
    deadline = time.monotonic() + 15
    while not any("reconnected" in n for n in notes) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert any("lost the connection" in n for n in notes) and any("reconnected" in n for n in notes), notes
    pub = Publisher(mosquitto.port)
    pub.send("alerts/pump-1", json.dumps(ALERT))
    pub.close()
    t.join(15)
    assert seen == [1] and got[-1][1]["alert_id"] == "a1"


def test_rows_put_stream_and_receive_time_in_their_own_columns() -> None:
    alert = format_row(ALERT, "alert", 1.9e9)
    state = format_row(STATE, "state", 1.9e9, retained=True)
    col = HEADER.index("stream time")
    rcv = HEADER.index("received")
    assert alert[col:col + 19] == "2023-11-14 22:13:20"  # window_end, not the daemon's publish time
    assert alert[rcv:rcv + 19] == state[rcv:rcv + 19] == "2030-03-17 17:46:40"
    assert state.startswith("state") and state[col:col + 19].strip() == "-"
    assert "None" not in state and "retained, since 2027-01-15 08:00:00" in state
    assert "Pressure 75%" in alert and "2.5" in alert
    assert "\x1b[" not in alert and format_row(ALERT, "alert", 1.9e9, color=True).count(RESET) == 1


OPERATING = {"schema_version": 1, "device": "pump-1", "state": "out_of_distribution", "since": 1.7e9,
             "reason": "5 of 8 channels outside the range seen in training at once", "scored": False,
             "instance": "gw", "model_id": "m", "time": 1.8e9}


def test_states_show_the_operating_state_too_marked_operating(mosquitto) -> None:
    """An out_of_distribution device is not scored: with --states the operator sees why."""
    pub = Publisher(mosquitto.port)
    pub.client.publish("alerts/pump-1/operating", json.dumps(OPERATING), qos=1, retain=True).wait_for_publish(5)
    pub.close()
    try:
        t, got, seen, _ = _watch(mosquitto.url, count=1, timeout=3)
        t.join(10)
        assert seen == [0]  # not without include_state
        t, got, seen, _ = _watch(mosquitto.url, include_state=True, count=1, timeout=15)
        t.join(15)
        assert seen == [1]
        topic, doc, kind, _, retained = got[0]
        assert (topic, kind, retained, doc["state"]) == ("alerts/pump-1/operating", "operating", True,
                                                          "out_of_distribution")
    finally:
        pub = Publisher(mosquitto.port)
        pub.client.publish("alerts/pump-1/operating", b"", qos=1, retain=True).wait_for_publish(5)
        pub.close()
    row = format_row(OPERATING, "operating", 1.9e9, retained=True, color=True)
    col = HEADER.index("stream time")
    assert row.startswith("operating") and row[col:col + 19] == "2023-11-14 22:13:20"  # since, device time
    assert "\x1b[31;1mood" in row and "retained, out_of_distribution: 5 of 8 channels outside" in row


@pytest.mark.slow  # three runs of the command, 1.5 s each plus start-up
def test_the_command_piped_prints_json_lines_and_exits_cleanly_on_timeout(mosquitto) -> None:
    pub = Publisher(mosquitto.port)
    pub.client.publish("alerts/pump-1/state", json.dumps(STATE), qos=1, retain=True).wait_for_publish(5)
    pub.close()
    res = _alerts_cli(mosquitto.url, "--timeout", "1.5", "--states")
    assert res.returncode == 0 and res.stderr == "", res.stderr
    (doc,) = [json.loads(line) for line in res.stdout.splitlines()]
    assert (doc["kind"], doc["retained"], doc["topic"]) == ("state", True, "alerts/pump-1/state")
    res = _alerts_cli(mosquitto.url, "--timeout", "1.5", "--format", "table")
    assert res.returncode == 0 and res.stderr == "" and res.stdout.splitlines() == [HEADER]
    assert "\x1b[" not in res.stdout  # piped: no colour unless --color
    res = _alerts_cli(mosquitto.url, "--timeout", "1.5", "--format", "table", "--states", "--color")
    (row,) = res.stdout.splitlines()[1:]
    assert row.startswith("state") and "\x1b[31;1mraised" in row  # raised in red when asked (a terminal's default)


def test_on_a_terminal_the_table_is_coloured_by_default(mosquitto) -> None:
    import os
    import pty

    pub = Publisher(mosquitto.port)
    pub.client.publish("alerts/pump-1/state", json.dumps({**STATE, "state": "cleared"}), qos=1,
                       retain=True).wait_for_publish(5)
    pub.close()
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "edge_runtime.cli", "alerts", "--broker", mosquitto.url,
                             "--states", "--count", "1", "--timeout", "10"], stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    assert proc.wait(20) == 0
    out = b""
    with contextlib.suppress(OSError):  # EIO once the child's side is closed and read empty
        while chunk := os.read(master, 4096):
            out += chunk
    os.close(master)
    text = out.decode()
    assert text.splitlines()[0].strip() == HEADER.strip() and "\x1b[32mcleared" in text, text


def test_a_version_2_alert_row_shows_its_summary_and_an_update_says_so() -> None:
    doc = {**ALERT, "schema_version": 2, "event": "update", "summary": "Pressure low: mean 3.1 bar, expected 4.6"}
    row = format_row(doc, "alert", 1.9e9)
    assert row.endswith("Pressure low: mean 3.1 bar, expected 4.6") and " update " in row
    assert "Pressure 75%" in format_row(ALERT, "alert", 1.9e9)  # a version 1 alert: its shares, as before


def test_the_topic_prefix_is_put_in_front_of_the_alert_topic_as_run_does(mosquitto) -> None:
    pub = Publisher(mosquitto.port)
    pub.client.publish("site-1/alerts/pump-1/state", json.dumps(STATE), qos=1, retain=True).wait_for_publish(5)
    pub.client.publish("alerts/pump-2/state", json.dumps({**STATE, "device": "pump-2"}), qos=1,
                       retain=True).wait_for_publish(5)
    pub.close()
    res = _alerts_cli(mosquitto.url, "--timeout", "1.5", "--states", "--topic-prefix", "site-1")
    assert res.returncode == 0, res.stderr
    assert [json.loads(line)["topic"] for line in res.stdout.splitlines()] == ["site-1/alerts/pump-1/state"]


SENSOR = {"schema_version": 1, "alert_id": "s1", "raised_alert_id": "s1", "device": "pump-1", "channel": "Pressure",
          "kind": "stuck", "state": "raised", "seq": 1, "since": 1.7e9, "at": 1.7e9 + 60, "value": 4.2,
          "last_good_value": 4.2, "last_good_time": 1.7e9, "model_id": "m", "instance": "gw", "time": 1.8e9}


def test_sensor_faults_only_with_sensors_marked_and_named_by_channel(mosquitto) -> None:
    """An operator watching `edgewatch alerts` never saw a frozen sensor: it is kept off alerts/ by design."""
    for include in (False, True):
        t, got, seen, _ = _watch(mosquitto.url, include_sensors=include, count=2 if include else 1, timeout=15)
        time.sleep(0.5)  # subscribed
        pub = Publisher(mosquitto.port)
        pub.send("health/pump-1/alerts", json.dumps(SENSOR))
        pub.send("health/pump-1", json.dumps({"device": "pump-1", "channels": {}}))  # the health document: never
        pub.send("alerts/pump-1", json.dumps(ALERT))
        pub.close()
        t.join(15)
        kinds = [(topic, kind) for topic, _, kind, _, _ in got]
        assert kinds == ([("health/pump-1/alerts", "sensor"), ("alerts/pump-1", "alert")] if include
                         else [("alerts/pump-1", "alert")])
    row = format_row(SENSOR, "sensor", 1.8e9)
    assert row.startswith("sensor     2023-11-14 22:13:20") and row.endswith("Pressure stuck at 4.2")
    assert row.index("2023") == HEADER.index("stream time")  # in the column under its header
    stale = format_row({**SENSOR, "channel": None, "kind": "stale", "value": None}, "sensor", 1.8e9)
    assert stale.endswith("device stale") and "None" not in stale
    cli = _alerts_cli(mosquitto.url, "--sensors", "--timeout", "1")
    assert cli.returncode == 0, cli.stderr


def test_a_rejected_device_row_says_what_it_sends_wrong() -> None:
    doc = {"device": "pump-9", "channel": None, "kind": "rejected", "state": "raised", "seq": 1, "since": 1.7e9,
           "detail": "wrong_channels: expected 8 values per sample, got 5"}
    row = format_row(doc, "sensor", 1.9e9)
    assert row.endswith("device rejected: wrong_channels: expected 8 values per sample, got 5")


def test_json_lines_say_the_row_kind_beside_a_sensor_faults_own_kind() -> None:
    from edge_runtime.tools.watch import json_line

    sensor = json.loads(json_line("health/p/alerts", {"kind": "stuck", "state": "raised"}, "sensor", 1.0, False))
    alert = json.loads(json_line("alerts/p", {"state": "raised"}, "alert", 1.0, False))
    assert (sensor["row"], sensor["kind"]) == ("sensor", "stuck") and (alert["row"], alert["kind"]) == ("alert", "alert")
