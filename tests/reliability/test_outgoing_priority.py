"""Issue 20 item 4: alerts and states are never dropped for lower-priority traffic. A burst of new devices
with Home Assistant discovery on produced more retained configs than ``max_outgoing``: configs, and an
alert in the same burst, were dropped as ``outgoing_full`` (now: ``publish_deferred`` and ``publish_lost``). Now discovery is paced (held back, sent as
the broker acknowledges), bulk traffic (discovery, scores, stats) may fill only half the outgoing queue, and
an alert or state that still finds the queue full is kept and retried.

Real Mosquitto, an in-process daemon, a really exported ONNX file."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import numpy as np

from edge_runtime.pipeline.documents import Outbound
from edge_runtime.pipeline.stats import Stats
from edge_runtime.service.publisher import Publisher as OutboundPublisher
from tests.edge_runtime.mqtt_helpers import Collector, Publisher, idle, running_daemon, wait_until
from tests.edge_runtime.onnx_models import make_metadata, series, write_model

W, HOP, T0 = 16, 4, 1_700_000_000.0


def test_a_discovery_burst_does_not_cost_an_alert(mosquitto, tmp_path: Path, figure) -> None:
    model = write_model(tmp_path / "m.onnx", make_metadata(window=W, hop=HOP, threshold=0.5))
    n_devices = 400
    col = Collector(mosquitto.port, ["alerts/#", "homeassistant/#"])
    with running_daemon(mosquitto.url, model, homeassistant_discovery=True, max_outgoing=100,
                        log_interval_s=3600.0) as d:
        pub = Publisher(mosquitto.port)
        x = series(W * 2, seed=4)
        ts = [T0 + i for i in range(W * 2)]
        for i in range(n_devices):  # one batch message per device: 2W samples -> W/HOP + 1 windows each
            pub.send(f"sensors/d{i}/data", json.dumps({"ts": ts, "values": x.tolist()}))
        bad = x.copy()
        bad[:, 1] += 4.0 * np.random.default_rng(1).standard_normal(W * 2).astype(np.float32)
        pub.send("sensors/anomalous/data", json.dumps({"ts": ts, "values": bad.tolist()}))
        pub.close()
        wait_until(lambda: d.stats.counts["samples"] >= (n_devices + 1) * W * 2, 30, "samples in")
        idle(d)
        wait_until(lambda: any(a["device"] == "anomalous" for a in col.alerts()), 20, "the alert delivered")
        wait_until(lambda: any(t == "alerts/anomalous/state" for t, _ in col.docs("alerts/")), 10, "its state")
        configs = lambda: {t for t, _, _ in list(col.messages) if t.startswith("homeassistant/")}  # noqa: E731
        wait_until(lambda: len(configs()) >= n_devices + 1, 60, "every device's discovery config")
        deferred, lost = d.stats.counts["publish_deferred"], dict(d.stats.publish_lost)
    figure("discovery_burst", devices=n_devices + 1, max_outgoing=100, discovery_configs=len(configs()),
           publish_deferred=deferred)
    assert deferred == 0 and lost == {}, (deferred, lost)  # no alert or state ever found the queue full
    col.close()


class FullLink:
    """A link whose queue refuses every critical message until ``open``."""

    def __init__(self) -> None:
        self.open = False
        self.sent: list[str] = []

    def publish(self, topic: str, payload: str | bytes, qos: int = 1, retain: bool = False,
                bulk: bool = False) -> bool:
        if not self.open:
            return False
        self.sent.append(topic)
        return True


def test_an_alert_that_finds_the_queue_full_is_retried_in_order() -> None:
    link, stats = FullLink(), Stats()
    p = OutboundPublisher(link, stats)
    p.send([Outbound("alerts/a", "{}"), Outbound("alerts/a/state", '{"s":1}', retain=True)])
    p.send([Outbound("alerts/a/state", '{"s":2}', retain=True), Outbound("alerts/b", "{}")])
    assert link.sent == [] and stats.counts["publish_retried"] == 0
    p.pace()
    assert link.sent == []
    link.open = True
    p.pace()
    assert link.sent == ["alerts/a", "alerts/a/state", "alerts/b"]  # the newer state replaced the older
    assert stats.counts["publish_retried"] == 3 and not stats.drops and not stats.publish_lost
    assert stats.counts["publish_deferred"] == 4  # each held once; the newer state took the older's place


def test_a_score_the_link_refuses_is_lost_by_reason_never_an_input_drop(caplog) -> None:
    link, stats = FullLink(), Stats()
    p = OutboundPublisher(link, stats, max_paced=1)
    with caplog.at_level(logging.WARNING, logger="edge_runtime.service.publisher"):
        p.send([Outbound("scores/a", "{}", qos=0, bulk=True)] * 2)  # a link without a connected event: queue full
        link.connected = threading.Event()  # type: ignore[attr-defined]  # now one that says it is down
        p.send([Outbound("scores/a", "{}", qos=0, bulk=True)])
        p.send([Outbound(f"homeassistant/{i}/config", "{}", retain=True, bulk=True) for i in range(2)])
    assert stats.publish_lost == {"outgoing_full": 2, "not_connected": 1, "discovery_dropped": 1}
    assert not stats.drops and stats.counts["publish_deferred"] == 0 and len(p) == 1
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and all(" lost: " in line for line in lines), lines  # one line per reason (rate-limited)


def test_retained_stats_go_out_at_once_where_retained_discovery_waits_for_the_tick() -> None:
    """The last stats document before a stop must not sit in the paced queue when the link closes."""
    link, stats = FullLink(), Stats()
    link.open = True
    p = OutboundPublisher(link, stats)
    p.send([Outbound("homeassistant/x/config", "{}", retain=True, bulk=True),
            Outbound("edgewatch/gw/stats", "{}", qos=0, retain=True, bulk=True, paced=False)])
    assert link.sent == ["edgewatch/gw/stats"] and len(p) == 1
    p.pace()
    assert link.sent == ["edgewatch/gw/stats", "homeassistant/x/config"]


def test_reassert_sends_each_remembered_topics_newest_and_forgets_a_device_that_left() -> None:
    link, stats = FullLink(), Stats()
    link.open = True
    p = OutboundPublisher(link, stats, max_remembered=3)
    p.send([Outbound("alerts/a/state", '{"s":1}', retain=True), Outbound("alerts/b/state", '{"s":1}', retain=True),
            Outbound("edgewatch/gw/status", "{}", retain=True, reassert=False),  # published afresh at connect
            Outbound("alerts/a/state", '{"s":2}', retain=True), Outbound("health/c", "{}", retain=True, bulk=True)])
    p.pace()
    link.sent.clear()
    p.forget_remembered(["health/c"])  # c left
    assert p.reassert() == 2
    p.pace()
    assert link.sent == ["alerts/a/state", "alerts/b/state"] and stats.counts["retained_reasserted"] == 2
    p.send([Outbound(f"alerts/x{i}/state", "{}", retain=True) for i in range(3)])  # bounded: the oldest go
    assert p.reassert() == 3
