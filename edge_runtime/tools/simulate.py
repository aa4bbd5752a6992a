"""``edgewatch simulate``: publish synthetic sensor streams with scheduled anomalies, write ground truth.

Two layers:

- pure planning and generation (:class:`SimPlan`, :func:`make_plan`, :class:`StreamSource`,
  :func:`encode_payload`, :func:`ground_truth`): which device streams what, where the anomalies
  are, the bytes of each payload. Deterministic for a seed; no network.
- the publishing loop (:func:`publish_plan`): one paho client, real-time pacing (or as fast as
  possible), QoS 0 or 1.

Each device is a stream of :func:`edge_runtime.tools.synthetic.normal_series`. By default every device
shares one machine profile (the seed) and starts at a different absolute time, so a model trained
on that profile fits all of them; ``distinct=True`` gives each device its own profile (seed + i).
Sample ``k`` of a stream has timestamp ``t0 + k / rate``. Anomaly spans are sample indices,
``end`` exclusive, and are applied once per anomaly (on a context of normal data around it) so
chunks join exactly whatever the chunk size.

Must not import torch, onnx or trainer.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click
import numpy as np
from paho.mqtt.enums import MQTTErrorCode

from edge_runtime.clierror import EXIT_DATAERR, EXIT_NOINPUT, EXIT_UNAVAILABLE, EXIT_USAGE, InputPath, code_of
from edge_runtime.clierror import fail as _fail
from edge_runtime.config import PASSWORD_ENV, ConfigError, prefixed, topic_prefix
from edge_runtime.contract import ModelMetadata
from edge_runtime.pipeline.topics import device_level_problem
from edge_runtime.service.mqtt import (
    BrokerAddress,
    ClientOptions,
    MqttConnectError,
    connect,
    parse_broker_url,
)
from edge_runtime.tools.synthetic import (
    ALL_KINDS,
    ANOMALY_KINDS,
    KIND_CLASS,
    SENSOR_FAULTS,
    STOP_TAIL,
    Anomaly,
    apply,
    channel_names,
    normal_series,
)

log = logging.getLogger(__name__)

FORMATS = ("single", "keyed", "batch", "csv")
_OFFSET_STRIDE = 10_000_019  # absolute-time distance between devices that share a profile
_CONTEXT = 2048  # normal samples around an anomaly that set its magnitude (channel std)
SENSOR_SEED_OFFSET = 1 << 20  # StreamSource: sensor faults draw from seeds apart from the process faults' and stops'


class SimError(ValueError):
    """A simulation option is unusable (one clear line for the user); ``exit_code`` as edge_runtime/clierror.py
    has them (default: usage)."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


