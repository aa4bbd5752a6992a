"""edgewatch simulate: planning, generation, payloads, ground truth (pure) and publishing to a real Mosquitto."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edge_runtime.pipeline.decode import Decoder
from edge_runtime.tools.simulate import (
    FORMATS,
    ScheduledAnomaly,
    SimError,
    StreamSource,
    encode_payload,
    ground_truth,
    make_plan,
    parse_anomaly_spec,
    read_ground_truth,
    simulate,
    simulate_command,
    stop_cycle_specs,
    write_ground_truth,
)
from edge_runtime.tools.synthetic import ANOMALY_KINDS, normal_series
from tests.edge_runtime.mqtt_helpers import Collector, wait_until

# -- parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("sim-0:spike:10:2", ScheduledAnomaly("sim-0", "spike", 10.0, 2.0)),
        ("*:drift:5.5:3", ScheduledAnomaly("*", "drift", 5.5, 3.0)),
        ("a:stuck:1:1:pressure,current", ScheduledAnomaly("a", "stuck", 1.0, 1.0, ("pressure", "current"))),
    ],
)
def test_parse_anomaly_spec(spec: str, want: ScheduledAnomaly) -> None:
    assert parse_anomaly_spec(spec) == want


@pytest.mark.parametrize("spec", ["sim-0:spike:10", "sim-0:boom:1:1", "sim-0:spike:x:1", "sim-0:spike:1:0", ""])
def test_parse_anomaly_spec_rejects(spec: str) -> None:
    with pytest.raises(SimError):
        parse_anomaly_spec(spec)


# -- planning ------------------------------------------------------------------------------------


def test_scheduled_anomaly_lands_on_its_samples() -> None:
    plan = make_plan(2, 10.0, 30.0, scheduled=[parse_anomaly_spec("sim-1:level_shift:5:2:current")], t0=100.0)
    assert plan.n_steps == 300
    assert plan.devices[0].anomalies == ()
    (a,) = plan.devices[1].anomalies
    assert (a.kind, a.start, a.end, a.channels) == ("level_shift", 50, 70, (3,))
    (row,) = ground_truth(plan)
    assert row == {"device": "sim-1", "kind": "level_shift", "class": "process", "channels": ["current"], "start_index": 50,
                   "end_index": 70, "start_ts": 105.0, "end_ts": 107.0}


def test_star_schedules_every_device() -> None:
    plan = make_plan(3, 10.0, 30.0, scheduled=[parse_anomaly_spec("*:spike:3:1")], t0=0.0)
    assert [len(d.anomalies) for d in plan.devices] == [1, 1, 1]


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"scheduled": [ScheduledAnomaly("nope", "spike", 1, 1)]}, "unknown device"),
        ({"scheduled": [ScheduledAnomaly("sim-0", "spike", 1, 5), ScheduledAnomaly("sim-0", "drift", 3, 1)]},
         "overlap"),
        ({"scheduled": [ScheduledAnomaly("sim-0", "spike", 99, 1)]}, "after the end"),
        ({"scheduled": [ScheduledAnomaly("sim-0", "spike", 1, 1, ("nosuch",))]}, "unknown channel"),
        ({"random_count": 20}, "do not fit"),
        ({"kinds": ["spike", "boom"], "random_count": 1}, "unknown anomaly kind"),
    ],
)
def test_make_plan_rejects(kwargs: dict, msg: str) -> None:
    with pytest.raises(SimError, match=msg):
        make_plan(2, 10.0, 30.0, t0=0.0, **kwargs)


def test_random_anomalies_respect_warmup_gap_and_cover_every_kind() -> None:
    plan = make_plan(3, 20.0, 120.0, random_count=2, warmup_s=10, min_len_s=2, max_len_s=4, gap_s=6, seed=3, t0=0.0)
    seen = set()
    for d in plan.devices:
        assert len(d.anomalies) == 2
        assert d.anomalies[0].start >= 200  # warm-up
        for a, b in zip(d.anomalies, d.anomalies[1:], strict=False):
            assert b.start - a.end >= 120  # gap to recover
        for a in d.anomalies:
            assert 40 <= a.end - a.start <= 80
            assert a.end <= plan.n_steps
            seen.add(a.kind)
    assert seen == set(ANOMALY_KINDS)
    again = make_plan(3, 20.0, 120.0, random_count=2, warmup_s=10, min_len_s=2, max_len_s=4, gap_s=6, seed=3, t0=0.0)
    assert again == plan


def test_devices_share_a_profile_by_default_and_can_be_distinct() -> None:
    shared = make_plan(2, 10.0, 10.0, t0=0.0)
    assert shared.devices[0].seed == shared.devices[1].seed
    assert shared.devices[0].offset != shared.devices[1].offset
    distinct = make_plan(2, 10.0, 10.0, t0=0.0, distinct=True)
    assert distinct.devices[0].seed != distinct.devices[1].seed


# -- generation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 7, 64, 500])
def test_chunks_join_exactly_across_anomalies(chunk: int) -> None:
    plan = make_plan(1, 10.0, 100.0, scheduled=[parse_anomaly_spec("sim-0:drift:20:10"),
                                                  parse_anomaly_spec("sim-0:spike:60:5")], t0=0.0)
    src = StreamSource(plan.devices[0], 4)
    whole = src.chunk(0, plan.n_steps)
    parts = np.concatenate([src.chunk(k, min(chunk, plan.n_steps - k)) for k in range(0, plan.n_steps, chunk)])
    np.testing.assert_array_equal(parts, whole)


def test_anomalies_change_only_their_span() -> None:
    plan = make_plan(1, 10.0, 100.0, scheduled=[parse_anomaly_spec("sim-0:level_shift:20:10:pressure")], t0=0.0)
    d = plan.devices[0]
    x = StreamSource(d, 4).chunk(0, plan.n_steps)
    normal = normal_series(plan.n_steps, 4, d.seed, d.offset)
    changed = np.any(x != normal, axis=1)
    assert changed[200:300].all()
    assert not changed[:200].any() and not changed[300:].any()
    assert np.all(x[200:300, 1:] == normal[200:300, 1:])  # other channels untouched


@pytest.mark.parametrize("fmt", FORMATS)
def test_payloads_decode_to_the_same_samples(fmt: str) -> None:
    names = ["pressure", "temperature", "vibration"]
    ts = 1_700_000_000.0 + np.arange(5) * 0.05
    x = normal_series(5, 3, seed=1)
    dec = Decoder(names, max_future_s=0)  # arrival 0 below
    got_ts, got_x = [], []
    payloads = encode_payload(fmt, ts, x, names)
    assert len(payloads) == (5 if fmt in ("single", "keyed") else 1)
    for p in payloads:
        s = dec.decode(p, arrival=0.0)
        assert s.stamped
        got_ts.append(s.ts)
        got_x.append(s.values)
    np.testing.assert_allclose(np.concatenate(got_ts), ts, atol=1e-6)
    np.testing.assert_allclose(np.concatenate(got_x), x, rtol=1e-6)


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_ground_truth_round_trip(tmp_path: Path, suffix: str) -> None:
    plan = make_plan(2, 20.0, 60.0, random_count=2, t0=1_700_000_000.0)
    path = tmp_path / f"truth{suffix}"
    write_ground_truth(path, plan)
    rows = read_ground_truth(path)
    assert rows == ground_truth(plan)
    assert len(rows) == 4
    for r in rows:
        assert r["start_ts"] == pytest.approx(plan.t0 + r["start_index"] / plan.rate)


# -- publishing (real broker) --------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "batch", "qos"), [("single", 1, 1), ("batch", 10, 1), ("csv", 5, 0)])
def test_publishes_every_sample_to_each_device_topic(mosquitto, fmt: str, batch: int, qos: int) -> None:
    plan = make_plan(2, 50.0, 2.0, t0=1_700_000_000.0)  # 100 samples per device
    col = Collector(mosquitto.port, ["sensors/+/data"])
    try:
        res = simulate(plan, mosquitto.url, fmt=fmt, batch=batch, qos=qos, realtime=False)
        assert res.samples == 200
        assert res.messages == (200 if fmt == "single" else 200 // batch)
        wait_until(lambda: len(col.messages) >= res.messages, 10, "all messages")
        dec = Decoder(list(plan.channels), max_future_s=0)  # arrival 0 below
        for d in plan.devices:
            payloads = [p for t, p, _ in col.messages if t == f"sensors/{d.name}/data"]
            samples = [dec.decode(p, 0.0) for p in payloads]
            ts = np.concatenate([s.ts for s in samples])
            vals = np.concatenate([s.values for s in samples])
            np.testing.assert_allclose(ts, plan.t0 + np.arange(100) / 50.0, atol=1e-6)
            np.testing.assert_allclose(vals, StreamSource(d, 4).chunk(0, 100), rtol=1e-6)
    finally:
        col.close()


def test_cli_publishes_and_writes_ground_truth(mosquitto, tmp_path: Path) -> None:
    col = Collector(mosquitto.port, ["sensors/#"])
    truth = tmp_path / "gt.json"
    try:
        res = CliRunner().invoke(simulate_command, [
            "--broker", mosquitto.url, "--devices", "3", "--rate", "20", "--duration", "30", "--fast",
            "--random", "1", "--warmup", "5", "--format", "batch", "--batch", "20", "--ground-truth", str(truth),
            "--anomaly", "sim-0:stuck:2:1",
        ])
        assert res.exit_code == 0, res.output
        wait_until(lambda: len(col.messages) >= 3 * 30, 10, "all batches")
        doc = json.loads(truth.read_text())
        assert doc["devices"] == ["sim-0", "sim-1", "sim-2"]
        assert len(doc["anomalies"]) == 4
        assert {t for t, _, _ in col.messages} == {f"sensors/sim-{i}/data" for i in range(3)}
    finally:
        col.close()


@pytest.mark.parametrize(
    ("args", "msg", "code"),
    [
        (["--devices", "0"], "--devices must be >= 1", 2),
        (["--anomaly", "sim-0:boom:1:1"], "kind 'boom'", 2),
        (["--topic", "sensors/data"], "{device}", 2),
        (["--broker", "mqtt://127.0.0.1:1"], "cannot connect", 69),
        (["--prefix", "line/a"], "--prefix 'line/a': a device id is one topic level", 2),
        (["--prefix", "#"], "--prefix '#': a device id is one topic level", 2),
        (["--topic-prefix", "#"], "--topic-prefix: '#' must be a topic level (or levels) without wildcards", 2),
        (["--topic-prefix", "/"], "--topic-prefix: '/' must be a topic level", 2),
    ],
)
def test_cli_errors_are_one_line_and_their_exit_code(args: list[str], msg: str, code: int) -> None:
    res = CliRunner().invoke(simulate_command, ["--duration", "1", "--fast", *args])
    assert res.exit_code == code  # 2 usage, 69 no broker (edge_runtime/clierror.py)
    lines = res.output.strip().splitlines()
    assert msg in lines[-1] and lines[-1].startswith("edgewatch simulate: error:")
    assert "Traceback" not in res.output


def test_cli_takes_channel_names_from_a_model(mosquitto, demo_model_path: Path) -> None:
    from edge_runtime.tools.simulate import model_channels

    names = model_channels(demo_model_path)
    col = Collector(mosquitto.port, ["sensors/#"])
    try:
        res = CliRunner().invoke(simulate_command, ["--broker", mosquitto.url, "--devices", "1", "--rate", "10",
                                                    "--duration", "1", "--fast", "--format", "keyed",
                                                    "--model", str(demo_model_path)])
        assert res.exit_code == 0, res.output
        wait_until(lambda: len(col.messages) >= 10, 10, "10 samples")
        doc = json.loads(col.messages[0][1])
        assert list(doc) == ["ts", *names]
        assert Decoder(names, max_future_s=0).decode(col.messages[0][1], 0.0).values.shape == (1, len(names))
    finally:
        col.close()


def test_a_daemon_with_a_topic_prefix_raises_on_simulate_with_the_same_prefix(mosquitto, demo_model_path: Path) -> None:
    """simulate --topic-prefix means what the daemon's topics.prefix (--topic-prefix) means: it feeds that daemon."""
    from tests.edge_runtime.mqtt_helpers import idle, running_daemon

    col = Collector(mosquitto.port, ["#"])
    try:
        with running_daemon(mosquitto.url, demo_model_path, prefix="site-9") as d:
            res = CliRunner().invoke(simulate_command, [
                "--broker", mosquitto.url, "--devices", "1", "--rate", "1", "--duration", "400", "--fast",
                "--model", str(demo_model_path), "--anomaly", "sim-0:level_shift:200:120", "--topic-prefix", "site-9"])
            assert res.exit_code == 0, res.output
            wait_until(lambda: d.stats.counts["messages"] >= 400, 20, "the daemon read every sample")
            idle(d)
            wait_until(lambda: any(t == "site-9/alerts/sim-0" for t, _, _ in col.messages), 10, "an alert")
        raised = [json.loads(p) for t, p, _ in col.messages if t == "site-9/alerts/sim-0"]
        assert raised[0]["state"] == "raised"
        assert {t for t, _, _ in col.messages if "/data" in t} == {"site-9/sensors/sim-0/data"}
    finally:
        col.close()


