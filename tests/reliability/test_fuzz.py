"""Issue 20 fuzz run: generated messages in every payload format (JSON single, keyed, batch, list, CSV, raw
bytes, values at float32-max and beyond, timestamps far in the past and future), on sensor topics, the
retained-state path and the daemon's own status topic, through the real MQTT callback of a real daemon (a
really exported ONNX model, Home Assistant discovery and score publishing on). Every scored batch is
published into a recording link.

Holds: 0 exceptions escaping a callback (the boundary guard's ``internal_error`` stays 0, as do
``inference_error``) and 0 published documents that a strict JSON parser refuses.
The default suite runs 2,000 messages; ``pytest -m soak tests/reliability/test_fuzz.py`` runs 100,000."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import paho.mqtt.client as paho
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from edge_runtime.service.daemon import Daemon
from tests.edge_runtime.mqtt_helpers import daemon_config
from tests.edge_runtime.onnx_models import make_metadata, write_model
from tests.reliability.test_extreme_values import strict_loads
from tests.reliability.test_hostile_input import csv_text, json_values, payload_docs, to_bytes

PER_EXAMPLE = 50
PLAIN = {"online", "offline", b"online", b"offline"}  # Home Assistant availability payloads: plain words by design
F32_MAX = float(np.finfo(np.float32).max)
NOW = time.time()

devices = st.sampled_from(["a", "b", "c", "pump.1", "pump_1", "x" * 80]) | st.text(max_size=10)
extreme = st.one_of(st.floats(allow_nan=False, allow_infinity=False, width=32), st.just(F32_MAX), st.just(-F32_MAX),
                    st.integers(-(10**30), 10**30), st.floats(min_value=-10, max_value=10))
stamps = st.one_of(st.floats(NOW - 1e6, NOW + 600), st.just(NOW + 20 * 365 * 86400), st.integers(0, 10**19),
                   st.just("2999-01-01T00:00:00Z"), st.none())


@st.composite
def plausible(draw: Any) -> bytes:
    """A sample a real (if broken) sensor could send: right shape, extreme values and clocks."""
    doc: dict[str, Any] = {"values": draw(st.lists(extreme, min_size=4, max_size=4))}
    t = draw(stamps)
    if t is not None and draw(st.booleans()):  # half without ts (arrival time): windows form and get scored
        doc["ts"] = t
    return json.dumps(doc).encode()


@st.composite
def state_docs(draw: Any) -> bytes:
    doc = {"device": draw(devices | st.integers()), "state": draw(st.sampled_from(["raised", "cleared", "x"])),
           "seq": draw(st.one_of(st.integers(-5, 2**64), st.floats(), st.text(max_size=3), st.none())),
           "instance": draw(st.sampled_from(["fuzz", "other"]) | st.none()),
           "raised_alert_id": draw(st.one_of(st.none(), st.text(max_size=8), st.integers()))}
    return to_bytes(doc) if draw(st.booleans()) else to_bytes(draw(json_values))


sensor_payloads = st.one_of(plausible(), plausible(), payload_docs().map(to_bytes), csv_text.map(str.encode),
                            st.binary(max_size=100), st.just(b"[" * 100_000))
messages = st.one_of(
    st.tuples(st.just("sensor"), devices, sensor_payloads),
    st.tuples(st.just("sensor"), st.sampled_from(["a", "b"]), plausible()),  # a few devices that fill windows
    st.tuples(st.just("state"), devices, st.one_of(state_docs(), st.binary(max_size=40), st.just(b"[" * 50_000))),
    st.tuples(st.just("status"), st.just(""), st.one_of(st.binary(max_size=40), json_values.map(to_bytes))),
)


class RecordingLink:
    """Stands in for the broker side of the link: keeps every published payload."""

    def __init__(self) -> None:
        self.payloads: list[str | bytes] = []

    def publish(self, topic: str, payload: str | bytes, qos: int = 1, retain: bool = False,
                bulk: bool = False) -> bool:
        self.payloads.append(payload)
        return True


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory):
    path = write_model(tmp_path_factory.mktemp("fuzz") / "m.onnx", make_metadata(window=8, hop=2, threshold=0.5))
    d = Daemon(daemon_config("mqtt://127.0.0.1:1", path, instance="fuzz", homeassistant_discovery=True,
                             publish_scores=True, log_interval_s=3600.0, max_devices=50, queue_windows=64))
    rec = RecordingLink()
    d.publisher.link = rec
    d.link._adopting = True  # as between connect and SUBACK: retained states reach the adopt path
    yield d, rec
    d.link.client.loop_stop()


def _deliver(d: Daemon, kind: str, device: str, payload: bytes) -> None:
    topic = {"sensor": f"sensors/{device}/data", "state": f"alerts/{device}/state",
             "status": d.status_topic}[kind]
    msg = paho.MQTTMessage(mid=1, topic=topic.encode("utf-8", "surrogatepass"))
    msg.payload = payload
    msg.retain = kind != "sensor"
    d.link._handle_message(d.link.client, None, msg)


def _run(d: Daemon, rec: RecordingLink, batch: list[tuple[str, str, bytes]]) -> None:
    for kind, device, payload in batch:
        _deliver(d, kind, device, payload)
    d.batching.drain()
    d.publisher.pace()
    d.publisher.send([d._status_message()])
    d.housekeeping.publish_stats()
    for p in rec.payloads:
        if p and p not in PLAIN:
            strict_loads(p)  # raises on NaN / Infinity (and on anything that is not JSON)
    rec.payloads.clear()
    assert d.stats.drops["internal_error"] == 0 and d.stats.drops["inference_error"] == 0


def _fuzz(daemon, n_examples: int, figure=None) -> None:
    d, rec = daemon
    start = d.stats.counts["messages"], d.stats.drops["bad_state"]

    @settings(max_examples=n_examples, deadline=None, database=None, phases=[Phase.generate],  # no shrinking
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(st.lists(messages, min_size=PER_EXAMPLE, max_size=PER_EXAMPLE))
    def run(batch: list[tuple[str, str, bytes]]) -> None:
        _run(d, rec, batch)

    run()
    if figure is not None:
        figure("fuzz", examples=n_examples, messages=n_examples * PER_EXAMPLE,
               sensor_messages=d.stats.counts["messages"] - start[0], states_refused=d.stats.drops["bad_state"] - start[1],
               windows_scored=d.stats.counts["windows_scored"], internal_error=d.stats.drops["internal_error"])


def test_fuzz_short(daemon) -> None:
    _fuzz(daemon, 40)  # 2,000 messages


@pytest.mark.soak
@pytest.mark.timeout(3600)
def test_fuzz_100k_messages(daemon, figure) -> None:
    _fuzz(daemon, 2000, figure)  # 100,000 messages
