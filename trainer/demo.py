"""``edgewatch-train demo``: the whole job end to end on this machine, in about a minute.

Steps (each prints a line; a failure names its step and exits non-zero):

1. generate normal synthetic training data (``train.csv``)
2. train and export a model (``model.onnx``, progress visible)
3. evaluate it with ``edgewatch-train evaluate`` on labelled synthetic data (``evaluation.json/.png``)
4. start a private MQTT broker on a free port (``mosquitto`` where installed, else an embedded amqtt)
5. start the daemon (``edgewatch run``) as a subprocess (``daemon.log``)
6. stream synthetic data with injected anomalies from several devices (``ground_truth.json``),
   showing alerts as they arrive (``alerts.jsonl``)
7. stop the daemon and broker (unless ``keep_running``), then print and save the summary
   (``summary.json``, ``summary.txt``): per anomaly detected or not and the delay; false alarms;
   what the daemon processed (its final stats).

Lives in the trainer package (it trains) and runs as ``edgewatch-train demo``: the edge runtime
never imports trainer.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.tools.localbroker import (
    BrokerError,
    MosquittoBroker,
    free_port,
    mosquitto_binary,
    terminate,
    wait_port,
)
from edge_runtime.tools.simulate import (
    connect_publisher,
    ground_truth,
    make_plan,
    publish_plan,
    write_ground_truth,
)
from edge_runtime.tools.synthetic import (
    ANOMALY_KINDS,
    KIND_CLASS,
    apply_stops,
    channel_names,
    labelled_series,
    normal_series,
    random_anomalies,
    write_csv,
)

INSTANCE = "demo"
N_STEPS = 7


FAULT_S = 24.0  # seconds appended to the stream for the stop and the sensor faults
# (kind, duration s, channel index or None): one of each, devices round-robin, one after another per device
# (the stop last on its device: sensor health checks running samples only, so nothing follows it in its settling)
FAULTS = [("freeze", 8.0, 0), ("dropout", 4.0, 3), ("out_of_range", 3.0, 2), ("dead", 5.0, None), ("stop", 6.0, None)]
PROCESS_KINDS = tuple(k for k in ANOMALY_KINDS if KIND_CLASS[k] == "process")  # "stuck" is a sensor fault
# The demo's threshold margin: fit's margin before model format 4. fit's default is now 3.75 (chosen on SKAB with
# the power-mean score); the demo's short spike is borderline under either (1.09 x format 3's threshold, about
# 0.95 x format 4's at 3.75) and is missed at 3.75 (docs/EVALUATION.md, third pass).
DEMO_MARGIN = 3.0
TRAIN_STOPS = 3  # stops in the training data (each a tenth of it), so the model learns the stopped state
SENSOR_KIND = {"freeze": "stuck", "dropout": "missing", "out_of_range": "out_of_range", "dead": "stale"}


def fault_specs(devices: list[str], channels: list[str], start_s: float) -> list[str]:
    """``--anomaly`` specs of :data:`FAULTS` from ``start_s`` on: devices round-robin, 2 s apart on each."""
    at = dict.fromkeys(devices, start_s + 2.0)
    out = []
    for i, (kind, dur, ch) in enumerate(FAULTS):
        dev = devices[i % len(devices)]
        out.append(f"{dev}:{kind}:{at[dev]:g}:{dur:g}" + ("" if ch is None else f":{channels[ch % len(channels)]}"))
        at[dev] += dur + 2.0
    return out


class DemoError(RuntimeError):
    """A demo step failed: ``step`` names it, the message says why."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"step '{step}' failed: {reason}")
        self.step = step
        self.reason = reason


@dataclass
class DemoOptions:
    """Demo knobs; the defaults run in about a minute on two cores."""

    devices: int = 4
    rate: float = 20.0  # samples/s per device
    duration: float = 60.0  # seconds of data per device
    speed: float = 2.0  # stream this many times faster than real time
    anomalies: int = 2  # per device
    train_steps: int = 8000
    epochs: int = 15
    window: int = 64
    hop: int = 4  # the edge scores a window every hop samples (and training cuts windows this far apart)
    channels: int = 4
    seed: int = 0
    out_dir: Path = Path("runs")
    keep_running: bool = False
    batch: int = 1  # samples per message (1: single-sample JSON; >1: JSON batches)
    broker_kind: str = "auto"  # auto (mosquitto if installed, else amqtt), mosquitto or amqtt
    faults: bool = True  # after the anomalies: one stop and one of each sensor fault (FAULT_S more seconds)


