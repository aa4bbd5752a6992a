"""``edgewatch-lab bench faults``: a synthetic plant with stops, sensor faults and process faults, through the daemon.

The plant (:mod:`edge_runtime.tools.synthetic`): 4 channels, stopped for stretches (pressure, vibration, current at
their off level, the temperature cooling) with a status column in training. A model is fitted with
``--state-column status --running RUN`` (:func:`trainer.pipeline.run_fit`). Then the same devices are streamed by
the simulator (:mod:`edge_runtime.tools.simulate`, ground truth from it) through a private Mosquitto into an
in-process daemon, twice: with healthy sensors, and with the same stops and process faults plus frozen,
dropped-out and out-of-range channels and a dead device (faults overlapping process faults on other channels).

Measured against the issue's numbers: every freeze, dropout and out-of-range alerted as a sensor fault within 2x
its limit; no process alert caused by a stop, a freeze or a dropout; the process faults detected with at most
10 % more delay than with healthy sensors. What the daemon does not publish (no sensor alerts) is reported as
not measured, never as met.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.tools.synthetic import KIND_CLASS, STOP_TAIL, apply_stops, channel_names, normal_series

RATE = 10.0  # Hz
CHANNELS = channel_names(4)  # pressure, temperature, vibration, current
TRAIN_STOPS = [(1500, 2100), (4200, 4600), (7000, 7700), (10_500, 10_900), (13_000, 13_500)]
TRAIN_ROWS = 16_000
WINDOW, HOP = 32, 4
DURATION_S = 800.0  # per device
# (kind, start_s, duration_s, channel): the plant's course for every device; channels rotate per device
STOPS = [("stop", 100.0, 40.0, None), ("stop", 330.0, 40.0, None)]
PROCESS = [("level_shift", 230.0, 20.0, 3), ("drift", 460.0, 30.0, 0)]
SENSOR = [("freeze", 220.0, 50.0, 0), ("dropout", 450.0, 30.0, 3), ("out_of_range", 550.0, 10.0, 2),
          ("freeze", 600.0, 50.0, 2), ("dropout", 680.0, 20.0, 0)]
DEAD = ("dead", 720.0, 30.0, None)  # the last device only


def training_series(seed: int = 0, rows: int = TRAIN_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """Training rows (T, 4) with stops, and the status column (T,) RUN/STOP."""
    stops = [(a, b) for a, b in TRAIN_STOPS if b <= rows]
    x = normal_series(rows, len(CHANNELS), seed, start=5_000_000)
    x = apply_stops(x, CHANNELS, stops, settle=20, seed=seed)
    status = np.full(rows, "RUN", dtype=object)
    for a, b in stops:
        status[a:b] = "STOP"
    return x, status.astype(str)


def fit_model(out: Path, seed: int = 0, epochs: int = 15, rows: int = TRAIN_ROWS, stops: str = "states") -> Any:
    """Fit the plant's model on ``rows`` training rows; its metadata. ``stops``: ``states`` (told which rows run,
    ``--state-column``), ``kept`` (the stops trained on as normal) or ``removed`` (only the running rows, cut
    into stretches, no states: the edge scores every sample)."""
    from trainer.data import Series
    from trainer.operating import StateSpec
    from trainer.pipeline import FitOptions, run_fit
    from trainer.train import TrainConfig

    x, status = training_series(seed, rows)
    if stops == "removed":
        from edge_runtime.pipeline.states import runs

        series = [Series(f"plant[{a}:{b}]", x[a:b], list(CHANNELS), None, 1.0 / RATE)
                  for a, b in runs(status == "RUN")]
    else:
        series = [Series("plant", x, list(CHANNELS), None, 1.0 / RATE, states=status)]
    spec = StateSpec.of("status", ["RUN"], None) if stops == "states" else None
    opts = FitOptions(window=WINDOW, hop=HOP, states=spec, train=TrainConfig(epochs=epochs, seed=seed, lr=5e-3))
    return run_fit(series, out, opts).meta


def schedule(n_devices: int, sensor_faults: bool) -> list[str]:
    """``--anomaly`` specs of the plan: stops and process faults everywhere, sensor faults when asked."""
    specs = []
    for i in range(n_devices):
        dev = f"sim-{i}"
        for kind, start, dur, ch in STOPS + PROCESS + (SENSOR if sensor_faults else []):
            chan = "" if ch is None else f":{CHANNELS[(ch + i) % len(CHANNELS)]}"
            specs.append(f"{dev}:{kind}:{start}:{dur}{chan}")
        if sensor_faults and i == n_devices - 1:
            specs.append(f"{dev}:{DEAD[0]}:{DEAD[1]}:{DEAD[2]}")
    return specs


class Collector:
    """Every message on ``alerts/#`` (and the configured sensor-alert topics), in arrival order."""

    def __init__(self, broker_url: str, filters: list[str]) -> None:
        from edge_runtime.tools.simulate import connect_publisher

        self.messages: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self.client = connect_publisher(broker_url, f"edgewatch-bench-faults-{time.monotonic_ns() & 0xFFFFFF:x}")
        self.client.on_message = self._on_message
        self.client.subscribe([(f, 1) for f in filters])
        time.sleep(0.3)

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(doc, dict):
            with self._lock:
                self.messages.append((msg.topic, doc))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def through_daemon(model: Path, workdir: Path, name: str, publish: Any, **overrides: Any
                   ) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any], Any]:
    """A private Mosquitto and an in-process daemon on ``model`` (config ``overrides``); ``publish(client)`` sends
    the data (returns the messages sent); waits until the daemon has read and scored them. ``(messages on
    alerts/#, the daemon's final stats, its config)``."""
    from edge_runtime.config import build_config
    from edge_runtime.service.daemon import Daemon
    from edge_runtime.tools.simulate import connect_publisher
    from lab.bench.broker import bench_broker

    broker = bench_broker(workdir=workdir / f"mosquitto-{name}")
    broker.start(timeout=15.0)
    try:
        cfg = build_config(None, {"path": str(model), "broker": broker.url, "instance": "bench-faults",
                                  "stats_interval_s": 0.0, "watch_interval_s": 0.0, "persistent_session": False,
                                  **overrides})
        topics = ["alerts/#", *(f.replace("{device}", "+") for f in
                                (getattr(cfg, "sensor_topic", ""), getattr(cfg, "health_topic", "")) if f)]
        collector = Collector(broker.url, sorted(set(topics)))
        daemon = Daemon(cfg).start()
        try:
            deadline = time.monotonic() + 15
            while not daemon.link.connected.is_set() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)
            client = connect_publisher(broker.url, f"edgewatch-bench-{name}-pub")
            try:
                sent = publish(client)
            finally:
                client.disconnect()
                client.loop_stop()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and (daemon.stats.counts["messages"] < sent or len(daemon.batching)):
                time.sleep(0.1)
            time.sleep(1.0)
            stats = daemon.stats_doc()
        finally:
            daemon.stop()
            collector.close()
    finally:
        broker.stop()
    return collector.messages, {k: v for k, v in stats.items() if isinstance(v, (int, float, str))}, cfg