def test_cli_refuses_a_file_that_is_not_a_model(tmp_path: Path) -> None:
    bad = tmp_path / "m.onnx"
    bad.write_bytes(b"not onnx")
    res = CliRunner().invoke(simulate_command, ["--model", str(bad), "--duration", "1", "--fast"])
    assert res.exit_code == 65  # EX_DATAERR
    assert res.output.strip().splitlines()[-1].startswith(f"edgewatch simulate: error: {bad}:")


def test_sensor_faults_stops_and_a_dead_device_with_their_ground_truth() -> None:
    specs = ["sim-0:freeze:10:5:pressure", "sim-0:dropout:20:2:current", "sim-0:out_of_range:30:2:vibration",
             "sim-0:dead:40:3", "sim-0:stop:50:10"]
    plan = make_plan(1, 10.0, 200.0, scheduled=[parse_anomaly_spec(s) for s in specs], t0=0.0)
    truth = ground_truth(plan)
    assert [(r["kind"], r["class"]) for r in truth] == [
        ("freeze", "sensor"), ("dropout", "sensor"), ("out_of_range", "sensor"), ("dead", "sensor"), ("stop", "state")]
    src = StreamSource(plan.devices[0], plan.n_channels, plan.channels)
    x = np.concatenate([src.chunk(k, 100) for k in range(0, 2000, 100)])  # chunked: joins exactly
    whole = src.chunk(0, 2000)
    np.testing.assert_array_equal(np.isnan(x), np.isnan(whole))
    np.testing.assert_allclose(np.nan_to_num(x), np.nan_to_num(whole))
    assert np.all(x[100:150, 0] == x[99, 0])  # frozen pressure
    assert np.isnan(x[200:220, 3]).all() and not np.isnan(x[:200]).any()
    assert x[300:320, 2].min() > normal_series(2000, 4)[:, 2].max()  # vibration far out of range
    assert np.abs(x[505:600, 0]).max() < 0.2  # stopped: pressure at its off level
    alive = src.alive(0, 2000)
    assert not alive[400:430].any() and alive[:400].all() and alive[430:].all()
    single = json.loads(encode_payload("single", np.array([20.0]), x[200:201], plan.channels)[0])
    assert single["values"][3] is None  # a dropout is a null, the rest of the sample stays
    keyed = json.loads(encode_payload("keyed", np.array([20.0]), x[200:201], plan.channels)[0])
    assert "current" not in keyed and "pressure" in keyed
    assert [s.start_s for s in stop_cycle_specs("30:10", 120.0, 10.0)] == [40.0, 80.0]
    with pytest.raises(SimError, match="run-up"):
        make_plan(1, 10.0, 200.0, scheduled=[parse_anomaly_spec("sim-0:stop:50:10"),
                                             parse_anomaly_spec("sim-0:spike:65:2")], t0=0.0)