def fail(command: str, message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print ``edgewatch COMMAND: error: MESSAGE`` on stderr and exit with ``code`` (no traceback)."""
    _fail(message, code, prog=f"edgewatch {command}")


@dataclass(frozen=True)
class SimDevice:
    """One simulated device: ``seed`` picks the machine profile, ``offset`` its absolute start time."""

    name: str
    seed: int
    offset: int
    anomalies: tuple[Anomaly, ...] = ()


@dataclass(frozen=True)
class SimPlan:
    """What to publish: ``n_steps`` samples at ``rate`` Hz for each device, first at epoch ``t0``."""

    devices: tuple[SimDevice, ...]
    channels: tuple[str, ...]
    rate: float
    n_steps: int
    t0: float

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    def ts(self, index: Any) -> Any:
        """Timestamp (epoch s) of sample ``index`` (an int, or an index array (n,) -> (n,) float64)."""
        if isinstance(index, np.ndarray):
            return self.t0 + index.astype(np.float64) / self.rate
        return self.t0 + index / self.rate


@dataclass(frozen=True)
class ScheduledAnomaly:
    """A user-scheduled anomaly: ``device`` (name or ``*``), ``kind``, start and duration in seconds."""

    device: str
    kind: str
    start_s: float
    duration_s: float
    channels: tuple[str, ...] = ()


_SPEC = re.compile(r"^(?P<dev>[^:]+):(?P<kind>[a-z_]+):(?P<start>[0-9.]+):(?P<dur>[0-9.]+)(?::(?P<ch>.+))?$")


def parse_anomaly_spec(spec: str) -> ScheduledAnomaly:
    """Parse ``DEVICE:KIND:START_S:DURATION_S[:CH1,CH2]`` (``DEVICE`` may be ``*``)."""
    m = _SPEC.match(spec.strip())
    if not m:
        raise SimError(f"bad anomaly {spec!r}: expected DEVICE:KIND:START_S:DURATION_S[:CHANNELS]")
    kind = m["kind"]
    if kind not in ALL_KINDS:
        raise SimError(f"bad anomaly {spec!r}: kind {kind!r} is not one of {', '.join(ALL_KINDS)}")
    try:
        start, dur = float(m["start"]), float(m["dur"])
    except ValueError:
        raise SimError(f"bad anomaly {spec!r}: start and duration must be numbers") from None
    if dur <= 0:
        raise SimError(f"bad anomaly {spec!r}: duration must be > 0")
    chans = tuple(c.strip() for c in m["ch"].split(",") if c.strip()) if m["ch"] else ()
    return ScheduledAnomaly(m["dev"], kind, start, dur, chans)


def stop_cycle_specs(cycle: str | None, duration_s: float, warmup_s: float) -> list[ScheduledAnomaly]:
    """``RUN_S:STOP_S`` -> a stop of every device after each ``RUN_S`` of running (from ``warmup_s`` on)."""
    if not cycle:
        return []
    try:
        run_s, stop_s = (float(v) for v in cycle.split(":"))
    except ValueError:
        raise SimError(f"--stop-cycle {cycle!r}: expected RUN_S:STOP_S, e.g. 60:20") from None
    if not (run_s > 0 and stop_s > 0):
        raise SimError(f"--stop-cycle {cycle!r}: both durations must be > 0")
    out, t = [], warmup_s + run_s
    while t + stop_s <= duration_s:
        out.append(ScheduledAnomaly("*", "stop", t, stop_s))
        t += stop_s + run_s
    return out


def device_names(n: int, prefix: str = "sim") -> list[str]:
    """``sim-0, sim-1, ...`` (zero-padded when there are more than 10)."""
    width = len(str(n - 1)) if n > 10 else 1
    return [f"{prefix}-{i:0{width}d}" for i in range(n)]


def _channel_index(name: str, channels: Sequence[str]) -> int:
    if name in channels:
        return list(channels).index(name)
    if name.isdigit() and int(name) < len(channels):
        return int(name)
    raise SimError(f"unknown channel {name!r}; channels are {', '.join(channels)}")


def _random_for_device(
    i: int, n_steps: int, n_channels: int, count: int, seed: int, warmup: int,
    min_len: int, max_len: int, kinds: Sequence[str], gap: int,
) -> list[Anomaly]:
    """``count`` anomalies after ``warmup`` samples, each followed by ``gap`` normal samples
    (time to clear), kinds rotated per device."""
    if count <= 0:
        return []
    usable = n_steps - warmup
    slot = usable // count
    if slot < max_len + gap + 1:
        raise SimError(
            f"{count} anomalies of up to {max_len} samples, each followed by {gap} normal samples, do not "
            f"fit in {usable} samples after the warm-up: lengthen --duration or lower --random"
        )
    rng = np.random.default_rng([seed, i, 5151])
    r = (i * count) % len(kinds)  # devices continue the cycle, so a few devices cover every kind
    rot = list(kinds[r:]) + list(kinds[:r])
    out = []
    for k in range(count):
        length = int(rng.integers(min_len, max_len + 1))
        lo = warmup + k * slot
        start = int(rng.integers(lo, lo + slot - length - gap + 1))
        kind = rot[k % len(rot)]
        n_ch = 1 if kind == "correlation_break" or n_channels == 1 else int(rng.integers(1, 3))
        chans = tuple(sorted(int(c) for c in rng.choice(n_channels, size=n_ch, replace=False)))
        out.append(Anomaly(kind, start, start + length, chans))
    return out


def make_plan(
    n_devices: int,
    rate: float,
    duration_s: float,
    *,
    n_channels: int = 4,
    channels: Sequence[str] | None = None,
    seed: int = 0,
    distinct: bool = False,
    prefix: str = "sim",
    scheduled: Sequence[ScheduledAnomaly] = (),
    random_count: int = 0,
    kinds: Sequence[str] = ANOMALY_KINDS,
    min_len_s: float = 2.0,
    max_len_s: float = 6.0,
    warmup_s: float = 10.0,
    gap_s: float | None = None,
    t0: float | None = None,
) -> SimPlan:
    """Build a :class:`SimPlan`: device names, profiles, and anomalies (scheduled and/or random).

    Random anomalies start after ``warmup_s`` and each is followed by at least ``gap_s`` seconds
    of normal data (default ``max_len_s``) so a detector can clear before the next one.
    """
    if n_devices < 1:
        raise SimError("--devices must be >= 1")
    if not (math.isfinite(rate) and rate > 0):
        raise SimError("--rate must be > 0")
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise SimError("--duration must be > 0")
    names = list(channels) if channels else channel_names(n_channels)
    if len(set(names)) != len(names):
        raise SimError("channel names must be unique")
    c = len(names)
    n_steps = max(1, round(duration_s * rate))
    for k in kinds:
        if k not in ALL_KINDS:
            raise SimError(f"unknown anomaly kind {k!r}; use {', '.join(ALL_KINDS)}")
    dev_names = device_names(n_devices, prefix)
    per_dev: dict[str, list[Anomaly]] = {d: [] for d in dev_names}
    for s in scheduled:
        targets = dev_names if s.device == "*" else [s.device]
        if s.device != "*" and s.device not in per_dev:
            raise SimError(f"anomaly for unknown device {s.device!r}; devices are {', '.join(dev_names)}")
        start = round(s.start_s * rate)
        end = min(n_steps, start + max(1, round(s.duration_s * rate)))
        if start >= n_steps:
            raise SimError(f"anomaly {s.kind} at {s.start_s}s starts after the end ({duration_s}s)")
        if s.channels:
            chans = tuple(sorted({_channel_index(ch, names) for ch in s.channels}))
        else:
            chans = (0,) if s.kind == "correlation_break" or c == 1 else (0, 1)
        for d in targets:
            per_dev[d].append(Anomaly(s.kind, start, end, chans))
    if random_count:
        min_len, max_len = max(1, round(min_len_s * rate)), max(1, round(max_len_s * rate))
        if min_len > max_len:
            raise SimError("--min-len must be <= --max-len")
        warmup = round(warmup_s * rate)
        gap = round((max_len_s if gap_s is None else gap_s) * rate)
        for i, d in enumerate(dev_names):
            per_dev[d] += _random_for_device(
                i, n_steps, c, random_count, seed, warmup, min_len, max_len, kinds, gap
            )
    devices = []
    for i, d in enumerate(dev_names):
        anomalies = tuple(sorted(per_dev[d], key=lambda a: a.start))
        check_overlaps(d, anomalies)
        dseed = seed + i if distinct else seed
        offset = 0 if distinct else i * _OFFSET_STRIDE
        devices.append(SimDevice(d, dseed, offset, anomalies))
    start_time = float(round(time.time(), 3)) if t0 is None else float(t0)
    return SimPlan(tuple(devices), tuple(names), float(rate), int(n_steps), start_time)


def check_overlaps(device: str, anomalies: Sequence[Anomaly]) -> None:
    """Anomalies (sorted by start) may overlap only where one is a sensor fault and the other is not (a frozen
    sensor during a process fault); nothing but a sensor fault or another stop starts in a stop's run-up."""
    for i, a in enumerate(anomalies):
        for b in anomalies[i + 1 :]:
            if b.start >= a.end + STOP_TAIL:
                break
            sensor = (KIND_CLASS[a.kind] == "sensor") != (KIND_CLASS[b.kind] == "sensor")
            if b.start < a.end and not sensor:
                raise SimError(f"anomalies on {device} overlap ({a.kind} and {b.kind}); only a sensor fault may "
                               "overlap another kind")
            if a.kind == "stop" and b.kind not in ("stop", "dead") and KIND_CLASS[b.kind] != "sensor" \
                    and b.start < a.end + STOP_TAIL:
                raise SimError(f"{b.kind} on {device} starts during the run-up after a stop ({STOP_TAIL} samples): "
                               "schedule it later")


def ground_truth(plan: SimPlan) -> list[dict[str, Any]]:
    """One row per injected anomaly: device, kind, channels, sample span and timestamps (end exclusive)."""
    rows = []
    for d in plan.devices:
        for a in d.anomalies:
            rows.append(
                {
                    "device": d.name,
                    "kind": a.kind,
                    "class": KIND_CLASS[a.kind],
                    "channels": [plan.channels[c] for c in a.channels],
                    "start_index": a.start,
                    "end_index": a.end,
                    "start_ts": round(float(plan.ts(a.start)), 6),
                    "end_ts": round(float(plan.ts(a.end)), 6),
                }
            )
    return rows


def write_ground_truth(path: Path, plan: SimPlan) -> None:
    """Write :func:`ground_truth` as JSON (``.json``: with the plan's header) or CSV (any other suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = ground_truth(plan)
    if path.suffix.lower() == ".json":
        doc = {
            "rate_hz": plan.rate,
            "t0": plan.t0,
            "n_steps": plan.n_steps,
            "channels": list(plan.channels),
            "devices": [d.name for d in plan.devices],
            "anomalies": rows,
        }
        path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        return
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["device", "kind", "channels", "start_index", "end_index", "start_ts", "end_ts", "class"])
        for r in rows:
            w.writerow([r["device"], r["kind"], ";".join(r["channels"]), r["start_index"],
                        r["end_index"], f"{r['start_ts']:.6f}", f"{r['end_ts']:.6f}", r["class"]])


def read_ground_truth(path: Path) -> list[dict[str, Any]]:
    """Read back the rows written by :func:`write_ground_truth` (JSON or CSV)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return list(json.loads(path.read_text(encoding="utf-8"))["anomalies"])
    with path.open(newline="", encoding="utf-8") as fh:
        return [
            {
                "device": r["device"],
                "kind": r["kind"],
                "class": r.get("class") or KIND_CLASS.get(r["kind"], "process"),
                "channels": [c for c in r["channels"].split(";") if c],
                "start_index": int(r["start_index"]),
                "end_index": int(r["end_index"]),
                "start_ts": float(r["start_ts"]),
                "end_ts": float(r["end_ts"]),
            }
            for r in csv.DictReader(fh)
        ]


class StreamSource:
    """Samples of one device: ``chunk(start, n)`` -> values (n, C) float32, anomalies applied (NaN: a dropout);
    ``alive(start, n)`` -> (n,) bool, False while the device is ``dead`` (it sends nothing).

    Consecutive chunks join exactly: normal data is a pure function of absolute time and each
    anomaly's values are computed once, on a fixed context of normal data around it. A stop also
    changes the :data:`~edge_runtime.tools.synthetic.STOP_TAIL` samples after it (the run-up).
    """

    def __init__(self, device: SimDevice, n_channels: int, channels: Sequence[str] | None = None) -> None:
        self.device = device
        self.n_channels = n_channels
        self.channels = list(channels) if channels else channel_names(n_channels)
        self._segments: dict[int, np.ndarray] = {}
        # each anomaly's random draws (direction, size) are seeded by its place among the anomalies of its own
        # class (sensor faults apart from the rest): adding sensor faults to a plan leaves its process faults and
        # stops exactly as they were, so a run with and without them compares the same process
        self._seeds: list[int] = []
        counts = [0, 0]
        for a in device.anomalies:
            sensor = int(a.kind in SENSOR_FAULTS)  # not `stuck`: a process-style kind of the default random mix
            self._seeds.append(device.seed + sensor * SENSOR_SEED_OFFSET + counts[sensor])
            counts[sensor] += 1

    @staticmethod
    def _shift(a: Anomaly, lo: int, hi: int) -> Anomaly:
        """``a`` in the indices of a context ``[lo, hi)`` (cut to it)."""
        return Anomaly(a.kind, max(0, a.start - lo), min(hi - lo, a.end - lo), a.channels)

    def _span(self, a: Anomaly) -> tuple[int, int]:
        """Samples ``[start, end)`` the anomaly changes."""
        return a.start, a.end + (STOP_TAIL if a.kind == "stop" else 0)

    def _segment(self, k: int) -> np.ndarray:
        """Values (span, C) of anomaly ``k`` with the anomaly applied."""
        if k not in self._segments:
            a = self.device.anomalies[k]
            s0, s1 = self._span(a)
            lo = max(0, a.start - _CONTEXT // 2)
            hi = s1 + _CONTEXT // 2
            ctx = normal_series(hi - lo, self.n_channels, self.device.seed, self.device.offset + lo)
            for j, b in enumerate(self.device.anomalies[:k]):  # an earlier one it overlaps: applied first
                if b.start < s1 and self._span(b)[1] > s0:  # only what overlaps it (magnitudes: of normal data)
                    ctx = apply(ctx, self._shift(b, lo, hi), self.channels, seed=self._seeds[j])
            shifted = self._shift(a, lo, hi)
            self._segments[k] = apply(ctx, shifted, self.channels, seed=self._seeds[k])[s0 - lo : s1 - lo]
        return self._segments[k]

    def chunk(self, start: int, n: int) -> np.ndarray:
        x = normal_series(n, self.n_channels, self.device.seed, self.device.offset + start)
        stop = start + n
        for k, a in enumerate(self.device.anomalies):
            s0, s1 = self._span(a)
            lo, hi = max(start, s0), min(stop, s1)
            if lo < hi:
                x[lo - start : hi - start] = self._segment(k)[lo - s0 : hi - s0]
        return x

    def alive(self, start: int, n: int) -> np.ndarray:
        out = np.ones(n, dtype=bool)
        for a in self.device.anomalies:
            if a.kind == "dead":
                out[max(0, a.start - start) : max(0, min(n, a.end - start))] = False
        return out


def _num(v: float) -> float | None:
    """A value as published: 7 significant digits; NaN (a dropout) as null."""
    return None if v != v else float(f"{v:.7g}")


def encode_payload(fmt: str, ts: np.ndarray, values: np.ndarray, channels: Sequence[str]) -> list[bytes]:
    """Payloads for samples ``ts`` (n,) epoch s, ``values`` (n, C).

    ``single``/``keyed``: one message per sample; ``batch``: one JSON batch; ``csv``: one message of
    ``ts,v1,...`` lines.
    """
    rows = [[_num(v) for v in row] for row in np.asarray(values, dtype=np.float64).tolist()]
    stamps = [round(float(t), 6) for t in ts]
    if fmt == "single":
        return [json.dumps({"ts": t, "values": r}, separators=(",", ":")).encode() for t, r in zip(stamps, rows, strict=True)]
    if fmt == "keyed":  # a missing value (dropout): the channel is left out of the message
        return [
            json.dumps({"ts": t, **{c: v for c, v in zip(channels, r, strict=True) if v is not None}},
                       separators=(",", ":")).encode()
            for t, r in zip(stamps, rows, strict=True)
        ]
    if fmt == "batch":
        return [json.dumps({"ts": stamps, "values": rows}, separators=(",", ":")).encode()]
    if fmt == "csv":
        lines = [",".join([f"{t:.6f}", *("" if v is None else repr(v) for v in r)])
                 for t, r in zip(stamps, rows, strict=True)]
        return ["\n".join(lines).encode()]
    raise SimError(f"unknown payload format {fmt!r}; use {', '.join(FORMATS)}")


# ----------------------------------------------------------------------------------------------
# Publishing (I/O)


def broker_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--broker``, ``--username``, ``--password-file``, ``--ca-file`` (simulate, replay)."""
    fn = click.option("--ca-file", type=click.Path(dir_okay=False), default="",
                      help="CA certificate (PEM) to verify an mqtts:// broker (default: the system CAs).")(fn)
    fn = click.option("--password-file", type=click.Path(dir_okay=False), default="",
                      help=f"File whose first line is the MQTT password (else ${PASSWORD_ENV}).")(fn)
    fn = click.option("--username", default="", help="MQTT username (credentials never go in the URL).")(fn)
    return click.option("--broker", default="mqtt://127.0.0.1:1883", show_default=True,
                        help="MQTT broker URL: mqtt://host[:1883] or mqtts://host[:8883].")(fn)


def broker_address(url: str) -> BrokerAddress:
    """:func:`parse_broker_url`, refusing with :class:`SimError` (checked before any work starts)."""
    try:
        return parse_broker_url(url)
    except ConfigError as exc:
        raise SimError(str(exc), code_of(exc)) from None


def topic_prefix_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--topic-prefix`` (simulate, replay): the daemon's ``topics.prefix``, with the same meaning."""
    return click.option(
        "--topic-prefix", default="", metavar="PREFIX",
        help="The daemon's topics.prefix (`edgewatch run --topic-prefix`): prepended with a '/' to the topic "
        "published to, as the daemon prepends it to the topics it reads: site-1 sends to "
        "site-1/sensors/{device}/data.  [default: none]")(fn)


def check_publish_options(broker: str, topic_template: str, speed: float, prefix: str = "") -> str:
    """The options simulate and replay share, checked before any work starts (:class:`SimError`); the topic
    template to publish to: ``topic_template`` under ``prefix`` (``--topic-prefix``) as the daemon puts it."""
    broker_address(broker)
    if "{device}" not in topic_template:
        raise SimError("--topic must contain {device}")
    if not speed > 0:
        raise SimError("--speed must be > 0")
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.params.get("fast") and ctx.get_parameter_source("speed") not in (
            None, click.core.ParameterSource.DEFAULT):
        raise SimError("give --fast or --speed N, not both (--fast publishes as fast as it can, --speed N paces)")
    try:
        clean = topic_prefix(prefix, "--topic-prefix")
    except ConfigError as exc:
        raise SimError(str(exc)) from None
    if clean and topic_template.startswith(clean + "/"):  # the prefix given twice: say where it publishes
        click.echo(f"warning: --topic {topic_template!r} already starts with --topic-prefix {clean!r}: publishing to "
                   f"{prefixed(clean, topic_template)!r}", err=True)
    return prefixed(clean, topic_template)


def check_device_id(option: str, device: str) -> None:
    """A device id the daemon reads back from its topic level (:class:`SimError` otherwise)."""
    problem = device_level_problem(device)
    if problem:
        raise SimError(f"{option} {device!r}: {problem}")


def connect_publisher(broker_url: str, client_id: str, username: str = "", password_file: str = "",
                      ca_file: str = "", timeout: float = 10.0) -> Any:
    """A connected paho client (the shared factory, :mod:`edge_runtime.service.mqtt`) with its network loop
    running, for publishing; raises :class:`SimError` with one line on any failure."""
    try:
        password = None
        if username:
            password = (Path(password_file).read_text().splitlines() or [""])[0] if password_file \
                else os.environ.get(PASSWORD_ENV)
        opts = ClientOptions(client_id=client_id, username=username, password=password, ca_file=ca_file,
                             buffered=False)
        return connect(broker_address(broker_url), opts, keepalive=30, timeout=timeout)
    except OSError as exc:
        raise SimError(f"--password-file: cannot read {password_file}: {exc.strerror or exc}", EXIT_NOINPUT) from None
    except (ConfigError, MqttConnectError) as exc:
        raise SimError(str(exc), code_of(exc)) from None


def stream_start(now: float, duration_s: float, speed: float) -> float:
    """Epoch of a stream's first sample so that, published at ``speed`` x real time (0: as fast as possible),
    its samples are never stamped ahead of the wall clock (the daemon refuses timestamps more than
    ``input.max_future_s`` after arrival): ``now`` at real time, earlier the faster it goes."""
    ahead = duration_s if speed <= 0 else max(0.0, duration_s - duration_s / speed)
    return round(now - ahead, 3)


MAX_INFLIGHT = 100  # QoS 1 messages a simulator or replay keeps unacknowledged at most
ACK_TIMEOUT_S = 10.0  # how long one message waits for its acknowledgement while the connection is up
MAX_OUTAGE_S = 300.0  # how long a publisher waits for a lost broker connection to come back


@dataclass
class SimResult:
    """What was published (by the simulator or a replay); ``acknowledged``: QoS 1/2 messages the broker
    acknowledged (0 at QoS 0); ``max_unacknowledged``: the most that were outstanding at once."""

    messages: int = 0
    samples: int = 0
    elapsed_s: float = 0.0
    qos: int = 1
    acknowledged: int = 0
    max_unacknowledged: int = 0
    paced: bool = True  # False: published as fast as possible (--fast)
    outages: int = 0  # broker connections lost while publishing (waited for, the messages held by the client)
    outage_s: float = 0.0  # how long the publisher waited for the broker in all
    reconnects: int = 0  # outages that ended with the connection back
    not_sent: int = 0  # QoS 0 messages published while disconnected: the client drops them

    @property
    def missing(self) -> int:
        """QoS 1/2 messages published that the broker never acknowledged; at QoS 0 those the client could not send
        (disconnected: nothing else is known at QoS 0)."""
        return max(0, self.messages - self.acknowledged) if self.qos else self.not_sent

    def unacknowledged(self) -> str | None:
        """The error when :attr:`missing` is not 0 (those messages may be lost), else None."""
        missing = self.missing
        if not missing:
            return None
        if not self.qos:
            return (f"{missing:,} of {self.messages:,} messages were published while the broker connection was "
                    "down and dropped by the client (QoS 0 holds nothing for a reconnect: --qos 1 does)")
        return (f"{missing:,} of {self.messages:,} messages were not acknowledged by the broker: they may be lost "
                "(the connection dropped, or the broker refused them: check its log and this client's permissions)")

    def summary(self) -> str:
        """The final line: what was published and what the broker acknowledged."""
        line = f"published {self.messages:,} messages ({self.samples:,} samples) in {self.elapsed_s:.1f} s"
        if not self.qos:
            line += "; QoS 0: the broker acknowledges nothing, losses are not known here" + (
                f" ({self.not_sent:,} dropped by the client while disconnected)" if self.not_sent else "")
        else:
            line += f"; {self.acknowledged:,} acknowledged by the broker" + (
                f", {self.missing:,} NOT acknowledged" if self.missing else "")
        if self.outages:
            line += (f"; waited {self.outage_s:.0f} s for the broker over {self.outages} lost connection(s)"
                     + (" (the messages meanwhile held and sent after the reconnect)" if self.reconnects else ""))
        if not self.paced:
            line += ("; as fast as possible: the broker drops what a subscriber that falls behind cannot take (its "
                     "queue limit), so compare with the daemon's messages count (a gap it logs may be such a loss)")
        return line


class InFlight:
    """QoS 1/2 publishes not acknowledged yet, at most ``limit``: a publisher waits for the broker instead of
    outrunning it, and counts what it acknowledged into ``result``. With ``connected`` (the client's
    ``is_connected``) it also waits out a lost connection, up to ``max_outage_s``: paho holds a QoS 1/2 message
    published while disconnected and sends it after its reconnect, so nothing is skipped meanwhile; ``notify``
    is told once per outage."""

    def __init__(self, result: SimResult, limit: int = MAX_INFLIGHT, stop: threading.Event | None = None,
                 connected: Callable[[], bool] | None = None, max_outage_s: float = MAX_OUTAGE_S,
                 notify: Callable[[str], None] | None = None) -> None:
        self.result, self.limit, self.stop = result, max(1, limit), stop
        self.connected, self.max_outage_s, self.notify = connected, max_outage_s, notify
        self.pending: deque[Any] = deque()
        self._down_since: float | None = None  # monotonic time the current outage was first seen

    def add(self, info: Any) -> None:
        if not self.result.qos:  # nothing to wait for; a message published while disconnected is dropped by paho
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self.result.not_sent += 1
            return
        self.pending.append(info)
        if len(self.pending) > self.result.max_unacknowledged:
            self.result.max_unacknowledged = len(self.pending)
        while len(self.pending) >= self.limit and not (self.stop is not None and self.stop.is_set()):
            self._wait_oldest()

    def finish(self) -> None:
        """Wait for every outstanding acknowledgement (10 s each at most; not after ``stop``)."""
        while self.pending and not (self.stop is not None and self.stop.is_set()):
            self._wait_oldest()

    def _wait_oldest(self) -> None:
        info = self.pending.popleft()
        if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN and self.connected is not None:
            # published while disconnected: paho keeps it and sends it after the reconnect (this rc would make
            # wait_for_publish raise at once, and the message be counted lost although it is on its way)
            info.rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        waited = 0.0
        while True:
            try:
                info.wait_for_publish(timeout=0.5)
            except (RuntimeError, ValueError):  # refused by the client (queue full, not connected)
                return
            if info.is_published():
                self.result.acknowledged += 1
                self._back()
                return
            if self.stop is not None and self.stop.is_set():
                return
            if self.connected is None or self.connected():
                self._back()
                waited += 0.5
                if waited >= ACK_TIMEOUT_S:
                    return
                continue
            now = time.monotonic()
            if self._down_since is None:
                self._down_since = now
                self.result.outages += 1
                if self.notify is not None:
                    self.notify(f"the broker connection is lost: waiting for it (up to {self.max_outage_s:g} s); "
                                f"{len(self.pending) + 1} messages held, sent after the reconnect")
            if now - self._down_since >= self.max_outage_s:
                self.result.outage_s += now - self._down_since
                raise SimError(
                    f"the broker connection did not come back within {self.max_outage_s:g} s: "
                    f"{self.result.acknowledged:,} of {self.result.messages:,} messages acknowledged before, the rest "
                    "not sent", EXIT_UNAVAILABLE)

    def _back(self) -> None:
        """The connection is up (again): an outage seen is over."""
        if self._down_since is not None:
            self.result.outage_s += time.monotonic() - self._down_since
            self.result.reconnects += 1
            self._down_since = None
            if self.notify is not None:
                self.notify("the broker connection is back: publishing again")


def publish_plan(
    client: Any,
    plan: SimPlan,
    *,
    fmt: str = "single",
    batch: int = 1,
    qos: int = 1,
    topic_template: str = "sensors/{device}/data",
    realtime: bool = True,
    speed: float = 1.0,
    stop: threading.Event | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    max_inflight: int = MAX_INFLIGHT,
    notify: Callable[[str], None] | None = None,
) -> SimResult:
    """Publish every device's stream through ``client`` (connected paho client); at most ``max_inflight``
    QoS 1 messages unacknowledged (the result counts the acknowledged ones); a lost connection is waited for
    (:class:`InFlight`; ``notify`` told of it).

    Each tick sends ``batch`` samples per device (one message for ``batch``/``csv``, one per sample
    otherwise); ticks are paced at ``batch / (rate * speed)`` s unless ``realtime`` is False.
    Returns after every QoS 1 message is acknowledged (or ``stop`` is set).
    """
    if fmt not in FORMATS:
        raise SimError(f"unknown payload format {fmt!r}; use {', '.join(FORMATS)}")
    if batch < 1:
        raise SimError("--batch must be >= 1")
    if qos not in (0, 1, 2):
        raise SimError("--qos must be 0, 1 or 2")
    sources = [StreamSource(d, plan.n_channels, plan.channels) for d in plan.devices]
    topics = [topic_template.replace("{device}", d.name) for d in plan.devices]
    tick = batch / (plan.rate * speed)
    result = SimResult(qos=qos, paced=realtime)
    inflight = InFlight(result, max_inflight, stop, connected=client.is_connected, notify=notify)
    began = time.monotonic()
    chunk = max(batch, 1024 // batch * batch)  # generate in chunks, publish in ticks
    cache: list[tuple[int, np.ndarray]] = [(-1, np.zeros((0, plan.n_channels)))] * len(sources)
    k = 0
    n_ticks = 0
    while k < plan.n_steps:
        if stop is not None and stop.is_set():
            break
        n = min(batch, plan.n_steps - k)
        ts = np.asarray(plan.ts(np.arange(k, k + n)))
        for i, src in enumerate(sources):
            base, data = cache[i]
            if base < 0 or k + n > base + data.shape[0] or k < base:
                base, data = k, src.chunk(k, min(chunk, plan.n_steps - k))
                cache[i] = (base, data)
            vals = data[k - base : k - base + n]
            alive = src.alive(k, n)
            sent_ts = ts
            if not alive.all():  # a dead device sends nothing
                sent_ts, vals = ts[alive], vals[alive]
                if not len(sent_ts):
                    continue
            for payload in encode_payload(fmt, sent_ts, vals, plan.channels):
                info = client.publish(topics[i], payload, qos=qos)
                result.messages += 1
                inflight.add(info)  # waits while max_inflight are unacknowledged (QoS 0: counts what paho dropped)
            result.samples += len(sent_ts)
        k += n
        n_ticks += 1
        if on_progress is not None:
            on_progress(k, plan.n_steps)
        if realtime:
            delay = began + n_ticks * tick - time.monotonic()
            if delay > 0:
                if stop is not None:
                    stop.wait(delay)
                else:
                    time.sleep(delay)
    inflight.finish()
    result.elapsed_s = time.monotonic() - began
    return result


def simulate(
    plan: SimPlan,
    broker_url: str,
    *,
    ground_truth_path: Path | None = None,
    client_id: str | None = None,
    login: dict[str, str] | None = None,
    on_connected: Callable[[], None] | None = None,
    **publish_opts: Any,
) -> SimResult:
    """Write the ground truth (if asked), connect (``login``: username / password_file / ca_file), call
    ``on_connected``, publish the plan, disconnect."""
    if ground_truth_path is not None:
        write_ground_truth(ground_truth_path, plan)
    login = login or {}
    client = connect_publisher(broker_url, client_id or f"edgewatch-sim-{id(plan) & 0xFFFFFF:x}",
                               login.get("username", ""), login.get("password_file", ""), login.get("ca_file", ""))
    try:
        if on_connected is not None:
            on_connected()
        return publish_plan(client, plan, **publish_opts)
    finally:
        client.disconnect()
        client.loop_stop()


# ----------------------------------------------------------------------------------------------
# CLI


def model_channels(model: Path) -> list[str]:
    """Channel names from an edgewatch model's metadata (onnxruntime, imported lazily)."""
    return model_metadata(model).channels


def model_metadata(model: Path) -> ModelMetadata:
    """An edgewatch model's metadata (onnxruntime, imported lazily); SimError for an unusable file."""
    import onnxruntime as ort

    from edge_runtime.contract import ContractError, metadata_from_props

    try:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        return metadata_from_props(sess.get_modelmeta().custom_metadata_map)
    except ContractError as exc:
        raise SimError(f"{model}: {exc}", EXIT_DATAERR) from None
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable files
        from edge_runtime.service.ort_errors import ort_reason

        raise SimError(f"{model}: not a loadable ONNX model: {ort_reason(exc)}", EXIT_DATAERR) from None


@click.command("simulate")
@broker_options
@click.option("--devices", "n_devices", type=int, default=3, show_default=True, help="Number of devices.")
@click.option("--rate", type=float, default=10.0, show_default=True, help="Samples per second per device.")
@click.option("--duration", type=float, default=60.0, show_default=True, help="Seconds of data per device.")
@click.option("--channels", "n_channels", type=int, default=4, show_default=True,
              help="Number of channels (ignored with --model).")
@click.option("--model", type=InputPath(dir_okay=False, path_type=Path),
              help="Take the channel names from this edgewatch model.")
@click.option("--anomaly", "anomalies", multiple=True, metavar="DEV:KIND:START_S:DUR_S[:CH,..]",
              help="Schedule an anomaly (DEV may be '*' for every device). KIND: a process anomaly "
              f"({', '.join(ANOMALY_KINDS)}), a sensor fault (freeze, dropout: no value, out_of_range, dead: the "
              "device sends nothing) or stop (the machine stops, then runs up again). Repeatable.")
@click.option("--stop-cycle", metavar="RUN_S:STOP_S",
              help="Every device stops for STOP_S after each RUN_S of running (after --warmup), then runs up again.")
@click.option("--random", "random_count", type=int, default=0, show_default=True,
              help="Random anomalies per device (kinds from --kinds, after --warmup).")
@click.option("--kinds", default=",".join(ANOMALY_KINDS), show_default=True, help="Kinds for --random.")
@click.option("--min-len", type=float, default=2.0, show_default=True, help="Shortest random anomaly, s.")
@click.option("--max-len", type=float, default=6.0, show_default=True, help="Longest random anomaly, s.")
@click.option("--warmup", type=float, default=10.0, show_default=True,
              help="Seconds at the start without random anomalies.")
@click.option("--gap", type=float, help="Seconds of normal data after each random anomaly.  [default: --max-len]")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="single", show_default=True,
              help="Payload format.")
@click.option("--batch", type=int, default=1, show_default=True,
              help="Samples per tick (one message per tick for batch/csv).")
@click.option("--qos", type=click.IntRange(0, 2), default=1, show_default=True, help="MQTT QoS.")
@click.option("--topic", "topic_template", default="sensors/{device}/data", show_default=True,
              help="Topic template.")
@topic_prefix_option
@click.option("--prefix", default="sim", show_default=True, help="Device name prefix (sim: sim-0, sim-1, ...).")
@click.option("--seed", type=int, default=0, show_default=True, help="Profile seed.")
@click.option("--distinct", is_flag=True, help="Give each device its own machine profile (seed + i).")
@click.option("--fast", is_flag=True, help="Publish as fast as possible (the stream then ends about now: its "
              "timestamps are never ahead of the clock).")
@click.option("--speed", type=float, default=1.0, show_default=True,
              help="Time scale for pacing (2 = twice real time; the stream starts early enough not to run ahead "
              "of the clock).")
@click.option("--ground-truth", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the injected anomalies here (.json or .csv).")
def simulate_command(
    broker: str, n_devices: int, rate: float, duration: float, n_channels: int, model: Path | None,
    anomalies: tuple[str, ...], stop_cycle: str | None, random_count: int, kinds: str, min_len: float, max_len: float,
    warmup: float, gap: float | None, fmt: str, batch: int, qos: int, topic_template: str, topic_prefix: str,
    prefix: str, seed: int, distinct: bool, fast: bool, speed: float, ground_truth: Path | None, username: str,
    password_file: str, ca_file: str,
) -> None:
    """Publish synthetic sensor streams for N devices, with anomalies, and write the ground truth."""
    try:
        topic_template = check_publish_options(broker, topic_template, speed, topic_prefix)
        check_device_id("--prefix", prefix)
        names = model_channels(model) if model else None
        plan = make_plan(
            n_devices, rate, duration, n_channels=n_channels, channels=names, seed=seed,
            distinct=distinct, prefix=prefix,
            scheduled=[*map(parse_anomaly_spec, anomalies), *stop_cycle_specs(stop_cycle, duration, warmup)],
            random_count=random_count, kinds=[k.strip() for k in kinds.split(",") if k.strip()],
            min_len_s=min_len, max_len_s=max_len, warmup_s=warmup, gap_s=gap,
            t0=stream_start(time.time(), duration, 0.0 if fast else speed),
        )
        n_anom = sum(len(d.anomalies) for d in plan.devices)
        res = simulate(
            plan, broker, ground_truth_path=ground_truth, fmt=fmt, batch=batch, qos=qos,
            topic_template=topic_template, realtime=not fast, speed=speed,
            notify=lambda m: click.echo(f"edgewatch simulate: {m}", err=True),
            login={"username": username, "password_file": password_file, "ca_file": ca_file},
            on_connected=lambda: click.echo(  # once connected: a failure is then its one line alone
                f"simulating {len(plan.devices)} devices x {plan.n_steps} samples at {rate:g} Hz "
                f"({plan.n_channels} channels, {n_anom} anomalies, format {fmt}, QoS {qos}) -> {broker}",
                err=True,
            ),
        )
    except SimError as exc:
        fail("simulate", str(exc), exc.exit_code)
        return
    click.echo(
        res.summary() + (f"; ground truth in {ground_truth}" if ground_truth else ""),
        err=True,
    )
    lost = res.unacknowledged()
    if lost:
        fail("simulate", lost, EXIT_UNAVAILABLE)
