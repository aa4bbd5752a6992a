"""Operator commands through the real Mosquitto with the deploy kit's config and ACL (deploy/mosquitto/).

The daemon runs as ``edgewatch`` with ``runtime.commands`` on; ``operator`` sends verdicts with
``edgewatch feedback``'s own function (edge_runtime/tools/feedback.send_command) and gets a reply for each;
a sensor account's command is refused by the broker (MQTT 5: "Not authorized" in its PUBACK) and never reaches
the daemon; a malformed or inapplicable command from the operator is refused by the daemon, with the reason.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edge_runtime.config import build_config
from edge_runtime.tools.feedback import send_command
from tests.deploy.mqtt_probe import new_client, try_connect
from tests.deploy.prod_broker import kit_broker
from tests.edge_runtime.mqtt_helpers import running_daemon, wait_until
from tests.edge_runtime.onnx_models import make_metadata, series, write_model

pytestmark = pytest.mark.slow

USERS = {"edgewatch": "daemon-secret", "operator": "operator-secret", "pump1": "pump1-secret"}


@pytest.fixture(scope="module")
def broker_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with kit_broker(tmp_path_factory.mktemp("commands-broker"), USERS) as port:
        yield port


def _client(port: int, user: str) -> mqtt.Client:
    c = new_client(user, USERS[user], mqtt.MQTTv5)
    outcome = try_connect(c, port)
    assert outcome.connected, outcome.reason
    c.loop_start()
    return c


def _operator_cfg(port: int, tmp_path: Path, user: str = "operator"):
    pw = tmp_path / f"{user}.pw"
    pw.write_text(USERS[user] + "\n")
    pw.chmod(0o600)
    return build_config(None, {"broker": f"mqtt://127.0.0.1:{port}", "username": user, "password_file": str(pw)})


def test_only_an_operator_may_command_and_every_command_is_answered(broker_port: int, tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.onnx", make_metadata(window=8, hop=4, threshold=1.0))
    with running_daemon(f"mqtt://127.0.0.1:{broker_port}", model, username="edgewatch", password="daemon-secret",
                        commands=True, raise_after=2, clear_after=2, state_dir=str(tmp_path / "state")) as d:
        pump = _client(broker_port, "pump1")
        episode = series(200, seed=4)
        episode[60:120, :2] *= 6.0  # scores ~1.6 over a threshold of 1.0: one alert (on channels 0 and 1)
        for i, row in enumerate(episode):
            pump.publish("sensors/pump1/data", json.dumps({"ts": 1.7e9 + i, "values": row.tolist()}), qos=1)
        wait_until(lambda: d.stats.counts["alerts_cleared"] == 1, 20, "the episode raised and cleared")
        found = d.scorer.thresholds.find("", "pump1")
        assert found is not None
        alert_id = found[1].alert_id

        # a sensor account may not command: the broker refuses it, the daemon never sees it
        acks: dict[int, str] = {}
        pump.on_publish = lambda c, u, mid, rc, props: acks.__setitem__(mid, str(rc))
        forged = {"command": "feedback", "alert_id": alert_id, "verdict": "false_alarm", "request_id": "forged"}
        mid = pump.publish("edgewatch/test/command", json.dumps(forged), qos=1).mid
        wait_until(lambda: mid in acks, 10, "the broker's PUBACK")
        assert acks[mid] == "Not authorized"

        cfg = _operator_cfg(broker_port, tmp_path)
        reply = send_command(cfg, {"command": "feedback", "alert_id": alert_id, "verdict": "false_alarm",
                                   "note": "cleaning", "source": "test"}, "test")
        assert reply["status"] == "accepted" and reply["device"] == "pump1" and reply["threshold_before"] == 1.0
        assert reply["threshold"] == pytest.approx(found[1].peak * 1.05)
        again = send_command(cfg, {"command": "feedback", "alert_id": alert_id, "verdict": "false_alarm"}, "test")
        assert again["status"] == "accepted" and "already recorded" in again["reason"]  # the same verdict: no change
        assert again["threshold"] == pytest.approx(reply["threshold"])
        assert d.stats.counts["commands_accepted"] == 2 and d.stats.counts["feedback_false_alarms"] == 1
        assert d.stats.counts["commands_refused"] == 0  # the forged one never arrived

        op = _client(broker_port, "operator")  # a raw client: a payload that is not JSON
        replies: list[dict] = []
        op.on_message = lambda c, u, m: replies.append(json.loads(m.payload))
        op.subscribe("edgewatch/test/reply", 1)
        time.sleep(0.3)
        op.publish("edgewatch/test/command", b"{not json", qos=1)
        wait_until(lambda: bool(replies), 10, "a reply to a malformed command")
        op.disconnect()
        op.loop_stop()
        assert replies[0]["status"] == "refused" and "not JSON" in replies[0]["reason"]
        for doc, why in (({"command": "reboot"}, "'command'"),
                         ({"command": "feedback", "alert_id": "nope", "verdict": "ack"}, "unknown"),
                         ({"command": "recalibrate", "device": "pump1"}, "warm-ups are off")):
            got = send_command(cfg, dict(doc), "test")
            assert got["status"] == "refused" and why in got["reason"], got
        assert d.stats.counts["commands_refused"] == 4

        # the same episode again: the raised threshold lets it pass
        for i, row in enumerate(episode):
            pump.publish("sensors/pump1/data", json.dumps({"ts": 1.7e9 + 1000 + i, "values": row.tolist()}), qos=1)
        wait_until(lambda: d.stats.counts["windows_scored"] >= 2 * ((200 - 8) // 4 + 1) - 2, 20, "the replay scored")
        assert d.stats.counts["alerts_raised"] == 1
        pump.disconnect()
        pump.loop_stop()
    log = (tmp_path / "state" / "feedback.jsonl").read_text().splitlines()
    assert [json.loads(x)["verdict"] for x in log] == ["false_alarm"]
    kept = json.loads((tmp_path / "state" / "devices.json").read_text())
    assert kept["devices"]["pump1"]["feedback"]["false_alarms"] == 1
