"""edge_runtime.tools.watch (`edgewatch alerts`): what it emits, when it returns, how the first connect fails.

Against a real Mosquitto; the published documents are the oracle."""

from __future__ import annotations

import json
import threading
import time

import pytest

from edge_runtime.config import build_config
from edge_runtime.tools.localbroker import free_port
from edge_runtime.tools.watch import WatchError, format_row, watch_alerts
from tests.edge_runtime.mqtt_helpers import Publisher

ALERT = {"alert_id": "a1", "device": "pump-1", "state": "raised", "seq": 1, "score": 2.5, "threshold": 1.0,
         "window_end": 1.7e9, "top_channels": [{"name": "Pressure", "share": 0.75}]}
STATE = {"schema_version": 1, "device": "pump-1", "state": "raised", "seq": 1, "since": 1.7e9, "instance": "gw"}


def _watch(broker_url: str, **kw) -> tuple[threading.Thread, list[tuple[str, dict]], list[int], list[str]]:
    got: list[tuple[str, dict]] = []
    seen: list[int] = []
    notes: list[str] = []
    cfg = build_config(None, {"broker": broker_url, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0})

    def run() -> None:
        seen.append(watch_alerts(cfg, lambda t, d: got.append((t, d)), notify=notes.append, **kw))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, got, seen, notes


def test_emits_alerts_and_retained_states_and_stops_after_count(mosquitto) -> None:
    pub = Publisher(mosquitto.port)
    pub.send("alerts/pump-1/state", json.dumps(STATE))  # not retained: only live messages here
    pub.flush()
    t, got, seen, _ = _watch(mosquitto.url, count=2, timeout=15)
    time.sleep(0.5)  # subscribed
    pub.send("alerts/pump-1/state", json.dumps(STATE))
    pub.send("alerts/pump-1", b"not json")  # skipped
    pub.send("alerts/pump-1", b"[1, 2]")  # not an object: skipped
    pub.send("alerts/pump-1", json.dumps(ALERT))
    pub.send("alerts/pump-2", json.dumps({**ALERT, "alert_id": "a2", "device": "pump-2"}))
    pub.close()
    t.join(15)
    assert seen == [2]
    assert [(topic, d.get("alert_id"), d["device"]) for topic, d in got] == [
        ("alerts/pump-1/state", None, "pump-1"), ("alerts/pump-1", "a1", "pump-1"), ("alerts/pump-2", "a2", "pump-2")]


def test_without_states_and_until_the_timeout(mosquitto) -> None:
    t, got, seen, _ = _watch(mosquitto.url, include_state=False, timeout=1.5)
    time.sleep(0.5)
    pub = Publisher(mosquitto.port)
    pub.send("alerts/pump-1/state", json.dumps(STATE))
    pub.send("alerts/pump-1", json.dumps(ALERT))
    pub.close()
    t.join(10)
    assert seen == [1] and [topic for topic, _ in got] == ["alerts/pump-1"]


def test_first_connect_failure_is_a_watch_error() -> None:
    cfg = build_config(None, {"broker": f"mqtt://127.0.0.1:{free_port()}"})
    with pytest.raises(WatchError, match="cannot connect to broker 127.0.0.1"):
        watch_alerts(cfg, lambda t, d: None, timeout=5)


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


def test_format_row_shows_state_documents_too() -> None:
    row = format_row(STATE)
    assert "pump-1" in row and "raised" in row and "2023-11-14 22:13:20" in row
