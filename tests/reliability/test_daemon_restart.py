"""The daemon as a real process: SIGTERM then start (as ``systemctl restart`` does), SIGKILL then
start. Sensor data published while it is down reaches the next process through its persistent
session (stable client id, MQTT 5 session expiry); the Last Will marks a killed daemon
offline; the retained per-device alert state is put right by the next process (a device left
"raised" is cleared by normal data or, when silent, by idle expiry)."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.edge_runtime.onnx_models import make_metadata, series, write_model
from tests.reliability.harness import RUN_AS_ME, Client, DaemonProcess, wait_until

W, HOP, THR, T0 = 16, 4, 0.5, 1_700_000_000.0
INSTANCE = "rel"


def anomalous(n: int, seed: int) -> np.ndarray:
    x = series(n, seed=seed)
    x[:, 1] += (2.0 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)
    return x


class Stream(threading.Thread):
    """Device ``pump`` at ~50 Hz (QoS 1, stamped) while ``running`` is set."""

    def __init__(self, client: Client) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.running = threading.Event()
        self.halt = threading.Event()
        self.sent = 0
        self.x = series(20000, seed=3)

    def run(self) -> None:
        while not self.halt.is_set():
            if not self.running.wait(0.05):
                continue
            self.client.publish("sensors/pump/data", json.dumps({"ts": T0 + self.sent, "values": self.x[self.sent].tolist()}))
            self.sent += 1
            time.sleep(0.02)


def burst(client: Client, device: str, x: np.ndarray, t0: float) -> int:
    for i in range(x.shape[0]):
        client.publish(f"sensors/{device}/data", json.dumps({"ts": t0 + i, "values": x[i].tolist()}))
    wait_until(lambda: client.unacked() == 0, 20, "burst acknowledged")
    return x.shape[0]


def processes(col: Client) -> list[dict]:
    """The last stats document of each daemon process, in order (a process's uptime only grows)."""
    runs: list[dict] = []
    for _, doc in col.docs(f"edgewatch/{INSTANCE}/stats"):
        if runs and doc["uptime_s"] >= runs[-1]["uptime_s"]:
            runs[-1] = doc
        else:
            runs.append(doc)
    return runs


def statuses(col: Client) -> list[dict]:
    return [doc for _, doc in col.docs(f"edgewatch/{INSTANCE}/status")]


def retained_state(port: int, device: str) -> dict | None:
    c = Client(port, "late", (f"alerts/{device}/state",), persistent=False)
    time.sleep(0.3)
    docs = c.docs(retained=True)
    c.close()
    return docs[-1][1] if docs else None


@pytest.mark.slow
def test_sigterm_restart_and_sigkill(mosquitto_factory, tmp_path: Path, figure) -> None:
    broker = mosquitto_factory(persistence=True, extra_config=RUN_AS_ME).start()
    model = write_model(tmp_path / "m.onnx", make_metadata(window=W, hop=HOP, threshold=THR))
    args = ["--model", str(model), "--broker", broker.url, "--instance", INSTANCE, "--protocol", "5",
            "--stats-interval-s", "0.5", "--reconnect-min-s", "1", "--reconnect-max-s", "2",
            "--device-idle-s", "4", "--log-level", "INFO"]
    log = tmp_path / "daemon.log"
    col = Client(broker.port, "col", (f"edgewatch/{INSTANCE}/#", "alerts/#"))
    pub = Client(broker.port, "pub")
    stream = Stream(pub)
    stream.start()

    def online(n: int) -> None:
        wait_until(lambda: sum(d["state"] == "online" for d in statuses(col)) >= n, 20, f"online #{n}")

    p1 = DaemonProcess(args, log).start()
    online(1)
    time.sleep(0.3)  # the sensor subscription follows the connect
    stream.running.set()
    hot = burst(pub, "hot", anomalous(40, 1), T0)  # raised, then left in that state
    hot += burst(pub, "cold", anomalous(40, 2), T0)  # raised, then silent for good
    wait_until(lambda: len([d for t, d in col.docs("alerts/") if d.get("state") == "raised" and not t.endswith("/state")]) == 2,
               20, "two raised alerts")
    time.sleep(1.5)

    # ---- SIGTERM then start, the stream keeps going ----
    t_term = time.monotonic()
    p1.signal(signal.SIGTERM)
    assert p1.wait(15) == 0
    stop_s = time.monotonic() - t_term
    assert statuses(col)[-1]["state"] == "offline" and statuses(col)[-1]["reason"] == "stopped"
    time.sleep(2.0)
    p2 = DaemonProcess(args, log).start()
    t_start2 = time.monotonic()
    online(2)
    online2_s = time.monotonic() - t_start2
    time.sleep(2.0)
    stream.running.clear()
    time.sleep(0.2)
    wait_until(lambda: pub.unacked() == 0, 20, "stream acknowledged")
    sent_before_kill = stream.sent + hot
    with contextlib.suppress(AssertionError):  # measured and asserted below
        wait_until(lambda: len(processes(col)) == 2 and sum(p["samples"] for p in processes(col)) >= sent_before_kill,
                   15, "every sample counted by process 1 or 2")
    runs = processes(col)
    term_lost = sent_before_kill - sum(p["samples"] for p in runs)
    term_drops = {k: v for p in runs for k, v in p["drops"].items()}
    assert len(runs) == 2 and term_lost == 0 and term_drops == {}, (term_lost, term_drops, log.read_text()[-3000:])

    # ---- SIGKILL, data published meanwhile, start ----
    p2.signal(signal.SIGKILL)
    p2.wait(10)
    t_kill = time.monotonic()
    will_s = wait_until(lambda: statuses(col)[-1]["state"] == "offline", 10, "Last Will") + 0.0
    assert statuses(col)[-1]["reason"] == "connection lost"
    down = burst(pub, "pump", series(200, seed=9), T0 + stream.sent)  # while nobody is connected
    down += burst(pub, "hot", series(60, seed=4), T0 + 100)  # normal again: must clear
    p3 = DaemonProcess(args, log).start()
    online(3)
    recover_s = time.monotonic() - t_kill
    wait_until(lambda: len(processes(col)) == 3 and processes(col)[2]["samples"] >= down, 20,
               "the samples published while killed")
    got3 = processes(col)[2]["samples"]
    # the device left raised by the killed process is cleared by its normal data, the silent
    # one by idle expiry; neither stays "raised" forever
    wait_until(lambda: (retained_state(broker.port, "hot") or {}).get("state") == "cleared", 15, "hot cleared")
    wait_until(lambda: (retained_state(broker.port, "cold") or {}).get("state") == "cleared", 15, "cold cleared")
    stuck = sum((retained_state(broker.port, dev) or {}).get("state") == "raised" for dev in ("hot", "cold", "pump"))
    assert p3.stop() == 0
    stream.halt.set()
    col.close()
    pub.close()
    kill_lost = down - got3
    assert kill_lost == 0
    assert log.read_text().count("session present: True") == 2  # processes 2 and 3 resumed process 1's session
    figure(
        "daemon_sigterm_restart", samples_sent=sent_before_kill, samples_lost=term_lost, exit_code=0,
        stop_s=round(stop_s, 2), restart_to_online_s=round(online2_s, 2),
    )
    figure(
        "daemon_sigkill_restart", samples_sent_while_dead=down, samples_lost=kill_lost,
        last_will_s=round(will_s, 2), kill_to_online_s=round(recover_s, 2),
        stuck_raised_devices_after=stuck,
    )


def test_adoption_rules_without_broker(tmp_path: Path) -> None:
    """Only a retained 'raised' state of this instance, on its own device's topic, is adopted;
    an adopted device that stays silent is expired (and cleared) after device_idle_s."""
    from edge_runtime.config import build_config
    from edge_runtime.service.daemon import Daemon

    model = write_model(tmp_path / "m.onnx", make_metadata(window=W, hop=HOP, threshold=THR))
    d = Daemon(build_config(None, {"path": str(model), "instance": INSTANCE, "device_idle_s": 5.0,
                                   "stats_interval_s": 0.0, "watch_interval_s": 0.0}))
    sent: list[tuple[str, dict]] = []
    d.link.publish = lambda topic, payload, qos=1, retain=False: sent.append((topic, json.loads(payload))) or True

    def doc(**kw) -> bytes:
        return json.dumps({"device": "a", "state": "raised", "instance": INSTANCE, "seq": 4,
                           "raised_alert_id": "r1", **kw}).encode()

    d.scorer.adopt("alerts/a/state", doc(instance="other"))
    d.scorer.adopt("alerts/a/state", doc(state="cleared"))
    d.scorer.adopt("alerts/b/state", doc())  # topic and device disagree
    d.scorer.adopt("alerts/a/state", b"\xff not json")
    d.scorer.adopt("alerts/a/state", b'["a"]')
    assert d.tracker.devices == {}
    d.scorer.adopt("alerts/a/state", doc())
    st = d.tracker.devices["a"]
    assert st.state == "raised" and st.seq == 4 and st.alert_id == "r1"
    t = d.scorer.adopted["a"]
    assert d.expire_idle(t + 1.0) == [] and sent == []
    assert d.expire_idle(t + 5.0) == ["a"]
    assert d.stats.counts["devices_expired"] == 1 and "a" not in d.tracker.devices
    topic, cleared = sent[-1]
    assert topic == "alerts/a/state" and cleared["state"] == "cleared" and cleared["reason"] == "expired"
    assert cleared["raised_alert_id"] == "r1" and cleared["seq"] == 5  # the cleared alert's seq
    alert = [m for tp, m in sent if tp == "alerts/a"][-1]
    assert alert["state"] == "cleared" and alert["reason"] == "expired" and alert["top_channels"] == []


@pytest.mark.parametrize("acl", ["shipped", "without_state_read"])
def test_adoption_under_the_production_acl(acl: str, tmp_path: Path) -> None:
    """Adoption needs the daemon's account to read ``alerts/+/state``: the shipped ACL grants it
    (adopted); without that line Mosquitto grants the subscription but delivers nothing (not adopted)."""
    from tests.deploy.prod_broker import PROD_ACL, free_port, make_password_file, production_broker
    from tests.edge_runtime.mqtt_helpers import running_daemon

    grant = "topic read alerts/+/state\n"
    text = PROD_ACL.read_text()
    assert text.count(grant) == 1, "the shipped ACL should grant the daemon read access to its retained states"
    if acl == "without_state_read":
        text = text.replace(grant, "")
    acl_path = tmp_path / "acl"
    acl_path.write_text(text)
    pw = make_password_file(tmp_path / "passwd", {"edgewatch": "pw-1"})
    port = free_port()
    broker = production_broker(tmp_path / "broker", {1883: port}, {"password_file": pw, "acl_file": acl_path}, 1883)
    broker.start()
    try:
        owner = Client(port, "edgewatch-old", auth=("edgewatch", "pw-1"), persistent=False)
        doc = {"schema_version": 1, "device": "x", "state": "raised", "instance": "acl", "seq": 2,
               "raised_alert_id": "r9", "since": 1.0}
        owner.publish("alerts/x/state", json.dumps(doc), retain=True)
        wait_until(lambda: owner.unacked() == 0, 10, "retained state stored")
        owner.close()
        model = write_model(tmp_path / "m.onnx", make_metadata(window=W, hop=HOP, threshold=THR))
        with running_daemon(broker.url, model, instance="acl", username="edgewatch", password="pw-1") as d:
            # the broker sends retained copies before it answers the UNSUBSCRIBE sent at the SUBACK,
            # so once adoption has ended every retained state that the ACL lets through has arrived
            wait_until(lambda: d.link.connected.is_set() and not d.link._adopting, 10, "adoption finished")
            adopted = "x" in d.tracker.devices
    finally:
        broker.stop()
    assert adopted is (acl == "shipped")
