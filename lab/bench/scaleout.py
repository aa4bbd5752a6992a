"""Scale-out: the same flood through 1, 2, 4 ... workers of a NATS consumer group, and through one MQTT
daemon for reference (``edgewatch-lab bench scale-out``).

Drain rates, as ``bench ingest`` measures MQTT: for each worker count a fresh group (its own stream, 16
partitions by default) on a private nats-server; the workers (``edgewatch run --source nats``
subprocesses) start and share the partitions, are paused (SIGSTOP; the group's timeouts are long, so
they keep their partitions), the flood is stored in the stream, the workers resume (SIGCONT) and the
clock runs until every partition's consumer has nothing pending and nothing unacknowledged (a batch is
acknowledged only after its windows are scored). Reported: messages/s, samples/s, and the ratio to one
worker. The MQTT reference is ``bench ingest``'s daemon drain of the same messages on a private Mosquitto.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edge_runtime.service.model import load_model
from edge_runtime.tools.localnats import NatsServer
from lab.bench.common import summary
from lab.bench.ingest import device_names, expected_windows
from lab.bench.procs import cpu_seconds

PAUSED_TTL_S = 120.0  # the bench group's pin and member timeouts: workers paused while the flood is stored


def _payloads(devices: list[str], samples: int, channels: int, batch: int) -> list[tuple[str, bytes]]:
    """(subject, JSON) per message: ``batch`` samples each (1: the single-sample format), devices interleaved."""
    from edge_runtime.tools.synthetic import normal_series

    rows = normal_series(samples, channels, 0).round(5).tolist()
    out = []
    for i in range(0, samples, batch):
        part = rows[i : i + batch]
        if batch == 1:
            body = b'{"ts":%.3f,"values":[%s]}' % (1.7e9 + i, ",".join(f"{v:g}" for v in part[0]).encode())
        else:
            ts = ",".join(f"{1.7e9 + i + j:.3f}" for j in range(len(part)))
            vals = ",".join("[" + ",".join(f"{v:g}" for v in r) + "]" for r in part)
            body = f'{{"ts":[{ts}],"values":[{vals}]}}'.encode()
        out += [(f"sensors.{d}.data", body) for d in devices]
    return out


async def _store(url: str, stream: str, msgs: list[tuple[str, bytes]]) -> None:
    """Publish ``msgs`` (core NATS, flushed in chunks) and wait until the stream holds them all."""
    import nats

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for k in range(0, len(msgs), 2000):
            for subject, body in msgs[k : k + 2000]:
                await nc.publish(subject, body)
            await nc.flush()
            while (await js.stream_info(stream)).state.messages < min(len(msgs), k + 2000) - 20_000:
                await asyncio.sleep(0.01)  # keep the server's backlog bounded
        deadline = time.monotonic() + 120
        while (await js.stream_info(stream)).state.messages < len(msgs):
            if time.monotonic() > deadline:
                raise RuntimeError("the stream did not store every message (server limits?)")
            await asyncio.sleep(0.05)
    finally:
        await nc.close()


async def _backlog(url: str, group: str) -> tuple[int, int, int]:
    """(members, pending + unacknowledged over every partition, partitions pinned)."""
    import nats

    from edge_runtime.integrations.nats import admin

    nc = await nats.connect(url)
    try:
        g = await admin.load_group(nc, group)
        pins = await admin.pinned(nc, g)
        members = await admin.members(nc, g)
        return (len(members), sum(p["pending"] + p["ack_pending"] for p in pins.values()),
                sum(p["pinned"] for p in pins.values()))
    finally:
        await nc.close()


async def _drained(url: str, cfg: Any, t0: float) -> float:
    """Seconds from ``t0`` until no partition has anything pending or unacknowledged (one connection, the
    consumers' info every 50 ms: the poll costs the workers little CPU)."""
    import nats

    from edge_runtime.integrations.nats import admin

    nc = await nats.connect(url)
    try:
        while True:
            left = 0
            for k in range(cfg.partitions):
                info = await admin.api(nc, f"CONSUMER.INFO.{cfg.stream}.{cfg.consumer(k)}")
                left += int(info.get("num_pending", 0)) + int(info.get("num_ack_pending", 0))
            if left == 0:
                return time.perf_counter() - t0
            if time.perf_counter() - t0 > 600:
                raise RuntimeError(f"{left} message(s) still not acknowledged after 600 s")
            await asyncio.sleep(0.05)
    finally:
        await nc.close()


def _worker(url: str, model: str, group: str, name: str, log: Path) -> subprocess.Popen:
    args = [sys.executable, "-m", "edge_runtime.cli", "run", "--model", model, "--source", url, "--nats-group",
            group, "--nats-worker", name, "--provider", "cpu", "--stats-interval-s", "0", "--watch-interval-s", "0",
            "--max-devices", "100000", "--log-level", "WARNING"]
    with open(log, "ab") as fh:
        return subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, "EDGEWATCH_CONFIG": ""})