def test_a_sensor_fault_may_overlap_a_process_fault_and_both_show() -> None:
    plan = make_plan(1, 10.0, 100.0, scheduled=[parse_anomaly_spec("sim-0:level_shift:20:10:current"),
                                                 parse_anomaly_spec("sim-0:freeze:25:10:pressure")], t0=0.0)
    src = StreamSource(plan.devices[0], plan.n_channels, plan.channels)
    x, clean = src.chunk(0, 1000), normal_series(1000, 4)
    assert np.all(x[250:350, 0] == x[249, 0])  # frozen
    assert np.abs(x[250:300, 3] - clean[250:300, 3]).min() > 1.0  # the level shift still there under the freeze
    with pytest.raises(SimError, match="overlap"):
        make_plan(1, 10.0, 100.0, scheduled=[parse_anomaly_spec("sim-0:spike:20:10"),
                                             parse_anomaly_spec("sim-0:drift:25:10")], t0=0.0)


def test_a_stop_before_a_process_fault_does_not_change_its_magnitude() -> None:
    shift = parse_anomaly_spec("sim-0:level_shift:150:10:pressure")
    alone = make_plan(1, 10.0, 200.0, scheduled=[shift], t0=0.0)
    after = make_plan(1, 10.0, 200.0, scheduled=[parse_anomaly_spec("sim-0:stop:50:20"), shift], t0=0.0)
    clean = normal_series(100, 4, 0, 1500)
    a = StreamSource(alone.devices[0], 4, alone.channels).chunk(1500, 100) - clean
    b = StreamSource(after.devices[0], 4, after.channels).chunk(1500, 100) - clean
    np.testing.assert_allclose(np.abs(a), np.abs(b), rtol=1e-4, atol=1e-4)  # (its sign is drawn per anomaly)
    assert np.abs(b[:, 0]).min() > 0.5


