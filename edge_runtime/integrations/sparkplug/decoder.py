"""Sparkplug B messages -> samples per device, offline devices and rebirth requests. Pure (time is given).

Topics ``spBv1.0/{group}/{NBIRTH|NDEATH|DBIRTH|DDATA|DDEATH}/{edge_node}[/{device}]``; payloads are the
Sparkplug B protobuf ``Payload`` (``sparkplug_b_pb2``, generated from ``sparkplug_b.proto`` beside it).

- DBIRTH announces a device's metrics: names, aliases, datatypes and current values. The metrics whose
  name is one of the model's channels are its channels; the rest are ignored. An NBIRTH whose own metrics name
  channels makes the edge node a device too (``{group}:{edge_node}``), its NDATA read as DDATA.
- DDATA carries changes (Sparkplug reports by exception), by alias or by name: the device's last value of
  every channel is kept, and each distinct metric timestamp gives one sample (C values) once every channel
  has had a value. DBIRTH's values count as the first sample.
- DDATA for a device without a DBIRTH, or with an alias its DBIRTH did not announce, asks for a rebirth:
  an NCMD ``Node Control/Rebirth`` = true to its edge node (at most one per node per ``rebirth_interval_s``).
- DDEATH (the device) and NDEATH (every device of the node) mean offline: the device's state is dropped.
  An NDEATH whose ``bdSeq`` is not the one of the node's current NBIRTH is a late death certificate of an
  earlier session (the broker sends a Will after the node has connected again): ignored
  (``sparkplug_stale_death``).
- NBIRTH resets the node's devices (their DBIRTHs follow) and starts its ``seq`` (0, then +1 mod 256 with
  every NDATA, DBIRTH, DDATA and DDEATH of the node). A message whose ``seq`` is not the next one means a
  message of the node was lost on the way (a report-by-exception value missed, a channel left at an old
  value): a ``seq_gap`` event, and a rebirth is asked for, which sends every current value again.

The daemon's device id is ``{group}:{edge_node}:{device}`` (``{group}:{edge_node}`` for the node's own metrics). Every refusal is a :class:`Event` with a reason
(``sparkplug_malformed``, ``sparkplug_unknown_device``, ``sparkplug_unknown_alias``, ``sparkplug_bad_value``,
``future``),
for the daemon's drop counters.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError as ProtobufDecodeError

from edge_runtime.integrations.sparkplug import sparkplug_b_pb2 as pb
from edge_runtime.pipeline.decode import Samples

NAMESPACE = "spBv1.0"
REBIRTH_METRIC = "Node Control/Rebirth"
KINDS = ("NBIRTH", "NDEATH", "NDATA", "DBIRTH", "DDATA", "DDEATH")
BDSEQ_METRIC = "bdSeq"
_F32_MAX = float(np.finfo(np.float32).max)
Payload: Any = pb.Payload  # type: ignore[attr-defined]  # generated code: no stubs
# Sparkplug datatypes (sparkplug_b.proto DataType)
INT8, INT16, INT32, INT64, UINT8, UINT16, UINT32, UINT64, FLOAT, DOUBLE, BOOLEAN = range(1, 12)
_SIGNED_BITS = {INT8: 8, INT16: 16, INT32: 32}
_NUMERIC = frozenset(range(1, 12))


@dataclass(frozen=True)
class SparkplugTopic:
    group: str
    kind: str
    edge_node: str
    device: str | None = None

    @property
    def ncmd(self) -> str:
        """The node's command topic (where a rebirth request goes)."""
        return f"{NAMESPACE}/{self.group}/NCMD/{self.edge_node}"


def parse_topic(topic: str) -> SparkplugTopic | None:
    """A Sparkplug B topic the decoder reads, or None."""
    parts = topic.split("/")
    if len(parts) not in (4, 5) or parts[0] != NAMESPACE or parts[2] not in KINDS or not all(parts):
        return None
    node_msg = parts[2].startswith("N")
    if node_msg != (len(parts) == 4):
        return None
    return SparkplugTopic(parts[1], parts[2], parts[3], None if node_msg else parts[4])