def group_run(srv: NatsServer, model: str, workers: int, msgs: list[tuple[str, bytes]], partitions: int,
              tag: str, workdir: Path) -> dict[str, Any]:
    """One drain of ``msgs`` by ``workers`` workers of a fresh group; its rate and timings."""
    from edge_runtime.integrations.nats import admin
    from edge_runtime.integrations.nats.groups import GroupConfig

    name = f"bench{tag}"
    cfg = GroupConfig(name, f"BENCH_{tag}", "sensors.*.data", partitions=partitions, pin_ttl_s=PAUSED_TTL_S,
                      member_ttl_s=PAUSED_TTL_S, ack_wait_s=60.0)

    async def create() -> None:
        import nats

        nc = await nats.connect(srv.url)
        try:
            await admin.create_group(nc, cfg)
        finally:
            await nc.close()

    asyncio.run(create())
    procs = [_worker(srv.url, model, name, f"w{k}", workdir / f"{name}-w{k}.log") for k in range(workers)]
    try:
        deadline = time.monotonic() + 90
        while True:  # every worker a member (the partitions are pinned by the first messages)
            m, _, _ = asyncio.run(_backlog(srv.url, name))
            if m == workers:
                break
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"the {workers} worker(s) did not start (see {workdir})")
            time.sleep(0.3)
        time.sleep(3.0)  # two more membership polls: every worker pulls only its own partitions
        for p in procs:
            p.send_signal(signal.SIGSTOP)
        asyncio.run(_store(srv.url, cfg.stream, msgs))
        server_pid = srv.proc.pid if srv.proc is not None else 0
        cpu0 = [cpu_seconds(p.pid) for p in procs], cpu_seconds(server_pid)
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        for p in procs:
            p.send_signal(signal.SIGCONT)
        seconds = asyncio.run(_drained(srv.url, cfg, t0))
        workers_cpu = sum(cpu_seconds(p.pid) - c for p, c in zip(procs, cpu0[0], strict=True))
        server_cpu = cpu_seconds(server_pid) - cpu0[1]
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()

        async def delete() -> None:  # the next group's stream takes the same subjects
            import nats

            nc = await nats.connect(srv.url)
            try:
                await admin.delete_group(nc, name)
            finally:
                await nc.close()

        asyncio.run(delete())
    return {"workers": workers, "messages": len(msgs), "seconds": round(seconds, 3),
            "msg_rate": round(len(msgs) / seconds, 1), "load_1min_before": round(load0, 2),
            # where the time goes: CPU seconds of the workers and of nats-server per 1,000 messages, and the
            # cores they kept busy (2 cores shared with everything else on this machine)
            "worker_cpu_ms_per_1k": round(1e6 * workers_cpu / len(msgs), 1),
            "server_cpu_ms_per_1k": round(1e6 * server_cpu / len(msgs), 1),
            "cores_busy": round((workers_cpu + server_cpu) / seconds, 2)}