@dataclass
class Outcome:
    """One injected anomaly and what the daemon made of it."""

    device: str
    kind: str
    start_ts: float
    end_ts: float
    detected: bool = False
    delay_s: float | None = None
    alert_id: str | None = None


@dataclass
class DemoResult:
    run_dir: Path
    outcomes: list[Outcome] = field(default_factory=list)  # process anomalies
    false_alarms: list[dict[str, Any]] = field(default_factory=list)
    reading_alerts: list[dict[str, Any]] = field(default_factory=list)  # process alerts on an out-of-range reading
    stats: dict[str, Any] = field(default_factory=dict)
    broker: str = ""
    sensor: list[Outcome] = field(default_factory=list)  # sensor faults: alerted as sensor faults or not
    states: list[Outcome] = field(default_factory=list)  # stops: recognised (operating state stopped) or not


def run_amqtt(port: int) -> None:
    """Run an embedded amqtt broker on 127.0.0.1:``port`` until terminated (the demo's fallback)."""
    import asyncio

    from amqtt.broker import Broker

    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "sys_interval": 0,
        "auth": {"allow-anonymous": True, "plugins": ["auth_anonymous"]},
        "topic-check": {"enabled": False},
    }

    async def main() -> None:
        broker = Broker(config)
        await broker.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await broker.shutdown()

    asyncio.run(main())


class BrokerProcess:
    """A private broker subprocess on a free loopback port."""

    def __init__(self, run_dir: Path, kind: str = "auto") -> None:
        self.want = kind
        self.port = free_port()
        self.run_dir = run_dir
        self.proc: subprocess.Popen | None = None  # the embedded amqtt broker
        self.mosquitto: MosquittoBroker | None = None
        self.kind = ""
        self.log_path = run_dir / "broker.log"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, detach: bool) -> None:
        binary = mosquitto_binary() if self.want != "amqtt" else None
        if self.want == "mosquitto" and not binary:
            raise RuntimeError("the mosquitto binary is not installed (apt-get install mosquitto)")
        if binary:
            self.kind = f"mosquitto ({binary})"
            self.mosquitto = MosquittoBroker(self.port, workdir=self.run_dir, log_path=self.log_path,
                                             log_types=("error", "warning", "notice"), connection_messages=False)
            try:
                self.mosquitto.start(timeout=15.0, detach=detach)
            except BrokerError as exc:
                raise RuntimeError(str(exc)) from None
            return
        try:
            import amqtt  # noqa: F401
        except ImportError:
            raise RuntimeError(
                "no MQTT broker available: install Mosquitto (apt-get install mosquitto) "
                "or the embedded fallback (pip install amqtt)"
            ) from None
        cmd = [sys.executable, "-c", f"from trainer.demo import run_amqtt; run_amqtt({self.port})"]
        self.kind = "embedded amqtt broker (Python)" + (" - mosquitto not found" if self.want == "auto" else "")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=detach)
        if not wait_port("127.0.0.1", self.port, 15.0, self.proc):
            tail = self.log_path.read_text(errors="replace")[-500:] if self.log_path.exists() else ""
            self.stop()
            raise RuntimeError(f"{self.kind} did not start listening on port {self.port}: {tail.strip()}")

    @property
    def pid(self) -> int | None:
        proc = self.mosquitto.proc if self.mosquitto is not None else self.proc
        return proc.pid if proc is not None else None

    def stop(self) -> None:
        if self.mosquitto is not None:
            self.mosquitto.stop()
        terminate(self.proc)