@dataclass
class Event:
    """What one message meant: ``kind`` is ``data`` (``device``, ``samples``), ``offline`` (``devices``),
    ``rebirth`` (publish ``payload`` to ``topic``), ``seq_gap`` (``n`` messages of the node missed, ``detail``)
    or ``drop`` (``reason``, ``n`` items, ``detail``)."""

    kind: str
    device: str = ""
    samples: Samples | None = None
    devices: list[str] = field(default_factory=list)
    topic: str = ""
    payload: bytes = b""
    reason: str = ""
    n: int = 1
    detail: str = ""


@dataclass
class _Device:
    aliases: dict[int, str]  # alias -> metric name (every metric the DBIRTH announced)
    datatypes: dict[str, int]  # metric name -> datatype
    values: list[float | None]  # per channel: the last value
    node: str = ""  # its edge node (``group:node``): an NBIRTH or NDEATH of that node drops it


@dataclass
class _Node:
    bdseq: int | None = None  # the current NBIRTH's bdSeq (None: not seen, or the birth had none)
    next_seq: int | None = None  # the seq the node's next message should carry (None: not known yet)
    is_device: bool = False  # its NBIRTH named channels: the node is a device (``group:node``) too


def _bdseq(p: Any) -> int | None:
    """The ``bdSeq`` metric of an NBIRTH or NDEATH payload, or None."""
    for m in p.metrics:
        if m.name == BDSEQ_METRIC:
            which = m.WhichOneof("value")
            if which in ("long_value", "int_value"):
                return int(getattr(m, which))
    return None


def metric_value(m: Any, datatype: int) -> float | None:
    """A numeric Sparkplug metric's value as a float (signed integers from their two's complement),
    None when it is null or not a number; raises ValueError when it is out of float32 range."""
    if m.is_null:
        return None
    which = m.WhichOneof("value")
    if which == "int_value":
        v: float = m.int_value
        bits = _SIGNED_BITS.get(datatype)
        if bits is not None:  # two's complement: sign-extended to 32 bits (Tahu) or in its own width (pysparkplug)
            if v >= 1 << 31:
                v -= 1 << 32
            elif v >= 1 << (bits - 1):
                v -= 1 << bits
    elif which == "long_value":
        v = m.long_value - (1 << 64) if datatype == INT64 and m.long_value >= 1 << 63 else m.long_value
    elif which == "float_value":
        v = m.float_value
    elif which == "double_value":
        v = m.double_value
    elif which == "boolean_value":
        v = float(m.boolean_value)
    else:
        return None
    v = float(v)
    if not math.isfinite(v) or abs(v) > _F32_MAX:
        raise ValueError(f"{v!r} is beyond float32 range")
    return v


def rebirth_payload(now_ms: int) -> bytes:
    """An NCMD payload asking an edge node to publish its births again."""
    p = Payload(timestamp=now_ms)
    p.metrics.add(name=REBIRTH_METRIC, timestamp=now_ms, datatype=BOOLEAN, boolean_value=True)
    return p.SerializeToString()


