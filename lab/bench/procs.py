"""The benchmark's child processes: ``python -m lab.bench.procs ROLE 'JSON args'``.

Roles: ``publish`` (N devices x S samples, single-sample or batched JSON, flood or paced),
``bare`` (the baseline: a paho subscriber that only counts and ``json.loads`` each message),
``relay`` (the latency baseline: forwards the sample that completes each window at once, no model),
``daemon`` (the real :class:`~edge_runtime.service.daemon.Daemon`, timed until every window is scored) and
``receiver`` (records when each score/alert arrives). Each prints one JSON line on stdout at the end.
Separate processes, so each has its own interpreter lock, like the real deployment.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

import numpy as np
import paho.mqtt.client as paho

from edge_runtime.service.mqtt import BrokerAddress, ClientOptions, make_client
from edge_runtime.service.paho_buffered import unacknowledged

LOCAL = BrokerAddress("127.0.0.1", 1883, False)  # make_client only reads tls from it; connect() names the port
T0 = 1_700_000_000.0  # epoch of sample 0; sample i of a device has ts T0 + i * period


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size of a process in MB (Linux /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def series_rows(n: int, n_channels: int, seed: int, anomalous: bool) -> list[str]:
    """``n`` rows of synthetic sensor values as ``"v1,v2,..."`` strings (anomalies injected if asked)."""
    from edge_runtime.tools.synthetic import labelled_series, normal_series, random_anomalies

    if anomalous and n >= 400:
        x = labelled_series(n, n_channels, random_anomalies(n, n_channels, max(1, n // 400), seed=seed), seed)[0]
    else:
        x = normal_series(n, n_channels, seed)
    return [",".join(f"{v:.5g}" for v in row) for row in x.tolist()]


def _client(client_id: str = "", clean: bool = True, buffered: bool = False) -> paho.Client:
    """A paho client at paho's own defaults (20 in flight); ``buffered``: with edgewatch's read-buffered socket
    (:mod:`edge_runtime.service.paho_buffered`), else paho's stock client."""
    return make_client(LOCAL, ClientOptions(client_id=client_id, persistent=not clean, buffered=buffered, max_inflight=20))


def publish(a: dict[str, Any]) -> dict[str, Any]:
    """Publish ``samples`` per device for ``devices``, interleaved, QoS 1; paced at ``rate`` msg/s if > 0.

    One thread, no paho network thread: each ``publish`` writes to the socket at once from this thread,
    and the waits between messages run paho's loop (reading PUBACKs). So a recorded send time is when
    the message left, not when a second thread got the interpreter lock to send it (with paho's
    background thread that hand-off delayed samples by up to the 5 ms switch interval, in bursts).
    """
    devices: list[str] = a["devices"]
    n, c, batch, period = int(a["samples"]), int(a["channels"]), int(a.get("batch", 1)), float(a.get("period", 1.0))
    anomalous = set(a.get("anomalous", []))
    base = series_rows(n, c, 1, False)
    bad = series_rows(n, c, 2, True) if anomalous else base
    topics = [a["topic"].format(device=d) for d in devices]
    rows = [bad if d in anomalous else base for d in devices]
    steps = list(range(0, n, batch))
    send = np.zeros((len(steps), len(devices)), dtype=np.float64) if a.get("times_out") else None
    client = _client()
    client.max_inflight_messages_set(int(a.get("inflight", 100)))
    client.max_queued_messages_set(0)
    client.connect(a["host"], int(a["port"]))
    rate = float(a.get("rate", 0.0))
    start_at = float(a.get("start_at", 0.0))
    if start_at:
        time.sleep(max(0.0, start_at - time.time()))
    t_start = time.time()
    j = 0
    stop_at = t_start + float(a.get("max_seconds", 0) or 1e18)
    loop = client.loop
    for si, i in enumerate(steps):
        if time.time() > stop_at:  # paced runs end on time even when the machine cannot keep the pace
            break
        for di, topic in enumerate(topics):
            r = rows[di]
            if batch == 1:
                payload = f'{{"ts":{T0 + i * period:.3f},"values":[{r[i]}]}}'
            else:
                k = min(batch, n - i)
                ts = ",".join(f"{T0 + (i + q) * period:.3f}" for q in range(k))
                vals = "],[".join(r[i : i + k])
                payload = f'{{"ts":[{ts}],"values":[[{vals}]]}}'
            if rate:
                due = t_start + j / rate
                while (wait := due - time.time()) > 0.0002:
                    loop(wait)  # read acks while waiting for this message's time
            if unacknowledged(client) > 20_000:  # back-pressure: paho's 16-bit message ids would collide
                while unacknowledged(client) > 10_000:
                    loop(0.002)
            if send is not None:
                send[si, di] = time.time()
            client.publish(topic, payload, qos=1)  # written now: no network thread
            j += 1
            if not j & 15:
                loop(0.0)  # acks in, queued messages out
    deadline = time.monotonic() + 60
    while unacknowledged(client) and time.monotonic() < deadline:  # every QoS 1 publish acknowledged
        loop(0.01)
    el = time.time() - t_start
    client.disconnect()
    if send is not None:
        np.savez(a["times_out"], send=send, devices=np.array(devices), batch=batch)
    return {"messages": j, "seconds": round(el, 3), "rate": round(j / el, 1) if el else None}


