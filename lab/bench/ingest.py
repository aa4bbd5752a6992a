"""End-to-end MQTT benchmarks on a private Mosquitto: ingest (drain rate), latency and footprint.

Ingest: the broker first queues N messages for a consumer's persistent QoS 1 session (publishers
flood it while the consumer is away), then the consumer connects and drains them; its rate is
messages / (last done - first received). The baseline, in the same run and on the same broker, is a
bare paho subscriber that only counts and ``json.loads`` each message (``bare``: paho's stock client,
the goal's baseline; ``bare_tuned``: the same subscriber on edgewatch's own client,
:class:`~edge_runtime.service.paho_buffered.BufferedClient`, so edgewatch's own cost shows too). The daemon's run is complete
only when every message is in and every expected window is scored; drops are read from its
counters and from the broker's ``$SYS/broker/publish/messages/dropped``.

Latency is measured live (publishers paced, daemon and a receiving subscriber all running on the same
cores) at fractions of the *sustainable rate*: the highest published rate at which, under those same
live conditions, the daemon keeps up (:func:`keeps_up`), found by a short bisection
(:func:`find_sustainable_rate`). The drain rate above is not used for it: with no publisher running
it overstates what the machine sustains live.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.service.model import load_model
from edge_runtime.service.mqtt import ClientOptions, make_client, parse_broker_url
from edge_runtime.tools.localbroker import MosquittoBroker
from lab.bench.broker import bench_broker, prime_session, sys_value
from lab.bench.common import percentiles, summary
from lab.bench.procs import T0, cpu_seconds, rss_mb

log = logging.getLogger(__name__)

TOPIC = "sensors/{device}/data"


def run_role(role: str, args: dict[str, Any], timeout: float = 300) -> dict[str, Any]:
    """Run one child role to completion; return its JSON result."""
    res = subprocess.run([sys.executable, "-m", "lab.bench.procs", role, json.dumps(args)],
                         capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0 or not res.stdout.strip():
        raise RuntimeError(f"bench {role} failed (rc {res.returncode}): {res.stderr.strip()[-800:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def start_role(role: str, args: dict[str, Any]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lab.bench.procs", role, json.dumps(args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 300) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0 or not out.strip():
        raise RuntimeError(f"bench child failed (rc {proc.returncode}): {err.strip()[-800:]}")
    return json.loads(out.strip().splitlines()[-1])


def device_names(n: int) -> list[str]:
    return [f"dev{i:05d}" for i in range(n)]


def publish_all(broker: MosquittoBroker, devices: list[str], samples: int, channels: int, batch: int = 1,
                rate: float = 0.0, publishers: int = 2, extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """``publishers`` processes, devices split between them, each publishing its devices' samples."""
    procs = []
    for k in range(publishers):
        part = devices[k::publishers]
        if not part:
            continue
        args = {"host": broker.host, "port": broker.port, "devices": part, "samples": samples, "channels": channels,
                "batch": batch, "topic": TOPIC, "rate": rate / publishers if rate else 0.0, **(extra or {})}
        if extra and extra.get("times_out"):
            args["times_out"] = f"{extra['times_out']}.{k}.npz"
        procs.append(start_role("publish", args))
    return [finish(p) for p in procs]


def expected_windows(samples: int, window: int, hop: int) -> int:
    """Windows one device yields from ``samples`` consecutive samples."""
    return 0 if samples < window else (samples - window) // hop + 1


def daemon_config(broker: MosquittoBroker, model: str, client_id: str, **over: Any) -> dict[str, Any]:
    return {"path": model, "broker": broker.url, "client_id": client_id, "instance": client_id, "provider": "cpu",
            "stats_interval_s": 0, "watch_interval_s": 0, "queue_windows": 1_000_000, "max_devices": 100_000,
            "log_level": "WARNING", **over}