class SparkplugDecoder:
    """The state of the Sparkplug devices seen (their DBIRTH), turned into :class:`Event` s per message.

    ``channels``: the model's channel names, in order (C). At most ``max_devices`` device states are kept
    (the oldest dropped; its next DDATA asks for a rebirth). A metric stamped more than ``max_future_s``
    after arrival is refused as ``future``, like the JSON decoder's (0: no limit)."""

    def __init__(self, channels: list[str], max_devices: int = 10_000, rebirth_interval_s: float = 10.0,
                 max_future_s: float = 300.0) -> None:
        self.channels = list(channels)
        self.max_future_ms = max_future_s * 1000 if max_future_s > 0 else math.inf
        self._index = {name: i for i, name in enumerate(self.channels)}
        self.max_devices = max_devices
        self.rebirth_interval_s = rebirth_interval_s
        self.devices: OrderedDict[str, _Device] = OrderedDict()
        self.nodes: OrderedDict[str, _Node] = OrderedDict()  # group:node -> its session (bdSeq, seq)
        self._rebirth_at: dict[str, float] = {}  # ncmd topic -> when one was last asked for

    def set_channels(self, channels: list[str]) -> None:
        """A reloaded model's channels: births (aliases, datatypes) are kept, the last values start again."""
        self.channels = list(channels)
        self._index = {name: i for i, name in enumerate(self.channels)}
        for state in self.devices.values():
            state.values = [None] * len(self.channels)

    @staticmethod
    def device_id(t: SparkplugTopic) -> str:
        return f"{t.group}:{t.edge_node}:{t.device}"

    def handle(self, topic: str, payload: bytes, now: float) -> list[Event]:
        """One message on a Sparkplug topic at epoch ``now``."""
        t = parse_topic(topic)
        if t is None:
            return [Event("drop", reason="sparkplug_topic", detail=f"not a Sparkplug B topic: {topic[:200]!r}")]
        try:
            p = Payload.FromString(bytes(payload))
        except (ProtobufDecodeError, RecursionError, ValueError) as exc:
            return [Event("drop", reason="sparkplug_malformed", detail=f"{t.kind} on {topic[:200]}: {exc}")]
        key = f"{t.group}:{t.edge_node}"
        if t.kind == "NDEATH":
            node = self.nodes.get(key)
            bd = _bdseq(p)
            if node is not None and node.bdseq is not None and bd is not None and bd != node.bdseq:
                return [Event("drop", reason="sparkplug_stale_death", detail=f"NDEATH of {key} with bdSeq {bd}, "
                              f"its current NBIRTH's is {node.bdseq}: a death certificate of an earlier session")]
            self.nodes.pop(key, None)
            return self._node_gone(key, offline=True)
        if t.kind == "NBIRTH":
            self.nodes.pop(key, None)
            while len(self.nodes) >= self.max_devices:
                self.nodes.popitem(last=False)
            is_device = any(m.name in self._index for m in p.metrics)  # its own metrics are channels
            self.nodes[key] = _Node(_bdseq(p), (p.seq + 1) % 256 if p.HasField("seq") else None, is_device)
            self._node_gone(key, offline=False)
            return self._birth(t, key, p, now) if is_device else []
        events = self._sequence(t, key, p, now)
        if events and events[0].kind == "drop":  # a message sent again: its values are older than those read
            return events
        if t.kind == "NDATA":  # the node's own metrics: channels when its NBIRTH named some; its seq counts
            if key in self.devices:
                return events + self._data(t, key, p, now)
            node = self.nodes.get(key)
            if node is not None and not node.is_device:
                return events
            # joined late (no NBIRTH seen), or its state dropped past the bound: a birth again
            return [*events, Event("drop", reason="sparkplug_unknown_device", n=len(p.metrics),
                                   detail=f"NDATA from {key} before its NBIRTH"), *self._rebirth(t, now)]
        dev = self.device_id(t)
        if t.kind == "DDEATH":
            return events + ([Event("offline", devices=[dev])] if self.devices.pop(dev, None) is not None else [])
        if t.kind == "DBIRTH":
            return events + self._birth(t, dev, p, now)
        return events + self._data(t, dev, p, now)

    def _node_gone(self, key: str, offline: bool) -> list[Event]:
        """The node's devices (and the node itself as one) dropped (an NBIRTH: their DBIRTHs follow; an NDEATH:
        offline)."""
        gone = [d for d, st in self.devices.items() if st.node == key]  # (not by prefix: node ids may hold ":")
        for d in gone:
            del self.devices[d]
        return [Event("offline", devices=gone)] if gone and offline else []

    def _sequence(self, t: SparkplugTopic, key: str, p: Any, now: float) -> list[Event]:
        """The node's ``seq`` checked and moved on; a gap: a ``seq_gap`` event and a rebirth request."""
        node = self.nodes.get(key)
        if node is None or not p.HasField("seq"):
            return []
        self.nodes.move_to_end(key)  # (the least recently heard node is the one dropped past the bound)
        seq, want = p.seq % 256, node.next_seq
        if want is not None and (want - seq) % 256 in (1, 2, 3):  # just behind: a message sent again (QoS 1 DUP)
            return [Event("drop", reason="sparkplug_resent", n=1, detail=f"{key}: seq {seq} again (the next is "
                          f"{want}): a message sent again, its values older than those read")]
        node.next_seq = (seq + 1) % 256
        if want is None or seq == want:
            return []
        return [Event("seq_gap", n=(seq - want) % 256, detail=f"{key}: seq {seq} where {want} was next: "
                      f"{(seq - want) % 256} message(s) of the node lost on the way"), *self._rebirth(t, now)]

    def _birth(self, t: SparkplugTopic, dev: str, p: Any, now: float) -> list[Event]:
        state = _Device({}, {}, [None] * len(self.channels), f"{t.group}:{t.edge_node}")
        for m in p.metrics:
            if m.name:
                state.datatypes[m.name] = m.datatype
                if m.HasField("alias"):
                    state.aliases[m.alias] = m.name
        self.devices.pop(dev, None)
        while len(self.devices) >= self.max_devices:
            self.devices.popitem(last=False)
        self.devices[dev] = state
        return self._data(t, dev, p, now)

    def _rebirth(self, t: SparkplugTopic, now: float) -> list[Event]:
        topic = t.ncmd
        if now - self._rebirth_at.get(topic, -math.inf) < self.rebirth_interval_s:
            return []
        if len(self._rebirth_at) >= 2 * self.max_devices:
            self._rebirth_at.clear()
        self._rebirth_at[topic] = now
        return [Event("rebirth", topic=topic, payload=rebirth_payload(int(now * 1000)))]

    def _data(self, t: SparkplugTopic, dev: str, p: Any, now: float) -> list[Event]:
        state = self.devices.get(dev)
        if state is None:
            return [Event("drop", reason="sparkplug_unknown_device", n=len(p.metrics),
                          detail=f"DDATA from {dev} before its DBIRTH"), *self._rebirth(t, now)]
        events: list[Event] = []
        unknown = bad = future = 0
        latest_ms = now * 1000 + self.max_future_ms
        default_ms = p.timestamp if p.HasField("timestamp") else int(now * 1000)
        updates: dict[int, list[tuple[int, float]]] = {}  # timestamp ms -> [(channel, value)]
        for m in p.metrics:
            name = m.name or (state.aliases.get(m.alias) if m.HasField("alias") else None)
            if not name:
                unknown += 1
                continue
            ch = self._index.get(name)
            dt = m.datatype or state.datatypes.get(name, 0)
            if ch is None or dt not in _NUMERIC:
                continue  # another metric of the device (or not a number): not a channel
            try:
                v = metric_value(m, dt)
            except ValueError:
                bad += 1
                continue
            ms = m.timestamp if m.HasField("timestamp") else default_ms
            if ms > latest_ms:
                future += 1
            elif v is not None:
                updates.setdefault(ms, []).append((ch, v))
        if unknown:
            events.append(Event("drop", reason="sparkplug_unknown_alias", n=unknown,
                                detail=f"{dev}: {unknown} metric(s) with an alias its DBIRTH did not announce"))
            events += self._rebirth(t, now)
        if bad:
            events.append(Event("drop", reason="sparkplug_bad_value", n=bad,
                                detail=f"{dev}: {bad} value(s) NaN, infinite or beyond float32 range"))
        if future:
            events.append(Event("drop", reason="future", n=future,
                                detail=f"{dev}: {future} value(s) stamped beyond max_future_s after arrival"))
        ts: list[float] = []
        rows: list[list[float]] = []
        for ms in sorted(updates):
            for ch, v in updates[ms]:
                state.values[ch] = v
            if all(v is not None for v in state.values):
                ts.append(ms / 1000.0)
                rows.append([float(v) for v in state.values if v is not None])
        self.devices.move_to_end(dev)
        if rows:
            samples = Samples(np.array(ts, np.float64), np.array(rows, np.float32).reshape(len(rows), -1), True)
            events.append(Event("data", device=dev, samples=samples))
        return events