def bare(a: dict[str, Any]) -> dict[str, Any]:
    """The baseline consumer: QoS 1 persistent session, ``json.loads`` per message, count."""
    expect = int(a["expect"])
    state = {"n": 0, "first": 0.0, "last": 0.0}
    done = threading.Event()
    loads = json.loads

    def on_message(client, userdata, msg) -> None:
        loads(msg.payload)
        state["n"] += 1
        if state["n"] == 1:
            state["first"] = time.perf_counter()
        if state["n"] >= expect:
            state["last"] = time.perf_counter()
            done.set()

    client = _client(a["client_id"], clean=False, buffered=bool(a.get("buffered")))
    client.on_message = on_message
    client.on_connect = lambda cl, *x: cl.subscribe(a.get("filter", "sensors/+/data"), 1)
    client.connect(a["host"], int(a["port"]))
    client.loop_start()
    done.wait(float(a.get("timeout", 120)))
    client.disconnect()
    client.loop_stop()
    el = (state["last"] or time.perf_counter()) - state["first"] if state["first"] else 0.0
    return {"received": state["n"], "seconds": round(el, 4), "rate": round(state["n"] / el, 1) if el else None}


def daemon(a: dict[str, Any]) -> dict[str, Any]:
    """Run the real daemon until ``expect_messages`` are in and ``expect_windows`` scored (or stalled)."""
    t_proc = time.perf_counter()
    from edge_runtime.config import build_config
    from edge_runtime.service.daemon import Daemon

    cfg = build_config(None, a["config"])
    d = Daemon(cfg)
    st = d.stats.counts
    d.start()
    d.link.connected.wait(30)
    t_conn = time.perf_counter()
    exp_m, exp_w = int(a.get("expect_messages", 0)), int(a.get("expect_windows", 0))
    deadline = time.perf_counter() + float(a.get("timeout", 120))
    first = done = cpu_first = cpu_last = 0.0
    msgs_first = 0
    last_change, last_seen = time.perf_counter(), (-1, -1)
    rss = [rss_mb()]
    poll = float(a.get("poll_s", 0.005))  # latency runs poll slowly: this thread needs the interpreter lock to look
    while time.perf_counter() < deadline:
        time.sleep(poll)
        now = time.perf_counter()
        if not first and st["messages"]:
            first, cpu_first, msgs_first = now, time.process_time(), st["messages"]
        seen = (st["messages"], st["windows_scored"])
        if seen != last_seen:
            last_seen, last_change, cpu_last = seen, now, time.process_time()
        if exp_m and seen[0] >= exp_m and seen[1] >= exp_w:
            done = now
            break
        if first and now - last_change > float(a.get("stall_s", 3.0)):
            break
    rss.append(rss_mb())
    snap = d.stats_doc()
    d.stop()
    el = (done or last_change) - first if first else 0.0
    return {"stats": snap, "seconds": round(el, 4), "complete": bool(done), "startup_s": round(t_conn - t_proc, 3),
            "msg_rate": round(snap["messages"] / el, 1) if el else None,
            "sample_rate": round(snap["samples"] / el, 1) if el else None, "rss_mb": rss,
            # the process's CPU time per message over the drain (all its threads): steadier than a rate on a busy box
            "cpu_us_per_message": round(1e6 * (cpu_last - cpu_first) / (snap["messages"] - msgs_first), 2)
            if snap["messages"] > msgs_first else None}