def stream(model: Path, n_devices: int, sensor_faults: bool, workdir: Path, seed: int = 0) -> dict[str, Any]:
    """One run of the plant through the daemon (:func:`through_daemon`): ground truth, alerts, the daemon's stats."""
    from edge_runtime.tools.simulate import (
        ground_truth,
        make_plan,
        parse_anomaly_spec,
        publish_plan,
        stream_start,
    )

    plan = make_plan(n_devices, RATE, DURATION_S, channels=CHANNELS, seed=seed,
                     scheduled=[parse_anomaly_spec(s) for s in schedule(n_devices, sensor_faults)],
                     t0=stream_start(time.time(), DURATION_S, 0.0))
    sent: list[int] = []

    def publish(client: Any) -> int:
        sent.append(publish_plan(client, plan, fmt="single", qos=1, realtime=False).messages)
        return sent[0]

    messages, stats, cfg = through_daemon(model, workdir, f"plant-{int(sensor_faults)}", publish)
    return {"plan": {"t0": plan.t0, "rate": plan.rate, "n_steps": plan.n_steps, "devices": len(plan.devices)},
            "truth": ground_truth(plan), "messages": messages, "published": sent[0], "stats": stats, "cfg": cfg}


def _alerts(run: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(process raises, sensor-alert messages, operating documents) of a run."""
    cfg = run["cfg"]
    process, sensor, operating = [], [], []
    for topic, doc in run["messages"]:
        dev = str(doc.get("device", ""))
        if topic == cfg.alert_topic.replace("{device}", dev):
            if doc.get("state") == "raised" and doc.get("event", "raise") == "raise":
                process.append(doc)
        elif topic == cfg.operating_topic.replace("{device}", dev):
            operating.append(doc)
        elif doc.get("kind") in ("missing", "stuck", "out_of_range", "stale") and "channel" in doc:
            sensor.append(doc)
    return process, sensor, operating


SENSOR_KIND = {"freeze": "stuck", "dropout": "missing", "out_of_range": "out_of_range", "dead": "stale"}


def sensor_limit_s(meta: Any, kind: str, channel: str | None, cfg: Any) -> float | None:
    """The limit (s) within which a fault of ``kind`` on ``channel`` is due to be alerted (from the model's
    ``health`` field and the daemon's config), or None when unknown."""
    h = meta.health or {}
    period = 1.0 / RATE
    raise_after = getattr(cfg, "sensor_raise_after", 1)
    if kind == "out_of_range":  # out of range for range_hold samples, then raise_after of them
        return (getattr(cfg, "range_hold", 1) + raise_after - 1) * period
    if kind == "dropout":
        limit = (h.get("fill") or {}).get("limit_samples")
        return None if limit is None else (limit + raise_after) * period
    if kind == "freeze":
        per = h.get("channels") or {}
        ch = per.get(channel, {}) if isinstance(per, dict) else {}
        flat = ch.get("max_flat_samples") if isinstance(ch, dict) else None
        if flat is None and isinstance(h.get("max_flat_samples"), list) and channel in meta.channels:
            flat = h["max_flat_samples"][meta.channels.index(channel)]
        return None if not flat else (float(flat) + raise_after) * period
    if kind == "dead":
        stale = getattr(cfg, "stale_after_s", 0.0) or h.get("stale_after_s")
        return None if not stale else float(stale)
    return None


def judge(run: dict[str, Any], meta: Any) -> dict[str, Any]:
    """Sensor faults alerted and their delays, false process alerts by cause, process faults' delays."""
    process, sensor, operating = _alerts(run)
    w_s = meta.window / RATE
    slack = 4 * meta.hop / RATE
    truth = run["truth"]
    proc = [g for g in truth if g["class"] == "process"]
    faults = [g for g in truth if g["class"] == "sensor"]
    stops = [g for g in truth if g["class"] == "state"]
    delays: dict[str, float | None] = {}
    used: set[int] = set()
    for g in proc:
        key = f"{g['device']} {g['kind']} {g['channels'][0]}"
        hits = [(float(a["window_end"]), i) for i, a in enumerate(process) if a["device"] == g["device"]
                and g["start_ts"] <= float(a["window_end"]) <= g["end_ts"] + w_s + slack]
        delays[key] = min(hits)[0] - g["start_ts"] if hits else None
        used |= {i for _, i in hits}

    def overlaps(a: dict[str, Any], spans: list[dict[str, Any]], tail: float) -> bool:
        lo, hi = float(a["window_start"]), float(a["window_end"])
        return any(g["device"] == a["device"] and lo <= g["end_ts"] + tail and hi >= g["start_ts"] for g in spans)

    false_by: dict[str, int] = {"stop": 0, "freeze": 0, "dropout": 0, "out_of_range": 0, "dead": 0, "other": 0}
    for i, a in enumerate(process):
        if i in used:
            continue
        if overlaps(a, stops, STOP_TAIL / RATE):
            false_by["stop"] += 1
            continue
        kind = next((g["kind"] for g in faults if overlaps(a, [g], w_s)), "other")
        false_by[kind] += 1
    sensor_rows = []
    for g in faults:
        ch = g["channels"][0] if g["channels"] and g["kind"] != "dead" else None
        want = SENSOR_KIND[g["kind"]]
        hits = [d for d in sensor if d.get("device") == g["device"] and d.get("kind") == want
                and d.get("state") == "raised" and (ch is None or d.get("channel") == ch)
                and d.get("at") is not None and g["start_ts"] - (2.0 if g["kind"] == "dead" else 1e-6)
                <= float(d["at"]) <= g["end_ts"] + 60.0]  # stale is stamped with the device's last sample
        limit = sensor_limit_s(meta, g["kind"], ch, run["cfg"])
        delay = min(float(d["at"]) for d in hits) - g["start_ts"] if hits else None
        sensor_rows.append({"device": g["device"], "kind": g["kind"], "channel": ch, "alerted": bool(hits),
                            "delay_s": delay, "limit_s": limit,
                            "within_2x": None if delay is None or limit is None else delay <= 2 * limit + 1e-9})
    return {"process_delays_s": delays, "process_detected": sum(v is not None for v in delays.values()),
            "process_faults": len(delays), "false_process_alerts": false_by, "sensor_faults": sensor_rows,
            "sensor_alert_messages": len(sensor), "operating_documents": len(operating),
            "stops_seen": sum(d.get("state") == "stopped" for d in operating)}


def run_faults(n_devices: int = 4, seed: int = 0, epochs: int = 15, workdir: Path | None = None) -> dict[str, Any]:
    """Fit once, stream healthy and faulty sensors through the daemon, judge both."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgewatch-bench-faults-") as tmp:
        work = Path(workdir) if workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        model = work / "plant.onnx"
        meta = fit_model(model, seed, epochs)
        healthy = stream(model, n_devices, False, work, seed)
        faulty = stream(model, n_devices, True, work, seed)
        baselines = {}
        for how in ("kept", "removed"):  # what a user could do before: the stops in training, or cut out
            path = work / f"plant-{how}.onnx"
            bmeta = fit_model(path, seed, epochs, stops=how)
            bj = judge(stream(path, n_devices, False, work, seed), bmeta)
            vals = [v for v in bj["process_delays_s"].values() if v is not None]
            baselines[how] = {"false_by_stops": bj["false_process_alerts"]["stop"],
                              "detected": bj["process_detected"], "faults": bj["process_faults"],
                              "delay_mean_s": float(np.mean(vals)) if vals else None}
    a, b = judge(healthy, meta), judge(faulty, meta)
    common = [k for k, v in a["process_delays_s"].items() if v is not None and b["process_delays_s"].get(k) is not None]
    da = float(np.mean([a["process_delays_s"][k] for k in common])) if common else None
    db = float(np.mean([b["process_delays_s"][k] for k in common])) if common else None
    return {
        "model": {"window": meta.window, "hop": meta.hop, "threshold": meta.threshold.value,
                  "states": meta.states, "health": meta.health},
        "healthy": {**a, "stats": healthy["stats"], "published": healthy["published"]},
        "faulty": {**b, "stats": faulty["stats"], "published": faulty["published"]},
        "delay_ratio": None if not da or db is None else db / da,
        "delay_mean_s": {"healthy": da, "faulty": db, "faults_compared": len(common)},
        "baselines": baselines,
        "seconds": round(time.perf_counter() - t0, 1),
        "kinds": KIND_CLASS,
    }


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def faults_md(r: dict[str, Any]) -> str:
    """The Markdown section: each number against its target, met, missed or not measured."""
    a, b = r["healthy"], r["faulty"]
    rows = b["sensor_faults"]
    alerted = [s for s in rows if s["kind"] != "dead" and s["alerted"]]
    measurable = [s for s in rows if s["kind"] != "dead"]
    within = [s for s in alerted if s["within_2x"]]
    false_b = b["false_process_alerts"]
    caused = false_b["stop"] + false_b["freeze"] + false_b["dropout"]
    ratio = r["delay_ratio"]
    lines = [
        f"Plant: {len(CHANNELS)} channels at {RATE:g} Hz, {b['stats'].get('devices_active', '?')} devices x "
        f"{DURATION_S:g} s, 2 stops each; model W {r['model']['window']}, hop {r['model']['hop']}, "
        f"settling {r['model']['states'].get('settle_samples') if r['model']['states'] else '?'} samples. "
        f"{r['seconds']} s in all.", "",
        "| number | target | measured | verdict |", "|---|---|---|---|",
        f"| sensor faults alerted as such (freeze, dropout, out_of_range) | all, within 2x their limit | "
        f"{len(alerted)}/{len(measurable)} alerted, {len(within)} within 2x "
        f"({b['sensor_alert_messages']} sensor-alert messages) | "
        + ("not measured: the daemon published no sensor alerts" if not b["sensor_alert_messages"] else
           ("met" if len(within) == len(measurable) else "missed")) + " |",
        f"| process alerts caused by stops (healthy / faulty sensors) | 0 | {a['false_process_alerts']['stop']} / "
        f"{false_b['stop']} | {'met' if a['false_process_alerts']['stop'] + false_b['stop'] == 0 else 'missed'} |",
        f"| process alerts caused by freezes, dropouts | 0 | {false_b['freeze']} + {false_b['dropout']} | "
        f"{'met' if caused - false_b['stop'] == 0 else 'missed'} |",
        f"| process faults detected (healthy / faulty) | all | {a['process_detected']}/{a['process_faults']} / "
        f"{b['process_detected']}/{b['process_faults']} | "
        f"{'met' if a['process_detected'] == a['process_faults'] and b['process_detected'] == b['process_faults'] else 'missed'} |",
        "| delay with faulty / healthy sensors | <= 1.10 | "
        + ("n/a" if ratio is None else f"{ratio:.3f} (mean {r['delay_mean_s']['faulty']:.1f} s vs "
           f"{r['delay_mean_s']['healthy']:.1f} s over {r['delay_mean_s']['faults_compared']} faults)")
        + f" | {'n/a' if ratio is None else ('met' if ratio <= 1.10 else 'missed')} |",
        "",
        f"Other false process alerts: healthy {a['false_process_alerts']['other']}, faulty {false_b['other']} "
        f"(out_of_range {false_b['out_of_range']}, dead {false_b['dead']}). Operating documents: "
        f"{a['operating_documents']} / {b['operating_documents']} ({a['stops_seen']} / {b['stops_seen']} stops seen). "
        f"Daemon: samples_stopped {b['stats'].get('samples_stopped')}, samples_settling "
        f"{b['stats'].get('samples_settling')}, dropped {b['stats'].get('dropped_total')}.",
        "", "Without operating states, healthy sensors (the same plant and stream):", "",
        "| model | process alerts caused by stops | process faults detected | mean delay s |", "|---|---|---|---|",
        f"| with states (`--state-column`) | {a['false_process_alerts']['stop']} | {a['process_detected']}/"
        f"{a['process_faults']} | {_s(r['delay_mean_s']['healthy'])} |",
        *(f"| stops {'kept in' if k == 'kept' else 'cut out of'} training, no states | {v['false_by_stops']} | "
          f"{v['detected']}/{v['faults']} | {_s(v['delay_mean_s'])} |" for k, v in r.get("baselines", {}).items()),
        "", "| device | sensor fault | channel | alerted | delay s | limit s |", "|---|---|---|---|---|---|",
    ]
    for s in rows:
        d = "-" if s["delay_s"] is None else f"{s['delay_s']:.1f}"
        lim = "?" if s["limit_s"] is None else f"{s['limit_s']:.1f}"
        lines.append(f"| {s['device']} | {s['kind']} | {s['channel'] or '-'} | {'yes' if s['alerted'] else 'no'} | "
                     f"{d} | {lim} |")
    return "\n".join(lines)


# -- SKAB: an operating point far from training ---------------------------------------------------------------
def stream_csv(model: Path, path: Path, device: str, workdir: Path, **overrides: Any) -> dict[str, Any]:
    """Replay one CSV file (the model's channels, one sample a second, ending now) as ``device`` through the daemon
    (:func:`through_daemon`, ``overrides``: its config); its process raises, operating documents and stats."""
    from edge_runtime.service.model import load_model
    from edge_runtime.tools.simulate import InFlight, SimResult, encode_payload
    from trainer.data import load_paths, read_options

    meta = load_model(model, provider="cpu").metadata
    s = load_paths([path], opts=read_options(meta.preprocessing), channels=meta.channels)[0]
    ts = time.time() - len(s.values) + np.arange(len(s.values), dtype=np.float64)

    def publish(client: Any) -> int:
        res = SimResult()
        inflight = InFlight(res)
        for i in range(0, len(ts), 50):  # JSON batches of 50 samples
            (payload,) = encode_payload("batch", ts[i : i + 50], s.values[i : i + 50], meta.channels)
            inflight.add(client.publish(f"sensors/{device}/data", payload, qos=1))
            res.messages += 1
        inflight.finish()
        return res.messages

    messages, stats, cfg = through_daemon(model, workdir, f"{device}-{len(overrides)}", publish, **overrides)
    process, sensor, operating = _alerts({"messages": messages, "cfg": cfg})
    return {"file": str(path), "rows": len(s.values), "raises": len(process),
            "sensor_raises": sum(d.get("state") == "raised" for d in sensor),
            "sensor_kinds": sorted({f"{d.get('kind')} {d.get('channel') or ''}".strip() for d in sensor
                                    if d.get("state") == "raised"}),
            "windows_degraded": stats.get("windows_degraded"),
            "operating": [d["state"] for d in operating],
            "windows_scored": stats.get("windows_scored"),
            "windows_out_of_distribution": stats.get("windows_out_of_distribution"),
            "out_of_distribution": stats.get("out_of_distribution")}


def run_skab_ood(skab: Path, ood_windows: int = 10, ood_factor: float = 3.0, train_file: str = "valve1/1.csv",
                 other_file: str = "valve1/10.csv", epochs: int | None = None, workdir: Path | None = None
                 ) -> dict[str, Any]:
    """A model fitted on one valve1 file (``fit``'s defaults); SKAB's anomaly-free recording and another valve1
    file through the daemon with the out-of-distribution check off and on."""
    from trainer.data import load_paths
    from trainer.pipeline import FitOptions, run_fit
    from trainer.train import TrainConfig

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgewatch-bench-ood-") as tmp:
        work = Path(workdir) if workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        model = work / "valve1.onnx"
        train = TrainConfig() if epochs is None else TrainConfig(epochs=epochs)
        meta = run_fit(load_paths([skab / train_file]), model, FitOptions(train=train)).meta
        on = {"ood_windows": ood_windows, "ood_factor": ood_factor}
        out = {}
        for name, f in (("anomaly_free", skab / "anomaly-free" / "anomaly-free.csv"), ("valve1_other", skab / other_file)):
            out[name] = {"off": stream_csv(model, f, "skab", work), "on": stream_csv(model, f, "skab", work, **on),
                         "on, no sensor checks": stream_csv(model, f, "skab", work, **on, sensor_checks=False)}
    return {"model": {"trained_on": train_file, "window": meta.window, "hop": meta.hop,
                      "threshold": meta.threshold.value}, "ood_windows": ood_windows, "ood_factor": ood_factor,
            **out, "seconds": round(time.perf_counter() - t0, 1)}


def skab_ood_md(r: dict[str, Any]) -> str:
    af, other = r["anomaly_free"], r["valve1_other"]
    n_ood = af["on"]["operating"].count("out_of_distribution")
    lines = [
        f"Model fitted on SKAB {r['model']['trained_on']} (W {r['model']['window']}, hop {r['model']['hop']}); "
        f"alerts.ood_windows {r['ood_windows']}, ood_factor {r['ood_factor']:g}. {r['seconds']} s.", "",
        "| recording | out-of-distribution check | process raises | sensor-alert raises | operating documents | "
        "windows scored | out of distribution | degraded (not scored) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, rr in (("anomaly-free.csv", af), (other["off"]["file"].split("/skab/")[-1], other)):
        for k, x in rr.items():
            lines.append(f"| {name} | {k} | {x['raises']} | {x.get('sensor_raises', 0)} | "
                         f"{', '.join(x['operating']) or '-'} | {x['windows_scored']} | "
                         f"{x['windows_out_of_distribution'] or 0} | {x.get('windows_degraded') or 0} |")
    lines += ["", "Sensor alerts raised (kind, channel): " + "; ".join(
        f"{name} {k}: {', '.join(x.get('sensor_kinds', [])) or '-'}"
        for name, rr in (("anomaly-free.csv", af), ("valve1 other", other)) for k, x in rr.items())]
    lines += ["", f"Target: one out_of_distribution report for the anomaly-free device, not thousands of alerts: "
              f"{n_ood} report(s), {af['on']['raises']} process raise(s), {af['on'].get('sensor_raises', 0)} sensor-alert "
              f"raise(s) -> {'met' if n_ood == 1 and af['on']['raises'] == 0 else 'missed'} (with the sensor checks off: "
              f"{af['on, no sensor checks']['operating'].count('out_of_distribution')} report(s), "
              f"{af['on, no sensor checks']['raises']} process raise(s))."]
    return "\n".join(lines)