def bench_scaleout(model: str, workers: tuple[int, ...] = (1, 2, 4), devices: int = 100, samples: int = 300,
                   batch: int = 1, partitions: int = 16, repeats: int = 1, mqtt: bool = True) -> dict[str, Any]:
    """Median drain rates per worker count (and the MQTT daemon's on the same messages)."""
    m = load_model(model, "cpu", 1)
    names = device_names(devices)
    msgs = _payloads(names, samples, m.n_channels, batch)
    out: dict[str, Any] = {"devices": devices, "samples_per_device": samples, "samples_per_message": batch,
                           "messages": len(msgs), "partitions": partitions, "repeats": repeats, "cpus": os.cpu_count(),
                           "window": m.window, "hop": m.metadata.hop,
                           "expected_windows": devices * expected_windows(samples, m.window, m.metadata.hop),
                           "nats": {}}
    with tempfile.TemporaryDirectory(prefix="edgewatch-scaleout-") as tmp, NatsServer(name="bench") as srv:
        for r in range(repeats):
            for k in workers:
                run = group_run(srv, model, k, msgs, partitions, f"{k}x{r}", Path(tmp))
                out["nats"].setdefault(str(k), []).append(run)
    for k, runs in out["nats"].items():
        rates = [x["msg_rate"] for x in runs]
        out["nats"][k] = {"runs": runs, "msg_rate": summary(rates), "sample_rate": summary([x * batch for x in rates])}
    base = out["nats"].get(str(min(workers)), {}).get("msg_rate", {}).get("median")
    for v in out["nats"].values():
        v["speedup"] = round(v["msg_rate"]["median"] / base, 2) if base else None
    if mqtt:
        out["mqtt"] = mqtt_reference(model, devices, samples, batch, repeats)
    return out


def mqtt_reference(model: str, devices: int, samples: int, batch: int, repeats: int) -> dict[str, Any]:
    """One MQTT daemon draining the same messages (``bench ingest``'s drain run)."""
    from lab.bench.broker import bench_broker
    from lab.bench.ingest import drain_run

    m = load_model(model, "cpu", 1)
    with bench_broker() as broker:
        runs = [drain_run(broker, "daemon", model, devices, samples, m.n_channels, batch, m.window, m.metadata.hop,
                          f"so{r}") for r in range(repeats)]
    rates = [x.get("msg_rate") or 0.0 for x in runs]
    return {"msg_rate": summary(rates), "sample_rate": summary([x * batch for x in rates]),
            "windows_lost": [x.get("windows_lost") for x in runs]}


def scaleout_md(r: dict[str, Any]) -> str:
    """The Markdown section."""
    lines = ["## Scale-out: NATS consumer group workers vs one MQTT daemon", "",
             f"{r['messages']:,} messages ({r['devices']} devices x {r['samples_per_device']} samples, "
             f"{r['samples_per_message']} per message), {r['partitions']} partitions, {r['cpus']} CPUs; "
             f"drain rates, median of {r['repeats']}.", "",
             "| consumer | messages/s | samples/s | vs 1 worker | worker / server CPU ms per 1k msgs | cores busy |",
             "|---|---|---|---|---|---|"]
    for k, v in r["nats"].items():
        last = v["runs"][-1]
        lines.append(f"| NATS, {k} worker(s) | {v['msg_rate']['median']:,.0f} | {v['sample_rate']['median']:,.0f} "
                     f"| {v['speedup']}x | {last['worker_cpu_ms_per_1k']} / {last['server_cpu_ms_per_1k']} "
                     f"| {last['cores_busy']} |")
    if r.get("mqtt"):
        q = r["mqtt"]
        lines.append(f"| MQTT, one daemon | {q['msg_rate']['median']:,.0f} | {q['sample_rate']['median']:,.0f} | | | |")
    return "\n".join(lines) + "\n"
