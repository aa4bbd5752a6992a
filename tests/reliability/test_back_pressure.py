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
from pathlib import Path

import numpy as np

from edge_runtime.tools.replay import Recording, publish_recording
from tests.edge_runtime.mqtt_helpers import Publisher, idle, running_daemon, wait_until
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
