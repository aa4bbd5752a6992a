"""Issue 20 item 7: data lost without a word on the way in.

- The daemon (inline batching, the default) scores what its buffer holds when a read burst would overflow
  it, instead of dropping whole windows (``queue_full``): the network thread stops reading meanwhile, so the
  broker holds the rest (its own queue limit, counted in ``$SYS/broker/publish/messages/dropped``).
  Before: ``--format batch --batch 100`` at full speed dropped ~11 % of windows as ``queue_full``.
- ``publish_recording`` (``edgewatch replay``) and ``publish_plan`` (``edgewatch simulate``) keep at most
  ``max_inflight`` QoS 1 messages unacknowledged and report how many the broker acknowledged.

Real Mosquitto, an in-process daemon, a really exported ONNX file."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.service.daemon import Daemon
from edge_runtime.service.scorer import ThreadedScoring
from edge_runtime.tools.replay import Recording, publish_recording
from tests.edge_runtime.mqtt_helpers import Publisher, daemon_config, idle, running_daemon, wait_until
from tests.edge_runtime.onnx_models import CHANNELS4, make_metadata, series, write_model

W, HOP, T0 = 16, 1, 1_700_000_000.0


def test_a_burst_larger_than_the_window_buffer_is_scored_not_dropped(mosquitto, tmp_path: Path, figure) -> None:
    model = write_model(tmp_path / "m.onnx", make_metadata(window=W, hop=HOP, threshold=0.5))
    n_msgs, per_msg = 60, 100
    x = series(n_msgs * per_msg, seed=6)
    with running_daemon(mosquitto.url, model, queue_windows=256, max_batch=64, log_interval_s=3600.0) as d:
        pub = Publisher(mosquitto.port)
        for k in range(n_msgs):  # each message completes ~100 windows (hop 1): a burst overflows 256
            lo = k * per_msg
            pub.send("sensors/b/data", json.dumps({"ts": [T0 + lo + i for i in range(per_msg)],
                                                   "values": x[lo : lo + per_msg].tolist()}))
        pub.close()
        wait_until(lambda: d.stats.counts["samples"] >= n_msgs * per_msg, 30, "samples in")
        idle(d)
        queued, scored = d.stats.counts["windows_queued"], d.stats.counts["windows_scored"]
        drops = dict(d.stats.drops)
    figure("inline_back_pressure", windows_queued=queued, windows_scored=scored,
           queue_full=drops.get("queue_full", 0))
    assert queued == n_msgs * per_msg - W + 1
    assert drops.get("queue_full", 0) == 0 and scored == queued


def test_replay_reports_what_the_broker_acknowledged(mosquitto) -> None:
    from edge_runtime.service.mqtt import BrokerAddress, ClientOptions, connect

    client = connect(BrokerAddress("127.0.0.1", mosquitto.port, False), ClientOptions(client_id="rp", max_queued=0))
    try:
        rec = Recording(np.arange(3000, dtype=np.float64) + T0, series(3000), tuple(CHANNELS4))
        res = publish_recording(client, rec, "sensors/r/data", fast=True, max_inflight=50)
    finally:
        client.disconnect()
        client.loop_stop()
    assert res.messages == 3000 and res.acknowledged == 3000 and res.max_unacknowledged <= 50


@pytest.mark.parametrize("batching", ["opportunistic", "fill"])
def test_threaded_batching_waits_for_room_instead_of_dropping(mosquitto, tmp_path: Path, figure,
                                                               batching: str) -> None:
    """The inference thread's queue (8 windows) far smaller than one message's windows, the model slowed to
    ~2 ms a batch: the network thread waits for room (reading nothing, acknowledging nothing) instead of
    dropping whole windows as ``queue_full``."""
    model = write_model(tmp_path / "m.onnx", make_metadata(window=W, hop=HOP, threshold=0.5))
    n_msgs, per_msg = 30, 100
    x = series(n_msgs * per_msg, seed=7)
    with running_daemon(mosquitto.url, model, batching=batching, queue_windows=8, max_batch=4,
                        log_interval_s=3600.0) as d:
        fast_run = d.scorer.model.run

        def slow_run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            time.sleep(0.002)
            return fast_run(batch)

        d.scorer.model.run = slow_run  # type: ignore[method-assign]
        t_end: list[np.ndarray] = []  # every scored window's end time, in scoring order
        score = d.scorer.score

        def recorded(items: list) -> list:
            t_end.extend(it.t_end for it in items)
            return score(items)

        d.scorer.score = recorded  # type: ignore[method-assign]
        pub = Publisher(mosquitto.port)
        for k in range(n_msgs):  # each message completes ~100 windows (hop 1), the queue holds 8
            lo = k * per_msg
            pub.send("sensors/t/data", json.dumps({"ts": [T0 + lo + i for i in range(per_msg)],
                                                   "values": x[lo : lo + per_msg].tolist()}))
        pub.close()
        wait_until(lambda: d.stats.counts["samples"] >= n_msgs * per_msg, 60, "samples in")
        idle(d, timeout=60)
        queued, scored = d.stats.counts["windows_queued"], d.stats.counts["windows_scored"]
        drops = dict(d.stats.drops)
    figure(f"threaded_back_pressure_{batching}", windows_queued=queued, windows_scored=scored,
           queue_full=drops.get("queue_full", 0))
    assert queued == n_msgs * per_msg - W + 1
    assert drops.get("queue_full", 0) == 0 and scored == queued
    ends = np.concatenate(t_end)  # each window scored once, in the device's order
    assert ends.size == queued and bool(np.all(np.diff(ends) > 0))


def test_a_stalled_inference_thread_costs_windows_counted_not_a_stalled_network_thread(tmp_path: Path) -> None:
    """What back-pressure cannot place is still counted: with no inference thread taking batches, the first
    message waits ``wait_s`` for room, later ones do not wait at all; the windows that do not fit are dropped
    as ``queue_full`` (the queue policy), none lost without a count."""
    model = write_model(tmp_path / "m.onnx", make_metadata(window=W, hop=HOP, threshold=0.5))
    d = Daemon(daemon_config("mqtt://127.0.0.1:1", model, batching="opportunistic", queue_windows=8,
                             log_interval_s=3600.0))  # not started: nothing takes batches from the queue
    batching = d.batching
    assert isinstance(batching, ThreadedScoring)
    batching.wait_s = 0.6
    x = series(300, seed=8)
    took = []
    for k in range(3):
        t0 = time.monotonic()
        d.ingest.handle("sensors/s/data", json.dumps({"ts": [T0 + 100 * k + i for i in range(100)],
                                                      "values": x[100 * k : 100 * k + 100].tolist()}).encode())
        took.append(time.monotonic() - t0)
    assert took[0] >= 0.55 and max(took[1:]) < 0.3  # waited once, then reads on
    batching.drain()
    c, drops = d.stats.counts, d.stats.drops
    assert c["windows_queued"] == 300 - W + 1 and c["windows_scored"] == 8
    assert drops["queue_full"] == c["windows_queued"] - 8