def test_sensor_faults_added_to_a_plan_leave_its_process_faults_and_stops_as_they_were() -> None:
    """lab's `bench faults` compares the same plant with healthy and faulty sensors: the process faults (their
    sign and size are drawn per anomaly) must be the same draws in both."""
    process = ["sim-0:stop:20:10", "sim-0:level_shift:100:10:current", "sim-0:drift:140:30:pressure"]
    sensor = ["sim-0:freeze:10:5:temperature", "sim-0:dropout:135:40:vibration", "sim-0:out_of_range:50:2:vibration"]
    healthy = make_plan(1, 10.0, 200.0, scheduled=[parse_anomaly_spec(s) for s in process], t0=0.0)
    faulty = make_plan(1, 10.0, 200.0, scheduled=[parse_anomaly_spec(s) for s in process + sensor], t0=0.0)
    a = StreamSource(healthy.devices[0], 4, healthy.channels).chunk(0, 2000)
    b = StreamSource(faulty.devices[0], 4, faulty.channels).chunk(0, 2000)
    touched = np.zeros_like(a, dtype=bool)  # the sensor faults' own samples
    touched[100:150, 1] = touched[1350:1750, 2] = touched[500:520, 2] = True
    np.testing.assert_array_equal(a[~touched], b[~touched])
    assert np.abs(a[1000:1100, 3] - normal_series(2000, 4)[1000:1100, 3]).min() > 0.5  # the level shift is there