def relay(a: dict[str, Any]) -> dict[str, Any]:
    """The latency baseline: on edgewatch's MQTT client, ``json.loads`` each sample and, for the sample that
    completes a window (every ``hop`` from sample ``window - 1``), publish ``{"device", "window_end"}`` to
    ``scores/{device}`` at once, QoS 0 like the daemon's scores. No windows, no model: what the MQTT path
    and the machine cost, so the daemon's own share of its latency shows."""
    window, hop, expect = int(a["window"]), int(a["hop"]), int(a["expect_messages"])
    n = [0]
    done = threading.Event()
    loads, dumps = json.loads, json.dumps

    def on_message(client, userdata, msg) -> None:
        ts = loads(msg.payload)["ts"]
        i = round(ts - T0)  # period 1 s: sample index
        if i >= window - 1 and (i - window + 1) % hop == 0:
            device = msg.topic.split("/")[1]
            client.publish(f"scores/{device}", dumps({"device": device, "window_end": [ts]}), qos=0)
        n[0] += 1
        if n[0] >= expect:
            done.set()

    client = _client(a["client_id"], clean=True, buffered=True)
    client.on_message = on_message
    ready = threading.Event()
    client.on_connect = lambda cl, *x: cl.subscribe(a.get("filter", "sensors/+/data"), 1)
    client.on_subscribe = lambda *x: ready.set()
    client.connect(a["host"], int(a["port"]))
    client.loop_start()
    ready.wait(10)
    done.wait(float(a.get("timeout", 120)))
    time.sleep(0.2)  # the last forwards leave
    client.disconnect()
    client.loop_stop()
    return {"stats": {"messages": n[0]}}


def receiver(a: dict[str, Any]) -> dict[str, Any]:
    """Record (device, window_end ts, receipt time, kind) of every score and alert until quiet or ``expect``."""
    recs: list[tuple[str, float, float, int]] = []
    expect = int(a.get("expect", 0))
    n_scores = [0]  # a running count: re-counting recs per message made the receiver O(n^2) and late
    done = threading.Event()
    ready = threading.Event()

    def on_message(client, userdata, msg) -> None:
        t = time.time()
        doc = json.loads(msg.payload)
        kind = 0 if msg.topic.startswith("scores/") else 1
        ends = doc["window_end"] if isinstance(doc.get("window_end"), list) else [doc.get("window_end")]
        for e in ends:
            recs.append((doc["device"], float(e), t, kind))
        if kind == 0:
            n_scores[0] += len(ends)
            if expect and n_scores[0] >= expect:
                done.set()

    client = _client()
    client.on_message = on_message
    client.on_connect = lambda cl, *x: cl.subscribe([("scores/+", 0), ("alerts/+", 1)])
    client.on_subscribe = lambda *x: ready.set()
    client.connect(a["host"], int(a["port"]))
    client.loop_start()
    ready.wait(10)
    print("READY", flush=True)
    done.wait(float(a.get("timeout", 60)))
    client.disconnect()
    client.loop_stop()
    if recs:
        dev, end, t, kind = zip(*recs, strict=True)
        np.savez(a["out"], device=np.array(dev), window_end=np.array(end), t=np.array(t), kind=np.array(kind))
    return {"received": len(recs)}


ROLES = {"publish": publish, "bare": bare, "relay": relay, "daemon": daemon, "receiver": receiver}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ROLES:
        print(f"usage: python -m lab.bench.procs {{{'|'.join(ROLES)}}} 'JSON'", file=sys.stderr)
        return 2
    out = ROLES[argv[0]](json.loads(argv[1]))
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
