"""Sparkplug B input: the generated schema, the decoder (payloads built with pysparkplug, a maintained
Sparkplug library, and hypothesis), and the daemon reading a real Mosquitto."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("google.protobuf")
spb = pytest.importorskip("pysparkplug")

from edge_runtime.integrations.sparkplug import sparkplug_b_pb2 as pb  # noqa: E402
from edge_runtime.integrations.sparkplug.decoder import (  # noqa: E402
    REBIRTH_METRIC,
    SparkplugDecoder,
    metric_value,
    parse_topic,
)

CH = ["temp", "flow", "pressure"]
T0 = 1_700_000_000_000  # ms
DT = spb.DataType
SCHEMA_DIR = Path(__file__).resolve().parents[3] / "edge_runtime" / "integrations" / "sparkplug"


def birth(values=(1.0, 2.0, 3.0), seq: int = 0, extra: bool = True) -> bytes:
    ms = [spb.Metric(timestamp=T0, name=n, alias=i + 1, datatype=DT.DOUBLE, value=v) for i, (n, v) in
          enumerate(zip(CH, values, strict=True))]
    if extra:  # a metric that is no channel of the model
        ms.append(spb.Metric(timestamp=T0, name="status", alias=99, datatype=DT.STRING, value="ok"))
    return spb.DBirth(timestamp=T0, seq=seq, metrics=tuple(ms)).encode()


def data(ts: int, by_alias: dict[int, float], seq: int = 1) -> bytes:
    ms = tuple(spb.Metric(timestamp=ts, name=None, alias=a, datatype=DT.DOUBLE, value=v) for a, v in by_alias.items())
    return spb.DData(timestamp=ts, seq=seq, metrics=ms).encode()


TOPIC = "spBv1.0/plant/{}/node1/pump"


def test_generated_module_is_the_schema_and_matches_pysparkplugs() -> None:
    from pysparkplug._protobuf import sparkplug_b_pb2 as theirs

    assert pb.DESCRIPTOR.serialized_pb == theirs.DESCRIPTOR.serialized_pb  # wire-identical to the library's
    grpc_tools = pytest.importorskip("grpc_tools.protoc")
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        rc = grpc_tools.main(["protoc", f"-I{SCHEMA_DIR}", f"--python_out={out}", str(SCHEMA_DIR / "sparkplug_b.proto")])
        assert rc == 0
        assert (Path(out) / "sparkplug_b_pb2.py").read_text() == (SCHEMA_DIR / "sparkplug_b_pb2.py").read_text()


def test_topics() -> None:
    t = parse_topic("spBv1.0/plant/DDATA/node1/pump")
    assert (t.group, t.kind, t.edge_node, t.device) == ("plant", "DDATA", "node1", "pump")
    assert t.ncmd == "spBv1.0/plant/NCMD/node1"
    assert parse_topic("spBv1.0/plant/NDEATH/node1").device is None
    for bad in ("spBv1.0/plant/DDATA/node1", "spBv1.0/plant/NDEATH/node1/x", "spBv1.0/plant/STATE/n/d",
                "spAv1.0/plant/DDATA/n/d", "spBv1.0//DDATA/n/d", "sensors/x/data"):
        assert parse_topic(bad) is None, bad


def test_birth_then_data_by_alias_maps_metrics_to_channels_by_name() -> None:
    d = SparkplugDecoder(CH, max_future_s=0)  # arrival times below are small numbers: no future check
    (ev,) = d.handle(TOPIC.format("DBIRTH"), birth(), 0.0)  # the birth's values are the first sample
    assert (ev.kind, ev.device) == ("data", "plant:node1:pump")
    assert ev.samples.values.tolist() == [[1.0, 2.0, 3.0]] and ev.samples.ts.tolist() == [T0 / 1000]
    (ev,) = d.handle(TOPIC.format("DDATA"), data(T0 + 100, {2: 5.0}), 0.0)  # report by exception: flow only
    assert ev.samples.values.tolist() == [[1.0, 5.0, 3.0]]
    assert ev.samples.ts.tolist() == [(T0 + 100) / 1000]


def test_one_sample_per_metric_timestamp_in_order() -> None:
    d = SparkplugDecoder(CH, max_future_s=0)  # arrival times below are small numbers: no future check
    d.handle(TOPIC.format("DBIRTH"), birth(), 0.0)
    ms = (spb.Metric(timestamp=T0 + 300, name=None, alias=1, datatype=DT.DOUBLE, value=30.0),
          spb.Metric(timestamp=T0 + 200, name=None, alias=1, datatype=DT.DOUBLE, value=20.0),
          spb.Metric(timestamp=T0 + 200, name="pressure", alias=None, datatype=DT.DOUBLE, value=7.0))
    (ev,) = d.handle(TOPIC.format("DDATA"), spb.DData(timestamp=T0 + 300, seq=2, metrics=ms).encode(), 0.0)
    assert ev.samples.ts.tolist() == [(T0 + 200) / 1000, (T0 + 300) / 1000]
    assert ev.samples.values.tolist() == [[20.0, 2.0, 7.0], [30.0, 2.0, 7.0]]


def test_no_sample_until_every_channel_has_a_value() -> None:
    d = SparkplugDecoder(CH, max_future_s=0)  # arrival times below are small numbers: no future check
    b = spb.DBirth(timestamp=T0, seq=0, metrics=(
        spb.Metric(timestamp=T0, name="temp", alias=1, datatype=DT.FLOAT, value=1.0),
        spb.Metric(timestamp=T0, name="flow", alias=2, datatype=DT.FLOAT, value=None, is_null=True),
        spb.Metric(timestamp=T0, name="pressure", alias=3, datatype=DT.FLOAT, value=3.0))).encode()
    assert d.handle(TOPIC.format("DBIRTH"), b, 0.0) == []
    (ev,) = d.handle(TOPIC.format("DDATA"), data(T0 + 1, {2: 2.0}), 0.0)
    assert ev.samples.values.tolist() == [[1.0, 2.0, 3.0]]


def test_unknown_alias_and_unknown_device_ask_for_a_rebirth_rate_limited() -> None:
    d = SparkplugDecoder(CH, rebirth_interval_s=10, max_future_s=0)
    evs = d.handle(TOPIC.format("DDATA"), data(T0, {1: 1.0}), 100.0)  # no DBIRTH seen (we started late)
    assert [e.kind for e in evs] == ["drop", "rebirth"] and evs[0].reason == "sparkplug_unknown_device"
    ncmd = pb.Payload.FromString(evs[1].payload)
    assert evs[1].topic == "spBv1.0/plant/NCMD/node1"
    assert [(m.name, m.boolean_value, m.datatype) for m in ncmd.metrics] == [(REBIRTH_METRIC, True, 11)]
    assert spb.NCmd.decode(evs[1].payload).metrics[0].value is True  # the library reads it back
    assert [e.kind for e in d.handle(TOPIC.format("DDATA"), data(T0, {1: 1.0}), 105.0)] == ["drop"]  # limited
    d.handle(TOPIC.format("DBIRTH"), birth(), 106.0)
    evs = d.handle(TOPIC.format("DDATA"), data(T0 + 1, {1: 4.0, 42: 9.0}), 111.0)
    assert [e.kind for e in evs] == ["drop", "rebirth", "data"]
    assert (evs[0].reason, evs[0].n) == ("sparkplug_unknown_alias", 1)
    assert evs[2].samples.values.tolist() == [[4.0, 2.0, 3.0]]


def test_death_means_offline() -> None:
    d = SparkplugDecoder(CH, max_future_s=0)  # arrival times below are small numbers: no future check
    d.handle(TOPIC.format("DBIRTH"), birth(), 0.0)
    d.handle("spBv1.0/plant/DBIRTH/node1/fan", birth(), 0.0)
    d.handle("spBv1.0/plant/DBIRTH/node2/fan", birth(), 0.0)
    (ev,) = d.handle(TOPIC.format("DDEATH"), spb.DDeath(timestamp=T0, seq=5).encode(), 0.0)
    assert (ev.kind, ev.devices) == ("offline", ["plant:node1:pump"])
    assert d.handle(TOPIC.format("DDEATH"), spb.DDeath(timestamp=T0, seq=6).encode(), 0.0) == []
    ndeath = spb.NDeath(timestamp=T0, bd_seq_metric=spb.Metric(timestamp=T0, name="bdSeq", datatype=DT.INT64, value=0))
    (ev,) = d.handle("spBv1.0/plant/NDEATH/node1", ndeath.encode(), 0.0)
    assert (ev.kind, ev.devices) == ("offline", ["plant:node1:fan"])
    assert list(d.devices) == ["plant:node2:fan"]
    # after a death, data asks for a rebirth again
    assert [e.kind for e in d.handle(TOPIC.format("DDATA"), data(T0, {1: 1.0}), 50.0)] == ["drop", "rebirth"]


def nbirth(bd: int, seq: int = 0) -> bytes:
    return spb.NBirth(timestamp=T0, seq=seq, metrics=(
        spb.Metric(timestamp=T0, name="bdSeq", datatype=DT.INT64, value=bd),)).encode()


def test_a_late_death_certificate_of_an_earlier_session_is_ignored() -> None:
    """Sparkplug B 3.0: a host matches an NDEATH's bdSeq against the node's current NBIRTH (a Will the broker sends
    after the node has connected again belongs to the session before)."""
    d = SparkplugDecoder(CH, max_future_s=0)
    node = "spBv1.0/plant/{}/node1"
    assert d.handle(node.format("NBIRTH"), nbirth(bd=1), 0.0) == []
    d.handle(TOPIC.format("DBIRTH"), birth(seq=1), 0.0)
    old = spb.NDeath(timestamp=T0, bd_seq_metric=spb.Metric(timestamp=T0, name="bdSeq", datatype=DT.INT64, value=0))
    (ev,) = d.handle(node.format("NDEATH"), old.encode(), 0.0)
    assert (ev.kind, ev.reason) == ("drop", "sparkplug_stale_death") and "bdSeq 0" in ev.detail
    assert "plant:node1:pump" in d.devices
    now = spb.NDeath(timestamp=T0, bd_seq_metric=spb.Metric(timestamp=T0, name="bdSeq", datatype=DT.INT64, value=1))
    (ev,) = d.handle(node.format("NDEATH"), now.encode(), 0.0)
    assert (ev.kind, ev.devices) == ("offline", ["plant:node1:pump"])


def test_a_skipped_seq_asks_for_a_rebirth_and_node_data_and_the_wrap_count() -> None:
    d = SparkplugDecoder(CH, rebirth_interval_s=0, max_future_s=0)
    node = "spBv1.0/plant/{}/node1"
    d.handle(node.format("NBIRTH"), nbirth(bd=0), 0.0)
    d.handle(TOPIC.format("DBIRTH"), birth(seq=1), 0.0)
    ndata = spb.NData(timestamp=T0, seq=2, metrics=(spb.Metric(timestamp=T0, name="cpu", datatype=DT.DOUBLE,
                                                                 value=0.5),)).encode()
    assert d.handle(node.format("NDATA"), ndata, 0.0) == []  # node metrics: no channel, but its seq counts
    assert [e.kind for e in d.handle(TOPIC.format("DDATA"), data(T0 + 1, {1: 4.0}, seq=3), 0.0)] == ["data"]
    evs = d.handle(TOPIC.format("DDATA"), data(T0 + 2, {1: 5.0}, seq=6), 1.0)  # seq 4 and 5 lost on the way
    assert [e.kind for e in evs] == ["seq_gap", "rebirth", "data"] and evs[0].n == 2
    assert evs[1].topic == "spBv1.0/plant/NCMD/node1"
    assert evs[2].samples.values.tolist() == [[5.0, 2.0, 3.0]]  # its values are still read
    again = d.handle(TOPIC.format("DDATA"), data(T0 + 2, {1: 9.0}, seq=6), 1.5)  # sent again (QoS 1 DUP)
    assert [(e.kind, e.reason) for e in again] == [("drop", "sparkplug_resent")]  # no gap of 255, values not read
    assert d.devices["plant:node1:pump"].values[0] == 5.0
    for i, seq in enumerate([7, *range(8, 256), 0, 1]):  # on from the gap, wrapping at 256: no gap
        assert [e.kind for e in d.handle(TOPIC.format("DDATA"), data(T0 + 3 + i, {1: 1.0}, seq=seq), 2.0)] == [
            "data"], seq
    d.handle(node.format("NBIRTH"), nbirth(bd=1), 3.0)  # a new session starts its seq at 0 again
    assert [e.kind for e in d.handle(TOPIC.format("DBIRTH"), birth(seq=1), 3.0)] == ["data"]


def test_a_node_whose_own_metrics_are_channels_is_a_device_too() -> None:
    """An edge node without devices (its sensors as node metrics): NBIRTH and NDATA read as DBIRTH and DDATA, the
    device ``group:node``; NDEATH takes it offline. A node that names no channel is no device."""
    d = SparkplugDecoder(CH, rebirth_interval_s=0, max_future_s=0)
    node = "spBv1.0/plant/{}/node1"
    ms = (spb.Metric(timestamp=T0, name="bdSeq", datatype=DT.INT64, value=3),
          *(spb.Metric(timestamp=T0, name=n, alias=i + 1, datatype=DT.DOUBLE, value=float(i)) for i, n in enumerate(CH)))
    (ev,) = d.handle(node.format("NBIRTH"), spb.NBirth(timestamp=T0, seq=0, metrics=ms).encode(), 0.0)
    assert (ev.kind, ev.device, ev.samples.values.tolist()) == ("data", "plant:node1", [[0.0, 1.0, 2.0]])
    nd = spb.NData(timestamp=T0 + 1, seq=1, metrics=(spb.Metric(timestamp=T0 + 1, name=None, alias=2,
                                                                datatype=DT.DOUBLE, value=7.0),)).encode()
    (ev,) = d.handle(node.format("NDATA"), nd, 0.0)
    assert (ev.device, ev.samples.values.tolist()) == ("plant:node1", [[0.0, 7.0, 2.0]])
    d.handle(TOPIC.format("DBIRTH"), birth(seq=2), 0.0)  # and a device of it beside
    death = spb.NDeath(timestamp=T0, bd_seq_metric=spb.Metric(timestamp=T0, name="bdSeq", datatype=DT.INT64, value=3))
    (ev,) = d.handle(node.format("NDEATH"), death.encode(), 0.0)
    assert ev.kind == "offline" and sorted(ev.devices) == ["plant:node1", "plant:node1:pump"]
    assert d.handle(node.format("NBIRTH"), nbirth(bd=4), 0.0) == []  # no channel among its metrics: no device
    assert d.handle(node.format("NDATA"), nd, 0.0) == [] and "plant:node1" not in d.devices
    evs = d.handle("spBv1.0/plant/NDATA/node9", nd, 0.0)  # a node whose NBIRTH came before the daemon: a rebirth
    assert [e.kind for e in evs] == ["drop", "rebirth"] and evs[1].topic == "spBv1.0/plant/NCMD/node9"
    assert evs[0].reason == "sparkplug_unknown_device"
    # a node-device dropped past the device bound asks for its birth again, as a device does
    small = SparkplugDecoder(CH, max_devices=2, rebirth_interval_s=0, max_future_s=0)
    small.handle(node.format("NBIRTH"), spb.NBirth(timestamp=T0, seq=0, metrics=ms).encode(), 0.0)
    small.handle("spBv1.0/plant/DBIRTH/node2/a", birth(), 0.0)
    small.handle("spBv1.0/plant/DBIRTH/node2/b", birth(), 0.0)
    assert "plant:node1" not in small.devices
    assert [e.kind for e in small.handle(node.format("NDATA"), nd, 0.0)] == ["drop", "rebirth"]


def test_a_nodes_birth_and_death_drop_its_own_devices_only_whatever_the_ids_hold() -> None:
    """Sparkplug ids may hold ":": node ``b`` and node ``b:x`` of group ``a`` share the prefix ``a:b:``."""
    d = SparkplugDecoder(CH, max_future_s=0)
    d.handle("spBv1.0/a/DBIRTH/b/pump", birth(), 0.0)
    d.handle("spBv1.0/a/DBIRTH/b:x/fan", birth(), 0.0)
    assert d.handle("spBv1.0/a/NBIRTH/b", nbirth(bd=1), 0.0) == []
    assert list(d.devices) == ["a:b:x:fan"]  # node b's pump waits for its DBIRTH; b:x's fan is untouched
    death = spb.NDeath(timestamp=T0, bd_seq_metric=spb.Metric(timestamp=T0, name="bdSeq", datatype=DT.INT64, value=7))
    (ev,) = d.handle("spBv1.0/a/NDEATH/b:x", death.encode(), 0.0)
    assert ev.devices == ["a:b:x:fan"] and d.devices == {}


@pytest.mark.parametrize(("dt", "value", "want"), [
    (DT.INT8, -5, -5.0), (DT.INT16, -300, -300.0), (DT.INT32, -(2 ** 31), -(2.0 ** 31)), (DT.UINT32, 2 ** 32 - 1, 2.0 ** 32 - 1),
    (DT.INT64, -(2 ** 40), -(2.0 ** 40)), (DT.UINT64, 2 ** 40, 2.0 ** 40), (DT.FLOAT, 0.5, 0.5),
    (DT.DOUBLE, -1e30, -1e30), (DT.BOOLEAN, True, 1.0),
])
def test_numeric_datatypes(dt, value, want) -> None:
    b = spb.DBirth(timestamp=T0, seq=0, metrics=(spb.Metric(timestamp=T0, name="x", alias=1, datatype=dt, value=value),))
    p = pb.Payload.FromString(b.encode())
    assert metric_value(p.metrics[0], int(dt)) == want


def test_bad_values_and_garbage_are_counted_not_raised() -> None:
    d = SparkplugDecoder(CH, max_future_s=0)  # arrival times below are small numbers: no future check
    d.handle(TOPIC.format("DBIRTH"), birth(), 0.0)
    for bad in (math.nan, math.inf, 1e300):
        evs = d.handle(TOPIC.format("DDATA"), data(T0 + 5, {1: bad}), 0.0)
        assert [e.reason for e in evs if e.kind == "drop"] == ["sparkplug_bad_value"]
        assert not [e for e in evs if e.kind == "data"]
    (ev,) = d.handle(TOPIC.format("DDATA"), b"\x0a\xff\xff\xff\xff\xff", 0.0)
    assert (ev.kind, ev.reason) == ("drop", "sparkplug_malformed")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_give_events_never_an_exception(payload: bytes) -> None:
    d = SparkplugDecoder(CH, max_future_s=0)  # arrival times below are small numbers: no future check
    d.handle(TOPIC.format("DBIRTH"), birth(), 0.0)
    for kind in ("DBIRTH", "DDATA", "DDEATH"):
        for ev in d.handle(TOPIC.format(kind), payload, 0.0):
            assert ev.kind in ("data", "drop", "rebirth", "offline")
            if ev.kind == "data":
                assert ev.samples.values.shape[1] == len(CH)


_f32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from([1, 2, 3]), _f32), min_size=1, max_size=20))
def test_decoded_rows_replay_the_updates(updates: list[tuple[int, int, float]]) -> None:
    """Against a plain model of Sparkplug's report-by-exception: last value per channel, per timestamp."""
    d = SparkplugDecoder(CH, max_future_s=0)  # arrival times below are small numbers: no future check
    d.handle(TOPIC.format("DBIRTH"), birth((0.0, 0.0, 0.0)), 0.0)
    p = pb.Payload(timestamp=T0, seq=1)
    for off, alias, v in updates:
        p.metrics.add(alias=alias, timestamp=T0 + 1 + off, float_value=v)  # datatype from the birth (Double)
    evs = d.handle(TOPIC.format("DDATA"), p.SerializeToString(), 0.0)
    state = [0.0, 0.0, 0.0]
    want: list[list[float]] = []
    by_ts: dict[int, list[tuple[int, float]]] = {}
    for off, alias, v in updates:
        by_ts.setdefault(off, []).append((alias - 1, v))
    for off in sorted(by_ts):
        for ch, v in by_ts[off]:
            state[ch] = v
        want.append(list(state))
    (ev,) = evs
    assert ev.samples.values.tolist() == [[struct.unpack("f", struct.pack("f", x))[0] for x in r] for r in want]