def test_plans_without_sensor_faults_keep_their_draws() -> None:
    """Only freeze, dropout, out_of_range and dead draw apart: a random plan of the default kinds (stuck among
    them) gives each anomaly the seed it always had (the device's seed plus its index), so its samples are
    those of earlier versions."""
    plan = make_plan(2, 10.0, 600.0, random_count=8, seed=3, t0=0.0)
    for d in plan.devices:
        assert StreamSource(d, 4)._seeds == [d.seed + k for k in range(len(d.anomalies))]


def test_the_final_line_says_what_the_broker_acknowledged_and_warns_after_fast() -> None:
    from edge_runtime.tools.simulate import SimResult

    paced = SimResult(messages=3500, samples=3500, elapsed_s=2.0, qos=1, acknowledged=3499)
    assert paced.summary() == ("published 3,500 messages (3,500 samples) in 2.0 s; 3,499 acknowledged by the broker, "
                               "1 NOT acknowledged")
    fast = SimResult(messages=3500, samples=3500, elapsed_s=0.5, qos=1, acknowledged=3500, paced=False)
    assert "3,500 acknowledged by the broker; as fast as possible: the broker drops" in fast.summary()
    assert "compare with the daemon's messages count" in fast.summary()
    assert "losses are not known here" in SimResult(messages=1, samples=1, qos=0).summary()


