"""Broker stopped ~10 s mid-stream and restarted with persistence on the same port.

Ground truth is the publisher's: every (device, ts) it published. The publisher and the
alert collector use persistent sessions of their own, so the test side loses nothing; the
question is whether the daemon does.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.edge_runtime.mqtt_helpers import idle, running_daemon
from tests.edge_runtime.onnx_models import make_metadata, series, write_model
from tests.reliability.harness import RUN_AS_ME, Client, wait_until

W, HOP, THR, T0 = 16, 4, 0.5, 1_700_000_000.0
DEVICES = [f"d{i}" for i in range(4)]
RATE_HZ = 25  # per device: 100 msg/s in all, a load the daemon sustains on a shared 2-core box
DOWN_S = 10.0


def anomalous(n: int, seed: int) -> np.ndarray:
    """Normal, then anomalous samples 40..100, then normal again: one raise and one clear."""
    x = series(n, seed=seed)
    rng = np.random.default_rng(seed + 7)
    x[40:100, 1] += (2.0 * rng.standard_normal(60)).astype(np.float32)
    return x


def alert_msgs(col: Client) -> list[float]:
    """Arrival times of alert messages (not the retained state)."""
    with col.lock:
        return [at for t, _, _, at in col.messages if t.startswith("alerts/") and not t.endswith("/state")]


class StreamingPublisher(threading.Thread):
    """Publishes every device at RATE_HZ (QoS 1, stamped) until stopped; records the ground truth."""

    def __init__(self, client: Client) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.sent: list[tuple[str, float]] = []
        self.sent_at: list[float] = []
        self.halt = threading.Event()
        self.x = {d: series(5000, seed=i) for i, d in enumerate(DEVICES)}

    def run(self) -> None:
        i = 0
        t_next = time.monotonic()
        while not self.halt.is_set() and i < 5000:
            for d in DEVICES:
                ts = T0 + i
                self.client.publish(f"sensors/{d}/data", json.dumps({"ts": ts, "values": self.x[d][i].tolist()}))
                self.sent.append((d, ts))
                self.sent_at.append(time.monotonic())
            i += 1
            t_next += 1.0 / RATE_HZ
            time.sleep(max(0.0, t_next - time.monotonic()))


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_broker_down_10s_nothing_lost(protocol: str, mosquitto_factory, tmp_path: Path, figure, caplog) -> None:
    caplog.set_level(logging.INFO, logger="edge_runtime.service.mqtt")
    broker = mosquitto_factory(persistence=True, extra_config=RUN_AS_ME).start()
    model = write_model(tmp_path / "m.onnx", make_metadata(window=W, hop=HOP, threshold=THR))
    alerts_col = Client(broker.port, "alerts-col", ("alerts/#",))
    with running_daemon(broker.url, model, reconnect_min_s=1.0, reconnect_max_s=4.0, max_outgoing=1000,
                        protocol=protocol) as d:
        received: list[tuple[str, float]] = []
        received_at: dict[tuple[str, float], float] = {}
        orig = d.link._on_message

        def record(topic: str, payload: bytes) -> None:
            key = (topic.split("/")[1], json.loads(payload)["ts"])
            received.append(key)
            received_at.setdefault(key, time.monotonic())
            orig(topic, payload)

        d.link._on_message = record
        attempts: list[float] = []
        orig_fail = d.link.client.on_connect_fail

        def count_fail(client, userdata) -> None:
            attempts.append(time.monotonic())
            orig_fail(client, userdata)

        d.link.client.on_connect_fail = count_fail
        pub = StreamingPublisher(Client(broker.port, "ground-truth-pub"))
        pub.start()
        time.sleep(3.0)

        broker.stop()  # ---- outage ----
        t_down = time.monotonic()
        wait_until(lambda: not d.link.connected.is_set(), 5, "daemon notices the outage")
        # Alerts raised while the broker is away: windows that reach the daemon's ingest during
        # the outage (injected at the MQTT callback, as if already received) must go out later.
        x = anomalous(160, seed=42)
        for i in range(160):
            d.ingest.handle("sensors/local/data", json.dumps({"ts": T0 + i, "values": x[i].tolist()}).encode())
        idle(d)
        raised_offline = d.stats.counts["alerts_raised"] + d.stats.counts["alerts_cleared"]
        assert raised_offline == 2  # one raise, one clear, both while disconnected
        time.sleep(max(0.0, DOWN_S - (time.monotonic() - t_down)))

        broker.start()  # ---- back, same port, same persistence ----
        t_up = time.monotonic()
        reconnect_s = wait_until(d.link.connected.is_set, 20, "daemon reconnects")
        time.sleep(3.0)
        pub.halt.set()
        pub.join()
        wait_until(lambda: pub.client.unacked() == 0, 30, "publisher queue flushed")
        truth = set(pub.sent)
        wait_until(lambda: truth <= set(received), 30, "every published sample received")
        idle(d)
        wait_until(lambda: len(alert_msgs(alerts_col)) >= 2, 20, "alerts raised offline delivered")
        stats = d.stats_doc()
    backlog = [k for k, t in zip(pub.sent, pub.sent_at, strict=True) if t_down <= t <= t_up]
    backlog_s = max(received_at[k] for k in backlog) - t_up
    alerts_s = max(t for t in alert_msgs(alerts_col)) - t_up
    alerts_col_docs = [doc for t, doc in alerts_col.docs("alerts/") if not t.endswith("/state")]
    assert len(backlog) > 0.8 * DOWN_S * RATE_HZ * len(DEVICES)
    states = [doc for t, doc in alerts_col.docs("alerts/local/state")]
    alerts_col.close()
    pub.client.close()

    lost = truth - set(received)
    dup = len(received) - len(set(received))
    assert not lost
    assert stats["samples"] == len(truth) + 160  # every unique sample accepted (+ the injected device)
    assert set(stats["drops"]) <= {"duplicate"} and stats["drops"].get("duplicate", 0) == dup
    assert [a["state"] for a in alerts_col_docs] == ["raised", "cleared"]
    assert [a["seq"] for a in alerts_col_docs] == [1, 2]
    assert states and states[-1]["state"] == "cleared"
    assert stats["reconnects"] == 1
    # the broker really kept the sessions across its restart (not a lucky race of resubscriptions)
    assert "session present: True" in caplog.text
    assert alerts_col.session_present == [False, True] and pub.client.session_present == [False, True]
    # backoff, not a busy loop: 1 s doubling to 4 s gives at most ~5 attempts in 10 s
    assert 1 <= len(attempts) <= 8, len(attempts)
    figure(
        f"broker_outage_10s_mqtt{protocol}",
        samples_sent=len(truth), samples_lost=len(lost), duplicates_redelivered=dup,
        alerts_raised_offline=raised_offline, alerts_lost=raised_offline - len(alerts_col_docs),
        reconnect_attempts_while_down=len(attempts), down_s=round(t_up - t_down, 1),
        samples_published_while_down=len(backlog), reconnect_s=round(reconnect_s, 2),
        backlog_received_s=round(backlog_s, 2), alerts_delivered_s=round(alerts_s, 2),
    )


def test_outgoing_queue_is_bounded_and_counted(tmp_path: Path) -> None:
    """While the broker is away, alerts wait in paho's queue up to ``max_outgoing`` and the rest in the publisher
    (``publish_deferred``: retried, not lost), never an unbounded pile-up: past ``max_retry`` held the oldest is
    given up (``publish_lost["critical_lost"]``). A QoS 0 stats message is not queued: lost as ``not_connected``.
    None of it is an input drop."""
    from edge_runtime.config import build_config
    from edge_runtime.pipeline.documents import Outbound
    from edge_runtime.pipeline.stats import Stats
    from edge_runtime.service.mqtt import MqttLink
    from edge_runtime.service.publisher import Publisher

    cfg = build_config(None, {"path": "unused.onnx", "instance": "q", "max_outgoing": 3,
                              "broker": "mqtt://127.0.0.1:1"})
    stats = Stats()
    link = MqttLink(cfg, ["sensors/+/data"], lambda t, p: None, "edgewatch/q/status", dict, stats)
    assert [link.publish(f"alerts/d{i}", "{}", qos=1) for i in range(4)] == [True, True, True, False]
    assert link.publish("edgewatch/q/stats", "{}", qos=0) is False  # QoS 0 is not queued while away
    assert stats.counts["published"] == 3 and not stats.drops and not stats.publish_lost  # the link counts no loss
    pub = Publisher(link, stats, max_retry=3)
    pub.send([Outbound(f"alerts/e{i}", "{}") for i in range(4)])
    assert stats.counts["publish_deferred"] == 4 and len(pub) == 3 and stats.publish_lost == {"critical_lost": 1}
    pub.send([Outbound("edgewatch/q/stats", "{}", qos=0, retain=True, bulk=True, paced=False)])
    assert stats.publish_lost == {"critical_lost": 1, "not_connected": 1}
    snap = stats.snapshot()
    assert snap["drops"] == {} and snap["dropped_total"] == 0 and snap["publish_lost_total"] == 2


def test_outgoing_losses_while_the_broker_is_away_are_not_input_drops(mosquitto_factory, tmp_path: Path) -> None:
    """A real daemon, its Mosquitto stopped: a QoS 0 stats document published meanwhile is counted in
    ``publish_lost["not_connected"]``; QoS 1 alerts beyond ``max_outgoing`` wait (``publish_deferred``) and
    all arrive after the restart (``publish_retried``). ``drops`` stays empty: the input was fine. The stats
    document after the restart says so."""
    from edge_runtime.pipeline.documents import Outbound
    from edge_runtime.service.paho_buffered import unacknowledged

    broker = mosquitto_factory(persistence=True, extra_config=RUN_AS_ME).start()
    model = write_model(tmp_path / "m.onnx", make_metadata(window=W, hop=HOP, threshold=THR))
    col = Client(broker.port, "outgoing-col", ("alerts/#", "edgewatch/+/stats"))
    try:
        with running_daemon(broker.url, model, max_outgoing=4, reconnect_min_s=1.0, reconnect_max_s=1.0) as d:
            wait_until(lambda: unacknowledged(d.link.client) == 0, 10, "status acknowledged")
            broker.stop()  # ---- outage ----
            wait_until(lambda: not d.link.connected.is_set(), 10, "daemon disconnected")
            d.housekeeping.publish_stats()  # QoS 0, retained: not queued while away
            d.publisher.send([Outbound(f"alerts/x{i}", json.dumps({"n": i})) for i in range(6)])
            away = d.stats_doc()
            assert away["publish_lost"] == {"not_connected": 1} and away["publish_lost_total"] == 1
            assert away["publish_deferred"] == 2 and away["drops"] == {} and away["dropped_total"] == 0
            broker.start()  # ---- back ----
            wait_until(lambda: len(col.docs("alerts/x")) == 6, 30, "every alert delivered")
            assert sorted(doc["n"] for _, doc in col.docs("alerts/x")) == list(range(6))
            d.housekeeping.publish_stats()
            wait_until(lambda: col.docs("edgewatch/test/stats"), 10, "stats document")
        _, doc = col.docs("edgewatch/test/stats")[-1]
        # retried: the 2 alerts held, and the online status the still full queue refused at the reconnect
        assert doc["publish_lost"] == {"not_connected": 1} and doc["publish_retried"] == 3
        assert doc["drops"] == {} and doc["dropped_total"] == 0
    finally:
        col.close()


def test_the_online_status_refused_at_a_reconnect_is_sent_once_the_queue_drains(mosquitto_factory,
                                                                                 tmp_path: Path) -> None:
    """At a reconnect the will has said "connection lost"; when paho's queue is still full of the alerts held
    while away, the link's online status is refused. It is sent again through the publisher, so the retained
    status says online (it stayed "connection lost" while the daemon ran: `fleet status` showed it offline)."""
    from edge_runtime.pipeline.documents import Outbound
    from edge_runtime.service.paho_buffered import unacknowledged

    broker = mosquitto_factory(persistence=True, extra_config=RUN_AS_ME).start()
    model = write_model(tmp_path / "m.onnx", make_metadata(window=W, hop=HOP, threshold=THR))
    try:
        with running_daemon(broker.url, model, max_outgoing=4, reconnect_min_s=1.0, reconnect_max_s=1.0) as d:
            wait_until(lambda: unacknowledged(d.link.client) == 0, 10, "status acknowledged")
            broker.stop()  # ---- outage: paho's queue fills with held alerts ----
            wait_until(lambda: not d.link.connected.is_set(), 10, "daemon disconnected")
            d.publisher.send([Outbound(f"alerts/x{i}", json.dumps({"n": i})) for i in range(6)])
            broker.start()  # ---- back ----
            wait_until(d.link.connected.is_set, 20, "daemon reconnected")
            online = lambda c: [doc for _, doc in c.docs("edgewatch/test/status") if doc.get("state") == "online"]  # noqa: E731
            live = Client(broker.port, "status-live", ("edgewatch/+/status",), persistent=False)
            try:
                wait_until(lambda: online(live), 20, "the online status after the reconnect")
            finally:
                live.close()
            late = Client(broker.port, "status-late", ("edgewatch/+/status",), persistent=False)  # the retained one
            try:
                wait_until(lambda: late.docs("edgewatch/test/status", retained=True), 10, "the retained status")
                assert late.docs("edgewatch/test/status", retained=True)[-1][1]["state"] == "online"
            finally:
                late.close()
    finally:
        broker.stop()