def drain_run(broker: MosquittoBroker, consumer: str, model: str, devices: int, samples: int, channels: int,
              batch: int, window: int, hop: int, tag: str) -> dict[str, Any]:
    """Queue ``devices x samples`` for a fresh session, then let ``consumer`` (bare|bare_tuned|daemon|
    daemon_no_checks: the daemon with ``health.sensor_checks`` off) drain them."""
    cid = f"bench-{consumer}-{tag}"
    prime_session(broker.host, broker.port, cid)
    n_msgs = devices * -(-samples // batch)
    dropped0 = sys_value(broker) or 0
    publish_all(broker, device_names(devices), samples, channels, batch)
    if consumer in ("bare", "bare_tuned"):
        res = run_role("bare", {"host": broker.host, "port": broker.port, "client_id": cid, "expect": n_msgs,
                                "buffered": consumer == "bare_tuned"})
        res["msg_rate"] = res.pop("rate")
        res["sample_rate"] = round(res["msg_rate"] * batch, 1) if res["msg_rate"] else None
        res["complete"] = res["received"] == n_msgs
    else:
        exp_w = devices * expected_windows(samples, window, hop)
        over = {"sensor_checks": False} if consumer == "daemon_no_checks" else {}
        res = run_role("daemon", {"config": daemon_config(broker, model, cid, **over), "expect_messages": n_msgs,
                                  "expect_windows": exp_w})
        s = res["stats"]
        res.update(expected_windows=exp_w, windows_scored=s["windows_scored"], drops=s["drops"])
        res["windows_lost"] = exp_w - s["windows_scored"]
        del res["stats"]
    res["broker_dropped"] = (sys_value(broker) or 0) - dropped0
    res["messages"] = n_msgs
    return res


def with_health_limits(model: str, out: Path, period_s: float = 1.0) -> str:
    """A copy of ``model`` at ``out`` with sensor-health limits learned (as ``fit`` does) from 20,000 normal rows
    of the flood's own generator (another seed), for a model that stores none (``models/demo.onnx`` predates
    them): the checks then run in full (range, stuck, fill) on a stream that stays healthy. Needs ``onnx``."""
    import onnx

    from edge_runtime.pipeline.health import learn_limits
    from edge_runtime.tools.synthetic import normal_series
    from trainer.export import read_metadata, write_metadata

    meta = read_metadata(Path(model))
    if meta.health:
        return model
    meta.health = learn_limits(normal_series(20_000, len(meta.channels), 7), period_s, meta.channels)
    proto = onnx.load(model)
    write_metadata(proto, meta)
    onnx.save(proto, str(out))
    return str(out)


def bench_ingest(model: str, devices: int = 100, single_samples: int = 600, batch_samples: int = 5000,
                 batch_size: int = 100, repeats: int = 3) -> dict[str, Any]:
    """Drain rates of the bare subscribers and the daemon on single-sample and batched JSON (medians of repeats).

    The consumers take turns, in a rotating order each repeat, on the same broker. The daemon runs twice, with
    its sensor-health checks on (the default) and off, for the checks' cost (a model with stored health limits
    measures the whole cost: one without has no range or stuck check to run).
    """
    tmp = tempfile.TemporaryDirectory(prefix="edgewatch-bench-ingest-")
    learned = with_health_limits(model, Path(tmp.name) / "model.onnx")
    m = load_model(learned, "cpu", 1)
    w, hop, c = m.window, m.metadata.hop, m.n_channels
    out: dict[str, Any] = {"devices": devices, "window": w, "hop": hop, "channels": c, "repeats": repeats,
                           "health_limits": "the model's" if learned == model else
                           "learned from the flood generator's normal data (the model stores none)",
                           "operating_states": bool(m.metadata.states)}
    model = learned
    with tmp, bench_broker() as broker:
        for fmt, samples, batch in (("single", single_samples, 1), ("batch", batch_samples, batch_size)):
            runs: dict[str, list[dict[str, Any]]] = {"bare": [], "bare_tuned": [], "daemon": [],
                                                     "daemon_no_checks": []}
            order = list(runs)
            for r in range(repeats):
                k = r % len(order)
                for consumer in order[k:] + order[:k]:
                    runs[consumer].append(drain_run(broker, consumer, model, devices, samples, c, batch, w, hop,
                                                    f"{fmt}{r}"))
            bare_r = [x["msg_rate"] or 0.0 for x in runs["bare"]]
            tuned_r = [x["msg_rate"] or 0.0 for x in runs["bare_tuned"]]
            dmn_r = [x["msg_rate"] or 0.0 for x in runs["daemon"]]
            off_r = [x["msg_rate"] or 0.0 for x in runs["daemon_no_checks"]]
            out[fmt] = {
                "samples_per_device": samples, "samples_per_message": batch,
                "messages": devices * -(-samples // batch),
                "bare_msg_rate": summary(bare_r), "bare_tuned_msg_rate": summary(tuned_r),
                "daemon_msg_rate": summary(dmn_r),
                "daemon_sample_rate": summary([x["sample_rate"] or 0.0 for x in runs["daemon"]]),
                "ratio_daemon_vs_bare": summary(np.asarray(dmn_r) / np.maximum(bare_r, 1e-9), 3),
                "ratio_daemon_vs_bare_tuned": summary(np.asarray(dmn_r) / np.maximum(tuned_r, 1e-9), 3),
                "ratio_bare_tuned_vs_bare": summary(np.asarray(tuned_r) / np.maximum(bare_r, 1e-9), 3),
                "daemon_no_checks_msg_rate": summary(off_r),
                "ratio_daemon_no_checks_vs_bare": summary(np.asarray(off_r) / np.maximum(bare_r, 1e-9), 3),
                "ratio_checks_on_vs_off": summary(np.asarray(dmn_r) / np.maximum(off_r, 1e-9), 3),
                "cpu_us_per_message": summary([x.get("cpu_us_per_message") or 0.0 for x in runs["daemon"]], 2),
                "cpu_us_per_message_no_checks": summary(
                    [x.get("cpu_us_per_message") or 0.0 for x in runs["daemon_no_checks"]], 2),
                "windows_lost": int(sum(x["windows_lost"] for x in runs["daemon"])),
                "daemon_drops": [x["drops"] for x in runs["daemon"]],
                "broker_dropped": int(sum(x["broker_dropped"] for v in runs.values() for x in v)),
                "complete": all(x["complete"] for v in runs.values() for x in v),
                "runs": runs,
            }
    return out


def _latencies(send_files: list[Path], rec: Path, period: float) -> dict[str, np.ndarray]:
    """Receipt time minus publish time of each window's completing sample, ms, per kind (score, alert)."""
    send: dict[str, np.ndarray] = {}
    for f in send_files:
        z = np.load(f)
        for di, d in enumerate(z["devices"].tolist()):
            send[d] = z["send"][:, di]
    r = np.load(rec)
    idx = np.rint((r["window_end"] - T0) / period).astype(np.int64)
    lat = np.array([r["t"][k] - send[d][i] if d in send and 0 <= i < len(send[d]) else np.nan
                    for k, (d, i) in enumerate(zip(r["device"].tolist(), idx.tolist(), strict=True))]) * 1000.0
    return {"score": lat[(r["kind"] == 0) & np.isfinite(lat)], "alert": lat[(r["kind"] == 1) & np.isfinite(lat)]}


def latency_run(broker: MosquittoBroker, model: str, rate: float, devices: int, seconds: float, window: int,
                hop: int, channels: int, tag: str, consumer: str = "daemon", **over: Any) -> dict[str, Any]:
    """Live: ``consumer`` (the daemon, or the no-model ``relay`` baseline) + receiver up, then publishers at
    ``rate`` msg/s for ``seconds``; per-window latencies."""
    samples = max(window + hop, int(rate * seconds / devices))
    names = device_names(devices)
    anomalous = names[:: max(1, devices // 10)]
    cid = f"bench-lat-{tag}"
    with tempfile.TemporaryDirectory(prefix="edgewatch-lat-") as tmp:
        rec = Path(tmp) / "rec.npz"
        exp_w = devices * expected_windows(samples, window, hop)
        recv = start_role("receiver", {"host": broker.host, "port": broker.port, "out": str(rec), "expect": exp_w,
                                       "timeout": seconds * 3 + 30})
        assert recv.stdout is not None
        recv.stdout.readline()  # READY
        if consumer == "relay":
            dmn = start_role("relay", {"host": broker.host, "port": broker.port, "client_id": cid, "window": window,
                                       "hop": hop, "expect_messages": devices * samples, "timeout": seconds * 3 + 30})
        else:
            # a clean session: a persistent one would outlive the run and queue (then drop) later runs' data
            cfg = daemon_config(broker, model, cid, publish_scores=True, persistent_session=False, **over)
            dmn = start_role("daemon", {"config": cfg, "expect_messages": devices * samples, "expect_windows": exp_w,
                                        "timeout": seconds * 3 + 30, "poll_s": 0.1})
        time.sleep(1.5)  # the daemon loads and subscribes
        dropped0 = sys_value(broker) or 0
        pubs = publish_all(broker, names, samples, channels, rate=rate,
                           extra={"times_out": str(Path(tmp) / "send"), "anomalous": anomalous})
        d = finish(dmn)
        finish(recv)
        lat = _latencies([Path(tmp) / f"send.{k}.npz" for k in range(2)], rec, 1.0) if rec.exists() else {}
    sent_rate = sum(p["messages"] for p in pubs) / max(p["seconds"] for p in pubs)
    score = lat.get("score", np.zeros(0))
    st = d["stats"]
    return {"consumer": consumer, "target_rate": round(rate, 1), "achieved_publish_rate": round(sent_rate, 1),
            "devices": devices, "windows_expected": exp_w, "windows_scored": st.get("windows_scored", int(score.size)),
            "drops": st.get("drops", {}), "broker_dropped": (sys_value(broker) or 0) - dropped0,
            "scores_received": int(score.size), "score_ms": percentiles(score),
            "alert_ms": percentiles(lat.get("alert", np.zeros(0))), "alerts_received": int(lat.get("alert", np.zeros(0)).size),
            "batch_size_mean": st.get("batch_size_mean")}


KEEPS_UP_P99_MS = 250.0  # a backlog grows through a run, so its p99 reaches seconds; a daemon that keeps up stays far below


def keeps_up(run: dict[str, Any]) -> bool:
    """A live run the daemon kept up with: publishers reached >= 95 % of the target rate, every window
    scored and received, nothing dropped (daemon or broker), and per-window p99 latency <= 250 ms."""
    p99 = run["score_ms"]["p99"]
    return (run["achieved_publish_rate"] >= 0.95 * run["target_rate"] and run["windows_scored"] == run["windows_expected"]
            and run["scores_received"] == run["windows_expected"] and not run["drops"] and not run["broker_dropped"]
            and p99 is not None and p99 <= KEEPS_UP_P99_MS)


def find_sustainable_rate(broker: MosquittoBroker, model: str, devices: int, window: int, hop: int, channels: int,
                          hint: float = 0.0, seconds: float = 4.0, steps: int = 5) -> tuple[float, list[dict[str, Any]]]:
    """The highest published single-sample rate the daemon keeps up with (:func:`keeps_up`) under the
    latency runs' live conditions (publishers, broker, daemon and receiver all running): a bisection
    over ``steps`` short runs in [hint / 4, 1.25 x hint] (hint: 20,000 msg/s if not given)."""
    hi = 1.25 * (hint or 20_000.0)
    lo = hi / 5.0
    best, trials = 0.0, []
    for k in range(steps):
        rate = (lo + hi) / 2.0 if k else hi
        run = latency_run(broker, model, rate, devices, seconds, window, hop, channels, f"search{k}")
        ok = keeps_up(run)
        trials.append({"target_rate": round(rate, 1), "achieved_publish_rate": run["achieved_publish_rate"],
                       "score_p99_ms": run["score_ms"]["p99"], "windows_lost": run["windows_expected"] - run["windows_scored"],
                       "drops": run["drops"], "broker_dropped": run["broker_dropped"], "keeps_up": ok})
        if ok:
            best = max(best, rate)
            if k == 0:
                break  # the top of the range already keeps up
            lo = rate
        else:
            hi = rate
    return (best or lo), trials


def bench_latency(model: str, sustainable_rate: float | None = None, loads: tuple[float, ...] = (0.5, 0.9),
                  devices: int = 100, seconds: float = 10.0, repeats: int = 3, hint: float = 0.0,
                  **over: Any) -> dict[str, Any]:
    """Latency percentiles at fractions of the sustainable single-sample rate. Unless ``sustainable_rate``
    is given, it is searched for live (:func:`find_sustainable_rate`, ``hint``: e.g. the ingest drain rate)."""
    m = load_model(model, "cpu", 1)
    w, hop, c = m.window, m.metadata.hop, m.n_channels
    out: dict[str, Any] = {"devices": devices, "seconds": seconds, "repeats": repeats, "max_wait_ms": 5.0,
                           "batching": over.get("batching", "inline")}
    with bench_broker() as broker:
        if not sustainable_rate:
            sustainable_rate, trials = find_sustainable_rate(broker, model, devices, w, hop, c, hint)
            out["sustainable_rate_source"] = (
                "searched live: the highest published rate (bisection, 4 s runs) at which publishers reach >= 95 % of "
                "it, every window is scored and received, nothing is dropped, and per-window p99 <= 250 ms")
            out["search"] = trials
        else:
            out["sustainable_rate_source"] = "given on the command line"
        if hint:
            out["drain_rate"] = round(hint, 1)
        out["sustainable_rate"] = round(sustainable_rate, 1)
        for load in loads:
            runs: list[dict[str, Any]] = []
            relays: list[dict[str, Any]] = []
            for r in range(repeats):  # daemon and relay baseline take turns at the same rate
                for consumer in ("daemon", "relay") if r % 2 == 0 else ("relay", "daemon"):
                    (runs if consumer == "daemon" else relays).append(latency_run(
                        broker, model, load * sustainable_rate, devices, seconds, w, hop, c, f"{load}-{consumer}-{r}",
                        consumer, **(over if consumer == "daemon" else {})))
            agg: dict[str, Any] = {"runs": runs, "relay_runs": relays}
            for key in ("score_ms", "alert_ms"):
                for q in ("p50", "p99", "p99.9"):
                    vals = [x[key][q] for x in runs if x[key][q] is not None]
                    agg[f"{key}_{q}"] = summary(vals, 2)
            for q in ("p50", "p99", "p99.9"):
                agg[f"relay_ms_{q}"] = summary([x["score_ms"][q] for x in relays if x["score_ms"][q] is not None], 2)
                added = [x["score_ms"][q] - y["score_ms"][q] for x, y in zip(runs, relays, strict=True)
                         if x["score_ms"][q] is not None and y["score_ms"][q] is not None]
                agg[f"added_ms_{q}"] = summary(added, 2)
            agg["windows_lost"] = int(sum(x["windows_expected"] - x["windows_scored"] for x in runs))
            agg["relay_windows_lost"] = int(sum(x["windows_expected"] - x["scores_received"] for x in relays))
            agg["broker_dropped"] = int(sum(x["broker_dropped"] for x in runs + relays))
            agg["achieved_publish_rate"] = summary([x["achieved_publish_rate"] for x in runs])
            agg["batch_size_mean"] = summary([x["batch_size_mean"] or 0.0 for x in runs], 2)
            out[f"load_{int(load * 100)}"] = agg
    return out


def bench_footprint(model: str, sustainable_rate: float | None = None, devices: int = 1000, minutes: float = 1.0,
                    idle_s: float = 10.0, repeats: int = 3) -> dict[str, Any]:
    """Start-up time to 'online', RSS after start, idle CPU, and RSS over ``minutes`` at 90% load."""
    m = load_model(model, "cpu", 1)
    out: dict[str, Any] = {"devices": devices, "minutes": minutes, "idle_s": idle_s}
    with bench_broker() as broker:
        starts, rss0, idle = [], [], []
        for r in range(repeats):
            inst = f"bench-fp-{r}"
            online: list[float] = []
            watch = make_client(parse_broker_url(broker.url), ClientOptions(buffered=False))
            watch.on_message = lambda c, u, msg, online=online: online.append(time.perf_counter()) if b'"online"' in msg.payload else None
            watch.connect(broker.host, broker.port)
            watch.subscribe(f"edgewatch/{inst}/status", 1)
            watch.loop_start()
            time.sleep(0.3)
            t0 = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-m", "edge_runtime.cli", "run", "--model", model, "--broker",
                                     broker.url, "--instance", inst, "--provider", "cpu", "--log-level", "WARNING"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            while not online and time.perf_counter() - t0 < 30 and proc.poll() is None:
                time.sleep(0.002)
            if not online:
                proc.kill()
                raise RuntimeError(f"daemon did not come online: {proc.communicate()[1].decode()[-500:]}")
            starts.append(online[0] - t0)
            time.sleep(1.0)
            rss0.append(rss_mb(proc.pid))
            c0, w0 = cpu_seconds(proc.pid), time.perf_counter()
            time.sleep(idle_s if r == 0 else min(idle_s, 3.0))
            idle.append((cpu_seconds(proc.pid) - c0) / (time.perf_counter() - w0) * 100.0)
            proc.terminate()
            proc.wait(10)
            watch.loop_stop()
            watch.disconnect()
        out["startup_to_online_s"] = summary(starts, 3)
        out["rss_after_start_mb"] = summary(rss0, 1)
        out["idle_cpu_pct_of_core"] = summary(idle, 2)
        out["startup_note"] = "process spawn (python -m edge_runtime.cli run) to receipt of the retained 'online' status, published right after SUBSCRIBE"
        if minutes > 0:
            out["load"] = _load_run(broker, model, m, sustainable_rate, devices, minutes)
    return out


def _load_run(broker: MosquittoBroker, model: str, m: Any, sustainable_rate: float | None, devices: int,
              minutes: float) -> dict[str, Any]:
    rate = 0.9 * (sustainable_rate or 10_000.0)
    samples = max(m.window + m.metadata.hop, int(rate * minutes * 60 / devices))
    proc = subprocess.Popen([sys.executable, "-m", "edge_runtime.cli", "run", "--model", model, "--broker", broker.url,
                             "--instance", "bench-load", "--provider", "cpu", "--log-level", "WARNING",
                             "--stats-interval-s", "5", "--watch-interval-s", "0", "--max-devices", str(devices * 2)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    dropped0 = sys_value(broker) or 0
    pubs = start_role("publish", {"host": broker.host, "port": broker.port, "devices": device_names(devices),
                                  "samples": samples, "channels": m.n_channels, "topic": TOPIC, "rate": rate,
                                  "max_seconds": minutes * 60})
    trace: list[tuple[float, float]] = []
    t0 = time.perf_counter()
    while pubs.poll() is None:
        trace.append((round(time.perf_counter() - t0, 1), round(rss_mb(proc.pid), 1)))
        time.sleep(5.0)
    pub = finish(pubs)
    time.sleep(2.0)
    trace.append((round(time.perf_counter() - t0, 1), round(rss_mb(proc.pid), 1)))
    proc.terminate()
    proc.wait(15)
    rss = np.array([r for _, r in trace])
    warm = rss[min(2, len(rss) - 1)]  # after the first ~10 s, every device's buffer exists
    return {"target_rate": round(rate, 1), "achieved_publish_rate": pub["rate"], "messages": pub["messages"],
            "rss_trace_mb": trace, "rss_start_mb": float(rss[0]), "rss_after_10s_mb": float(warm),
            "rss_end_mb": float(rss[-1]), "rss_max_mb": float(rss.max()),
            "growth_pct_after_10s": round(float((rss[-1] - warm) / warm * 100.0), 2),
            "broker_dropped": (sys_value(broker) or 0) - dropped0}