def test_messages_the_broker_never_acknowledged_are_an_error_not_a_line_among_others() -> None:
    """replay and simulate exit 69 (unavailable) with this line when QoS 1/2 messages went unacknowledged."""
    from edge_runtime.tools.simulate import SimResult

    lost = SimResult(messages=1200, samples=1200, qos=1, acknowledged=900).unacknowledged()
    assert lost is not None and lost.startswith("300 of 1,200 messages were not acknowledged by the broker")
    assert SimResult(messages=1200, samples=1200, qos=1, acknowledged=1200).unacknowledged() is None
    assert SimResult(messages=1200, samples=1200, qos=0).unacknowledged() is None  # QoS 0: nothing to know


def test_a_broker_that_does_not_come_back_ends_the_publish_with_exit_69() -> None:
    """Second read: past the outage limit each later message waited 0.5 s and was dropped, the publish went on into
    paho's unbounded queue (a 100k-message replay: hours), and the summary claimed the messages were sent."""
    import time

    from paho.mqtt.client import MQTTMessageInfo
    from paho.mqtt.enums import MQTTErrorCode

    from edge_runtime.tools.simulate import InFlight, SimError, SimResult

    def held(mid: int) -> MQTTMessageInfo:  # what paho returns for a QoS 1 publish while disconnected
        info = MQTTMessageInfo(mid)
        info.rc = MQTTErrorCode.MQTT_ERR_NO_CONN
        return info

    res = SimResult(qos=1)
    notes: list[str] = []
    inflight = InFlight(res, limit=3, connected=lambda: False, max_outage_s=1.0, notify=notes.append)
    began = time.monotonic()
    with pytest.raises(SimError, match=r"did not come back within 1 s: 0 of 3 messages acknowledged") as exc:
        for mid in range(1, 100):
            res.messages += 1
            inflight.add(held(mid))
    assert exc.value.exit_code == 69 and time.monotonic() - began < 5 and res.messages == 3
    assert res.outages == 1 and res.outage_s >= 1.0 and res.reconnects == 0 and len(notes) == 1
    assert "sent after the reconnect" not in res.summary()


def test_qos0_messages_published_while_disconnected_are_counted_as_dropped() -> None:
    from paho.mqtt.client import MQTTMessageInfo
    from paho.mqtt.enums import MQTTErrorCode

    from edge_runtime.tools.simulate import InFlight, SimResult

    res = SimResult(qos=0)
    inflight = InFlight(res, connected=lambda: False)
    for mid, rc in enumerate([MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN] * 3):
        info = MQTTMessageInfo(mid)
        info.rc = rc
        res.messages += 1
        inflight.add(info)
    inflight.finish()
    assert res.not_sent == 3 and res.missing == 3 and "3 dropped by the client while disconnected" in res.summary()
    assert "QoS 0 holds nothing for a reconnect: --qos 1 does" in (res.unacknowledged() or "")