class Watcher:
    """Subscribes to alerts, status and stats; prints alerts live and appends them to ``alerts.jsonl``."""

    def __init__(self, broker_url: str, run_dir: Path, t0: float, echo: Any) -> None:
        self.alerts: list[dict[str, Any]] = []  # process alerts (alerts/{device})
        self.sensor: list[dict[str, Any]] = []  # sensor-fault alerts
        self.operating: list[dict[str, Any]] = []  # operating state documents
        self.stats: dict[str, Any] = {}
        self.status: dict[str, Any] = {}
        self.online = threading.Event()
        self.t0 = t0
        self.end_s = float("inf")  # stream seconds: a device stale from then on has just stopped sending
        self.echo = echo
        self._file = open(run_dir / "alerts.jsonl", "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self._lock = threading.Lock()
        self.client = connect_publisher(broker_url, "edgewatch-demo-watch")
        self.client.on_message = self._on_message
        self.client.subscribe([("alerts/#", 1), ("health/#", 1), (f"edgewatch/{INSTANCE}/status", 1),
                               (f"edgewatch/{INSTANCE}/stats", 0)])

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        try:
            doc = json.loads(msg.payload)
        except (ValueError, UnicodeDecodeError):
            return
        if not isinstance(doc, dict):
            return
        if msg.topic.endswith("/status"):
            self.status = doc
            if doc.get("state") == "online":
                self.online.set()
        elif msg.topic.endswith("/stats"):
            self.stats = doc
        elif msg.topic == f"alerts/{doc.get('device')}/operating":
            self.operating.append(doc)
            if doc.get("state") != "running":
                self.echo(f"  t={float(doc.get('since', self.t0)) - self.t0:6.1f}s  {str(doc.get('state')).upper():7s} "
                          f"{doc.get('device', '?'):8s} (operating state: {doc.get('reason', '')})")
        elif doc.get("kind") in SENSOR_KIND.values() and "channel" in doc:
            self.sensor.append(doc)
            if doc.get("state") == "raised":
                when = doc.get("at") or doc.get("since") or self.t0  # a stale device has no sample 'at': its last one
                t = float(when) - self.t0
                ended = " (the stream ended)" if doc.get("kind") == "stale" and t >= self.end_s else ""
                self.echo(f"  t={t:6.1f}s  SENSOR  {doc.get('device', '?'):8s} "
                          f"{doc.get('kind')} {doc.get('channel') or '(device)'}{ended}")
        elif msg.topic == f"alerts/{doc.get('device')}":
            with self._lock:
                self.alerts.append(doc)
                self._file.write(json.dumps(doc) + "\n")
                self._file.flush()
            self.echo(format_alert(doc, self.t0))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self._file.close()


def format_alert(a: dict[str, Any], t0: float) -> str:
    """One live line for an alert payload."""
    top = ", ".join(f"{c['name']} {c['share']:.0%}" for c in a.get("top_channels", [])[:3])
    when = float(a.get("window_end", t0)) - t0
    state = str(a.get("state", "?")).upper()
    return (f"  t={when:6.1f}s  {state:7s} {a.get('device', '?'):8s} score {float(a.get('score', 0)):.4g} "
            f"(threshold {float(a.get('threshold', 0)):.4g})" + (f"  top: {top}" if top else ""))


def match_alerts(
    truth: list[dict[str, Any]], alerts: list[dict[str, Any]], window_s: float, slack_s: float
) -> tuple[list[Outcome], list[dict[str, Any]]]:
    """Match raised alerts to injected anomalies. Pure.

    A raise on the same device whose window end lies in ``[start_ts, end_ts + window_s + slack_s]``
    detects the anomaly (the earliest such raise gives the delay: window end - anomaly start, in
    stream time). A raise that detects nothing is a false alarm.
    """
    raised = sorted((a for a in alerts if a.get("state") == "raised"), key=lambda a: float(a["window_end"]))
    used: set[int] = set()
    outcomes = []
    for g in sorted(truth, key=lambda g: (g["device"], g["start_ts"])):
        o = Outcome(g["device"], g["kind"], float(g["start_ts"]), float(g["end_ts"]))
        hi = o.end_ts + window_s + slack_s
        for i, a in enumerate(raised):
            if a["device"] == o.device and o.start_ts <= float(a["window_end"]) <= hi:
                o.detected, o.delay_s, o.alert_id = True, float(a["window_end"]) - o.start_ts, a.get("alert_id")
                used.add(i)
                break
        outcomes.append(o)
    false_alarms = [a for i, a in enumerate(raised) if i not in used]
    return outcomes, false_alarms


def on_out_of_range_readings(truth: list[dict[str, Any]], raised: list[dict[str, Any]], window_s: float,
                             slack_s: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split unmatched raises into ``(false alarms, raises on an injected out_of_range reading)``. Pure.

    An out-of-range value stays in the process score (``health.range_excludes`` off, the daemon's default: it may
    be the process), so a gross one can raise a process alert beside its sensor alert; such a raise is told apart
    when it is on the fault's device, its window end lies in ``[start_ts, end_ts + window_s + slack_s]`` and its
    first top channel is the faulty one. Any other unmatched raise is a false alarm."""
    faults = [g for g in truth if g.get("class") == "sensor" and g["kind"] == "out_of_range"]
    false_alarms, readings = [], []
    for a in raised:
        top = (a.get("top_channels") or [{}])[0].get("name")
        hit = any(a.get("device") == g["device"] and top in (g.get("channels") or [])
                  and float(g["start_ts"]) <= float(a["window_end"]) <= float(g["end_ts"]) + window_s + slack_s
                  for g in faults)
        (readings if hit else false_alarms).append(a)
    return false_alarms, readings


def match_conditions(truth: list[dict[str, Any]], sensor: list[dict[str, Any]], operating: list[dict[str, Any]],
                     slack_s: float) -> tuple[list[Outcome], list[Outcome]]:
    """Sensor faults against the sensor alerts (the kind and channel, raised from the fault's start to
    ``slack_s`` after its end) and stops against the operating documents (``stopped`` during the stop). Pure."""
    faults, stops = [], []
    for g in sorted(truth, key=lambda g: (g["device"], g["start_ts"])):
        o = Outcome(g["device"], g["kind"], float(g["start_ts"]), float(g["end_ts"]))
        if g.get("class") == "sensor" and g["kind"] in SENSOR_KIND:
            ch = None if g["kind"] == "dead" else (g["channels"] or [None])[0]
            lead = slack_s if g["kind"] == "dead" else 1e-6  # stale is stamped with the device's last sample
            hits = [d for d in sensor if d.get("device") == o.device and d.get("state") == "raised"
                    and d.get("kind") == SENSOR_KIND[g["kind"]] and (ch is None or d.get("channel") == ch)
                    and o.start_ts - lead <= float(d.get("at") or d.get("since") or 0) <= o.end_ts + slack_s]
            faults.append(o)
        elif g.get("class") == "state":
            hits = [d for d in operating if d.get("device") == o.device and d.get("state") == "stopped"
                    and o.start_ts - 1e-6 <= float(d.get("since", 0)) <= o.end_ts]
            stops.append(o)
        else:
            continue
        if hits:
            first = min(hits, key=lambda d: float(d.get("at") or d.get("since") or 0))
            o.detected, o.alert_id = True, first.get("alert_id")
            o.delay_s = float(first.get("at") or first.get("since") or 0) - o.start_ts
            if g["kind"] == "dead":  # a stale alert is dated at the device's last sample, not when it was told
                o.delay_s = None
    return faults, stops


def summary_text(res: DemoResult, base: float) -> str:
    """The summary table shown at the end of the demo; times relative to the stream start ``base`` (epoch s)."""
    lines = ["process anomalies (alerts/{device}):",
             f"{'device':8s} {'anomaly':18s} {'start':>7s} {'length':>7s}  {'detected':8s} {'delay':>7s}"]
    for o in res.outcomes:
        delay = f"{o.delay_s:6.2f}s" if o.delay_s is not None else "      -"
        lines.append(f"{o.device:8s} {o.kind:18s} {o.start_ts - base:6.1f}s {o.end_ts - o.start_ts:6.1f}s  "
                     f"{'yes' if o.detected else 'NO':8s} {delay}")
    n_det = sum(o.detected for o in res.outcomes)
    delays = [o.delay_s for o in res.outcomes if o.delay_s is not None]
    lines.append("")
    lines.append(f"detected {n_det}/{len(res.outcomes)} injected anomalies"
                 + (f"; delay median {float(np.median(delays)):.2f}s, max {max(delays):.2f}s" if delays else ""))
    lines.append(f"false alarms: {len(res.false_alarms)}"
                 + "".join(f"\n  {a['device']} at t={float(a['window_end']) - base:.1f}s score {float(a['score']):.4g}"
                           for a in res.false_alarms))
    if res.reading_alerts:
        lines.append("process alerts on an injected out-of-range reading (the reading stays in the process score; "
                     f"health.range_excludes leaves it out): {len(res.reading_alerts)}"
                     + "".join(f"\n  {a['device']} at t={float(a['window_end']) - base:.1f}s, top channel "
                               f"{a['top_channels'][0]['name']}" for a in res.reading_alerts))
    for title, rows, verb in (("sensor faults (sensor alerts, never anomalies):", res.sensor, "alerted"),
                              ("operating states (not scored while stopped):", res.states, "recognised")):
        if not rows:
            continue
        lines += ["", title, f"{'device':8s} {'fault':18s} {'start':>7s} {'length':>7s}  {verb:10s} {'after':>7s}"]
        for o in rows:
            delay = f"{o.delay_s:6.2f}s" if o.delay_s is not None else "      -"
            lines.append(f"{o.device:8s} {o.kind:18s} {o.start_ts - base:6.1f}s {o.end_ts - o.start_ts:6.1f}s  "
                         f"{'yes' if o.detected else 'NO':10s} {delay}")
        lines.append(f"{verb} {sum(o.detected for o in rows)}/{len(rows)}"
                     + (" (a dead device's alert is dated at its last sample: no delay to show)"
                        if any(o.kind == "dead" and o.detected for o in rows) else ""))
    s = res.stats
    if s:
        lines.append(
            f"daemon processed {s.get('messages', 0)} messages, {s.get('samples', 0)} samples, "
            f"{s.get('windows_scored', 0)} windows in {s.get('batches', 0)} batches "
            f"(p50 {s.get('inference_ms_p50')} ms, p99 {s.get('inference_ms_p99')} ms per batch, "
            f"provider {s.get('provider')}); dropped {s.get('dropped_total', 0)}"
            + (f" {s.get('drops')}" if s.get("drops") else "")
        )
    else:
        lines.append("daemon stats: none received")
    return "\n".join(lines)


class _Steps:
    """Numbered step lines; turns any exception inside a step into :class:`DemoError`."""

    def __init__(self, echo: Any) -> None:
        self.n = 0
        self.echo = echo

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        self.n += 1
        self.echo(f"[{self.n}/{N_STEPS}] {title}")
        try:
            yield
        except DemoError:
            raise
        except Exception as exc:
            raise DemoError(title, str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__) from exc


def demo_plan(opts: DemoOptions, total_s: float) -> Any:
    """The stream: random process anomalies in the first ``opts.duration`` s, then (``opts.faults``) a stop and
    one of each sensor fault in the last :data:`FAULT_S` s."""
    from edge_runtime.tools.simulate import ScheduledAnomaly, parse_anomaly_spec

    first = make_plan(
        opts.devices, opts.rate, opts.duration, n_channels=opts.channels, seed=opts.seed,
        random_count=opts.anomalies, min_len_s=2.0, max_len_s=4.0, kinds=PROCESS_KINDS,
        warmup_s=max(6.0, 2.0 * opts.window / opts.rate),
        gap_s=(opts.window + 10 * opts.hop) / opts.rate + 1.0,  # room to clear before the next
        t0=0.0,
    )
    names = list(first.channels)
    scheduled = [ScheduledAnomaly(d.name, a.kind, a.start / opts.rate, (a.end - a.start) / opts.rate,
                                  tuple(names[c] for c in a.channels)) for d in first.devices for a in d.anomalies]
    if opts.faults:
        scheduled += [parse_anomaly_spec(s) for s in
                      fault_specs([d.name for d in first.devices], names, opts.duration)]
    # faster than real time, the stream would run ahead of the clock: start it in the past so its last sample
    # is stamped about when it is sent, and later data (simulate) is not "old"
    return make_plan(opts.devices, opts.rate, total_s, n_channels=opts.channels, seed=opts.seed, scheduled=scheduled,
                     t0=round(time.time() + total_s / opts.speed - total_s, 3))


def _python_cmd(module: str) -> list[str]:
    return [sys.executable, "-m", module]


def run_demo(opts: DemoOptions, echo: Any = print) -> DemoResult:
    """Run every step; raises :class:`DemoError` naming the failed step. Stops what it started
    (unless ``opts.keep_running`` and every step succeeded)."""
    from trainer.api import train_and_export
    from trainer.pipeline import DEFAULT_MARGIN

    steps = _Steps(echo)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(opts.out_dir) / f"demo-{stamp}"
    k = 1
    while run_dir.exists():
        run_dir = Path(opts.out_dir) / f"demo-{stamp}-{k}"
        k += 1
    try:
        run_dir.mkdir(parents=True)
    except OSError as exc:
        raise DemoError("creating the run folder", f"{run_dir}: {exc.strerror or exc}") from None
    echo(f"edgewatch-train demo: artefacts in {run_dir}")
    res = DemoResult(run_dir)
    names = channel_names(opts.channels)
    model = run_dir / "model.onnx"
    broker = BrokerProcess(run_dir, opts.broker_kind)
    daemon: subprocess.Popen | None = None
    watcher: Watcher | None = None
    ok = False
    try:
        with steps.step(f"generating {opts.train_steps} samples of normal training data ({opts.channels} channels"
                        + (f", {TRAIN_STOPS} stops)" if opts.faults else ")")):
            x = normal_series(opts.train_steps, opts.channels, seed=opts.seed, start=5_000_000)
            running = np.ones(len(x), dtype=bool)
            if opts.faults:  # the machine stops now and then: the model learns to tell a stop
                span = opts.train_steps // (TRAIN_STOPS + 1)
                stops = [(k * span + span // 2, k * span + span // 2 + opts.train_steps // 10)
                         for k in range(TRAIN_STOPS)]
                x = apply_stops(x, names, stops, settle=20, seed=opts.seed)
                for a, b in stops:
                    running[a:b] = False
            write_csv(run_dir / "train.csv", x, names, period_s=1.0 / opts.rate)

        with steps.step(f"training and exporting the model (W={opts.window}, hop={opts.hop}, up to {opts.epochs} epochs)"):
            t = time.monotonic()
            meta = train_and_export(
                [x], names, model, window=opts.window, hop=opts.hop, epochs=opts.epochs, seed=opts.seed,
                lr=5e-3, quiet=False, running=[running] if opts.faults else None, sample_period_s=1.0 / opts.rate,
                threshold_scale=DEMO_MARGIN,
            )
            echo(f"      model {meta.model_id}: threshold {meta.threshold.value:.4g} ({meta.threshold.method}, margin "
                 f"{DEMO_MARGIN:g}: the demo's own, fit's default is {DEFAULT_MARGIN:g}), {time.monotonic() - t:.1f} s -> {model}")

        with steps.step("evaluating it with `edgewatch-train evaluate` on labelled synthetic data"):
            n_eval = 4000
            anomalies = random_anomalies(n_eval, opts.channels, 6, seed=opts.seed + 1, min_len=30, max_len=80)
            xe, labels = labelled_series(n_eval, opts.channels, anomalies, seed=opts.seed)
            write_csv(run_dir / "labelled.csv", xe, names, labels, period_s=1.0 / opts.rate)
            cmd = [*_python_cmd("trainer.cli"), "evaluate", "--model", str(model), "--data",
                   str(run_dir / "labelled.csv"), "--hop", str(opts.hop), "--report",
                   str(run_dir / "evaluation.json"), "--plot", str(run_dir / "evaluation.png")]
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if out.returncode != 0:
                raise RuntimeError((out.stderr or out.stdout).strip()[-300:] or f"exit code {out.returncode}")
            for line in out.stdout.strip().splitlines():
                echo(f"      {line}")

        with steps.step("starting a private MQTT broker"):
            broker.start(detach=opts.keep_running)
            res.broker = broker.kind
            echo(f"      {broker.kind} on {broker.url}")

        with steps.step("starting the daemon (edgewatch run)"):
            log_path = run_dir / "daemon.log"
            cmd = [*_python_cmd("edge_runtime.cli"), "run", "--model", str(model), "--broker", broker.url,
                   "--instance", INSTANCE, "--stats-interval-s", "1", "--no-persistent-session"]
            with open(log_path, "ab") as log:
                daemon = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=opts.keep_running)
            watcher = Watcher(broker.url, run_dir, time.time(), echo)  # t0 set to the stream's start below
            deadline = time.monotonic() + 60
            while not watcher.online.wait(0.2):
                if daemon.poll() is not None or time.monotonic() > deadline:
                    tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
                    why = f"exited with code {daemon.returncode}" if daemon.poll() is not None else "not online after 60 s"
                    raise RuntimeError(f"daemon {why}: {' | '.join(tail)}")
            echo(f"      online: provider {watcher.status.get('provider')}, log in {log_path}")

        n_devices = opts.devices
        total = opts.duration + (FAULT_S if opts.faults else 0.0)
        with steps.step(f"streaming {n_devices} devices x {total:g} s at {opts.rate:g} Hz "
                        f"({opts.speed:g}x real time) with {opts.anomalies} anomalies each"
                        + (", then a stop and one of each sensor fault (freeze, dropout, out_of_range, dead)"
                           if opts.faults else "") + "; alerts as they arrive:"):
            plan = demo_plan(opts, total)
            watcher.t0, watcher.end_s = plan.t0, total - 2.0 / opts.rate
            write_ground_truth(run_dir / "ground_truth.json", plan)
            client = connect_publisher(broker.url, "edgewatch-demo-sim")
            try:
                sim = publish_plan(client, plan, fmt="single" if opts.batch == 1 else "batch", batch=opts.batch,
                                   qos=1, realtime=True, speed=opts.speed)
            finally:
                client.disconnect()
                client.loop_stop()
            # let the daemon catch up: its stats count every message we sent
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and watcher.stats.get("messages", 0) < sim.messages:
                time.sleep(0.2)
            time.sleep(1.5)  # a last batch of windows and its alerts
            echo(f"      published {sim.messages} messages ({sim.samples} samples) in {sim.elapsed_s:.1f} s")

        with steps.step("stopping and summarising" if not opts.keep_running else "summarising (broker and daemon keep running)"):
            if not opts.keep_running:
                code = terminate(daemon)
                time.sleep(0.5)  # the final stats and offline status published on stop
                if code not in (0, None):
                    raise RuntimeError(f"daemon exited with code {code} on SIGTERM (see {run_dir / 'daemon.log'})")
            res.stats = dict(watcher.stats)
            window_s = opts.window / opts.rate
            slack_s = 4 * opts.hop / opts.rate
            truth = ground_truth(plan)
            res.outcomes, unmatched = match_alerts(
                [g for g in truth if g.get("class", "process") == "process"], watcher.alerts, window_s, slack_s)
            res.false_alarms, res.reading_alerts = on_out_of_range_readings(truth, unmatched, window_s, slack_s)
            res.sensor, res.states = match_conditions(truth, watcher.sensor, watcher.operating, 10 * slack_s)
            text = summary_text(res, plan.t0)
            (run_dir / "summary.txt").write_text(text + "\n", encoding="utf-8")
            (run_dir / "summary.json").write_text(json.dumps({
                "broker": res.broker, "model": str(model), "model_id": meta.model_id,
                "threshold": meta.threshold.value, "options": {k: str(v) for k, v in asdict(opts).items()},
                "anomalies": [asdict(o) for o in res.outcomes], "false_alarms": res.false_alarms,
                "out_of_range_reading_alerts": res.reading_alerts, "sensor_faults": [asdict(o) for o in res.sensor], "operating_states": [asdict(o) for o in res.states],
                "published": sim.messages, "daemon_stats": res.stats,
            }, indent=2) + "\n", encoding="utf-8")
            echo("")
            echo(textwrap.indent(text, "  "))
        ok = True
    finally:
        if watcher is not None:
            watcher.close()
        if not (ok and opts.keep_running):
            terminate(daemon)
            broker.stop()
    echo("")
    echo(f"run folder: {run_dir}  (model.onnx, evaluation.json/.png, ground_truth.json, daemon.log, "
         "alerts.jsonl, summary.txt/.json)")
    if opts.keep_running:
        echo(f"broker ({broker.kind}, pid {broker.pid or '?'}) and daemon "
             f"(pid {daemon.pid if daemon else '?'}) keep running. Watch the alerts with:")
        echo(f"  mosquitto_sub -h 127.0.0.1 -p {broker.port} -t 'alerts/#' -v")
        echo(f"send more data with: edgewatch simulate --broker {broker.url} --prefix more --devices 2 --random 2 "
             "--duration 60")
        echo(f"stop them with: kill {daemon.pid if daemon else ''} {broker.pid or ''}")
    return res