@pytest.mark.parametrize(("dt", "raw", "want"), [(1, 0xFFFFFFFB, -5.0), (2, 0xFFFFFED4, -300.0), (3, 2 ** 31, -(2.0 ** 31))])
def test_signed_ints_sign_extended_to_32_bits_as_tahu_writes_them(dt: int, raw: int, want: float) -> None:
    m = pb.Payload.Metric(name="x", datatype=dt, int_value=raw)
    assert metric_value(m, dt) == want


# -- the daemon on a real Mosquitto, fed by a pysparkplug-built edge node ---------------------------------------


@pytest.mark.slow
def test_daemon_reads_sparkplug_raises_asks_rebirth_and_goes_offline(mosquitto, demo_model_path) -> None:
    import json

    import numpy as np

    from edge_runtime.service.model import load_model
    from edge_runtime.tools.synthetic import Anomaly, inject, normal_series
    from tests.edge_runtime.mqtt_helpers import Collector, Publisher, idle, running_daemon, wait_until

    channels = load_model(str(demo_model_path)).metadata.channels
    x = inject(normal_series(400, len(channels), seed=0), Anomaly("level_shift", 200, 400, (0, 1)))
    ts = T0 + np.arange(400) * 100  # ms, 0.1 s apart
    pub = Publisher(mosquitto.port)
    col = Collector(mosquitto.port, ["alerts/#", "spBv1.0/plant/NCMD/#"])
    node = "spBv1.0/plant/{}/node1"
    dev = "spBv1.0/plant/{}/node1/pump"

    def send(topic: str, payload: bytes) -> None:
        pub.send(topic, payload)

    try:
        with running_daemon(mosquitto.url, demo_model_path, sparkplug_groups=["plant"]) as d:
            bd = spb.Metric(timestamp=T0, name="bdSeq", datatype=DT.INT64, value=0)
            send(node.format("NBIRTH"), spb.NBirth(timestamp=T0, seq=0, metrics=(bd,)).encode())
            metrics = tuple(spb.Metric(timestamp=int(ts[0]), name=c, alias=10 + i, datatype=DT.FLOAT,
                                       value=float(x[0, i])) for i, c in enumerate(channels))
            send(dev.format("DBIRTH"), spb.DBirth(timestamp=int(ts[0]), seq=1, metrics=metrics).encode())
            for k in range(1, 400):
                ms = tuple(spb.Metric(timestamp=int(ts[k]), name=None, alias=10 + i, datatype=DT.FLOAT,
                                      value=float(x[k, i])) for i in range(len(channels)))
                send(dev.format("DDATA"), spb.DData(timestamp=int(ts[k]), seq=(k + 1) % 256, metrics=ms).encode())
            pub.flush()
            idle(d)
            device = "plant:node1:pump"
            assert d.stats.counts["samples"] == 400
            assert d.stats.counts["windows_scored"] > 0
            wait_until(lambda: [a for a in col.alerts() if a["device"] == device and a["state"] == "raised"], 10,
                       "an alert from Sparkplug data")
            # an alias its DBIRTH did not announce: counted, and the node is asked for a rebirth
            assert d.stats.counts["sparkplug_seq_gaps"] == 0  # every seq in turn (wrapping at 256)
            unknown = spb.Metric(timestamp=int(ts[-1]) + 100, name=None, alias=777, datatype=DT.FLOAT, value=1.0)
            send(dev.format("DDATA"), spb.DData(timestamp=int(ts[-1]) + 100, seq=401 % 256, metrics=(unknown,)).encode())
            pub.flush()
            wait_until(lambda: [m for m in col.messages if m[0] == "spBv1.0/plant/NCMD/node1"], 10, "NCMD rebirth")
            ncmd = spb.NCmd.decode(next(p for t, p, _ in col.messages if t == "spBv1.0/plant/NCMD/node1"))
            assert [(m.name, m.value) for m in ncmd.metrics] == [(REBIRTH_METRIC, True)]
            assert d.stats.drops["sparkplug_unknown_alias"] == 1
            send(dev.format("DDATA"), b"\x0a\xff\xff")  # garbage: counted, the daemon keeps going
            # a late Will of an earlier session of the node (another bdSeq): not this session's death
            stale = spb.Metric(timestamp=T0, name="bdSeq", datatype=DT.INT64, value=7)
            send(node.format("NDEATH"), spb.NDeath(timestamp=T0, bd_seq_metric=stale).encode())
            pub.flush()
            wait_until(lambda: d.stats.drops["sparkplug_stale_death"] == 1, 10, "the stale death counted")
            assert device in d.ingest.store.devices
            # the device dies: offline, its raised alert cleared with reason "offline"
            send(dev.format("DDEATH"), spb.DDeath(timestamp=int(ts[-1]) + 200, seq=402 % 256).encode())
            pub.flush()
            wait_until(lambda: [a for a in col.alerts() if a["device"] == device and a.get("reason") == "offline"],
                       10, "cleared as offline")
            assert device not in d.ingest.store.devices
            assert d.stats.drops["sparkplug_malformed"] == 1
            def states() -> list[dict]:
                return [json.loads(p) for t, p, _ in col.messages if t == f"alerts/{device}/state"]

            # the retained state is another topic than the alert: it may arrive a moment after it
            wait_until(lambda: states() and states()[-1]["state"] == "cleared", 10, "the retained state cleared")
            assert states()[-1]["reason"] == "offline"
    finally:
        col.close()
        pub.close()


def test_a_far_future_timestamp_is_refused_like_the_json_decoders() -> None:
    d = SparkplugDecoder(CH, max_future_s=300)
    now = T0 / 1000
    d.handle(TOPIC.format("DBIRTH"), birth(), now)
    evs = d.handle(TOPIC.format("DDATA"), data(T0 + 20 * 365 * 86400 * 1000, {1: 9.0}), now)
    assert [(e.kind, e.reason) for e in evs] == [("drop", "future")]
    (ev,) = d.handle(TOPIC.format("DDATA"), data(T0 + 1000, {1: 9.0}), now)  # the device is not blinded
    assert ev.samples.values.tolist() == [[9.0, 2.0, 3.0]]
