"""Scale-out: the same flood through 1, 2, 4 ... workers of a NATS consumer group, and through one MQTT
daemon for reference (``edgewatch-lab bench scale-out``).

Drain rates, as ``bench ingest`` measures MQTT: for each worker count a fresh group (its own stream, 16
partitions by default) on a private nats-server; the workers (``edgewatch run --source nats``
subprocesses) start and share the partitions, are paused (SIGSTOP; the group's timeouts are long, so
they keep their partitions), the whole flood is stored in the stream (the publisher is done and gone
before the clock starts: it takes no CPU from the measurement), the workers resume (SIGCONT) and the
clock runs from there to the last acknowledgement: the latest ``ack_floor.last_active`` of the
partitions' consumers once every one has nothing pending and nothing unacknowledged (a batch is
acknowledged only after its windows are scored; polled every 0.25 s, the poll does not set the time).

Two flood kinds: single-sample messages and batched ones (``batch`` samples a message). Each repeat runs
every worker count of every kind (the order rotated each repeat, the machine's load drifts), then the MQTT
daemon's drain of the same messages; the ratio to one worker is taken within each repeat. Beside each
run: the 1-minute load average before it, the CPU seconds of the workers, of nats-server and of every
other process on the machine meanwhile (``/proc/stat``), so a ratio can be read against the cores the run
actually had.
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
from lab.bench.ingest import device_names
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


async def _drained(url: str, cfg: Any, t0_wall: float) -> float:
    """Seconds from ``t0_wall`` (wall clock) to the last acknowledgement, once no partition has anything
    pending or unacknowledged (consumer infos every 0.25 s on one connection; the time is the server's
    ``ack_floor.last_active``, not the poll's, so the poll's period does not enter the measurement)."""
    import nats

    from edge_runtime.integrations.nats import admin

    nc = await nats.connect(url)
    try:
        while True:
            left, last = 0, t0_wall
            for k in range(cfg.partitions):
                info = await admin.api(nc, f"CONSUMER.INFO.{cfg.stream}.{cfg.consumer(k)}")
                left += int(info.get("num_pending", 0)) + int(info.get("num_ack_pending", 0))
                last = max(last, _rfc3339((info.get("ack_floor") or {}).get("last_active")))
            if left == 0:
                return last - t0_wall
            if time.time() - t0_wall > 600:
                raise RuntimeError(f"{left} message(s) still not acknowledged after 600 s")
            await asyncio.sleep(0.25)
    finally:
        await nc.close()


def _rfc3339(stamp: str | None) -> float:
    """nats-server's ``2026-12-01T15:55:11.439541893Z`` as epoch seconds (0 when absent)."""
    if not stamp:
        return 0.0
    import datetime as dt

    head, _, frac = stamp.rstrip("Z").partition(".")
    t = dt.datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.timezone.utc).timestamp()
    return t + (float("0." + frac) if frac else 0.0)


def _busy_cpu_s() -> float:
    """CPU seconds every core of the machine spent busy so far (``/proc/stat``: all but idle and iowait)."""
    with open("/proc/stat") as fh:
        v = [int(x) for x in fh.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


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
        time.sleep(0.5)  # the server's store settles (its write-behind) before the clock starts
        server_pid = srv.proc.pid if srv.proc is not None else 0
        cpu0 = [cpu_seconds(p.pid) for p in procs], cpu_seconds(server_pid), cpu_seconds(), _busy_cpu_s()
        load0 = os.getloadavg()
        t0 = time.time()
        for p in procs:
            p.send_signal(signal.SIGCONT)
        seconds = asyncio.run(_drained(srv.url, cfg, t0))
        workers_cpu = sum(cpu_seconds(p.pid) - c for p, c in zip(procs, cpu0[0], strict=True))
        server_cpu = cpu_seconds(server_pid) - cpu0[1]
        bench_cpu = cpu_seconds() - cpu0[2]
        wall = time.time() - t0
        others = max(0.0, _busy_cpu_s() - cpu0[3] - workers_cpu - server_cpu - bench_cpu)
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
            "msg_rate": round(len(msgs) / seconds, 1), "load_avg_before": [round(x, 2) for x in load0],
            # where the time goes: CPU seconds of the workers and of nats-server per 1,000 messages, the cores
            # they kept busy, and the cores every other process on the machine took meanwhile (2 cores shared
            # with other sessions on this machine; measured over the drain and its last poll)
            "worker_cpu_ms_per_1k": round(1e6 * workers_cpu / len(msgs), 2),
            "server_cpu_ms_per_1k": round(1e6 * server_cpu / len(msgs), 2),
            "cores_busy": round((workers_cpu + server_cpu) / seconds, 2), "cores_others": round(others / wall, 2)}


def ceiling(worker_ms: float, server_ms: float, cores: int) -> float:
    """The most ``n`` workers can gain over one when they and nats-server share ``cores`` and CPU is all that
    bounds them: one worker runs at most 1 / w (one core), ``n`` at most min(n, cores) / (w + s) (w, s: CPU
    per message of a worker and of the server); the ratio of the two at n = cores."""
    if worker_ms <= 0:
        return 0.0
    one = 1.0 / max(worker_ms, (worker_ms + server_ms) / cores)
    return round(cores / (worker_ms + server_ms) / one, 2)


KINDS = ("single", "batch")


def bench_scaleout(model: str, workers: tuple[int, ...] = (1, 2, 4), devices: int = 100, samples: int = 1000,
                   batch_samples: int = 5000, batch: int = 50, kinds: tuple[str, ...] = KINDS, partitions: int = 16,
                   repeats: int = 3, mqtt: bool = True) -> dict[str, Any]:
    """Drain rates per flood kind and worker count, medians of ``repeats`` with their spread, the ratio to one
    worker within each repeat, and the MQTT daemon's drain of the same messages."""
    m = load_model(model, "cpu", 1)
    names = device_names(devices)
    floods = {"single": (samples, 1), "batch": (batch_samples, batch)}
    out: dict[str, Any] = {"devices": devices, "partitions": partitions, "repeats": repeats, "cpus": os.cpu_count(),
                           "window": m.window, "hop": m.metadata.hop, "load_avg_start": list(os.getloadavg()),
                           "workers": list(workers), "kinds": {}}
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {k: {n: [] for n in workers} for k in kinds}
    mq: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    payloads = {k: _payloads(names, floods[k][0], m.n_channels, floods[k][1]) for k in kinds}
    with tempfile.TemporaryDirectory(prefix="edgewatch-scaleout-") as tmp, NatsServer(name="bench") as srv:
        for r in range(repeats):
            for kind in kinds:
                order = list(workers[r % len(workers):] + workers[: r % len(workers)])
                for n in order:
                    runs[kind][n].append(group_run(srv, model, n, payloads[kind], partitions, f"{kind}{n}x{r}",
                                                   Path(tmp)))
                if mqtt:
                    mq[kind].append(mqtt_reference(model, devices, *floods[kind], f"{kind}{r}"))
    out["load_avg_end"] = list(os.getloadavg())
    for kind in kinds:
        spm = floods[kind][1]
        base = runs[kind][min(workers)]
        k_out: dict[str, Any] = {"samples_per_device": floods[kind][0], "samples_per_message": spm,
                                 "messages": len(payloads[kind]), "nats": {}}
        for n in workers:
            rs = runs[kind][n]
            rates = [x["msg_rate"] for x in rs]
            k_out["nats"][str(n)] = {
                "runs": rs, "msg_rate": summary(rates), "sample_rate": summary([x * spm for x in rates]),
                # paired within each repeat: the load of the moment is shared by the two runs
                "speedup": summary([x["msg_rate"] / b["msg_rate"] for x, b in zip(rs, base, strict=True)], 2),
                "worker_cpu_ms_per_1k": summary([x["worker_cpu_ms_per_1k"] for x in rs], 2),
                "server_cpu_ms_per_1k": summary([x["server_cpu_ms_per_1k"] for x in rs], 2),
                "cores_busy": summary([x["cores_busy"] for x in rs], 2),
                "cores_others": summary([x["cores_others"] for x in rs], 2)}
        one = k_out["nats"][str(min(workers))]
        cores = os.cpu_count() or 1
        k_out["ceiling_on_idle_cores"] = ceiling(one["worker_cpu_ms_per_1k"]["median"],
                                                 one["server_cpu_ms_per_1k"]["median"], min(cores, max(workers)))
        if mqtt:
            rates = [x["msg_rate"] or 0.0 for x in mq[kind]]
            k_out["mqtt"] = {"msg_rate": summary(rates), "sample_rate": summary([x * spm for x in rates]),
                             "windows_lost": [x.get("windows_lost") for x in mq[kind]],
                             "load_avg_before": [x["load_avg_before"] for x in mq[kind]]}
        out["kinds"][kind] = k_out
    return out


def mqtt_reference(model: str, devices: int, samples: int, batch: int, tag: str) -> dict[str, Any]:
    """One MQTT daemon draining the same messages (``bench ingest``'s drain run, its own private Mosquitto)."""
    from lab.bench.broker import bench_broker
    from lab.bench.ingest import drain_run

    m = load_model(model, "cpu", 1)
    load0 = [round(x, 2) for x in os.getloadavg()]
    with bench_broker() as broker:
        res = drain_run(broker, "daemon", model, devices, samples, m.n_channels, batch, m.window, m.metadata.hop,
                        f"so{tag}")
    res["load_avg_before"] = load0
    return res


def _pm(x: dict[str, Any], fmt: str = ",.0f") -> str:
    """``median (min-max)``."""
    return f"{x['median']:{fmt}} ({x['min']:{fmt}}-{x['max']:{fmt}})"


def scaleout_md(r: dict[str, Any], target: float = 1.6) -> str:
    """The Markdown section: per flood kind a table, and met/missed for 2 workers against ``target``."""
    lines = ["## Scale-out: NATS consumer group workers vs one MQTT daemon", "",
             f"{r['devices']} devices, {r['partitions']} partitions, {r['cpus']} CPUs; drain rates of a flood stored "
             f"before the clock starts; median (min-max) of {r['repeats']} repeats, the ratio paired within each "
             f"repeat. 1-minute load average {r['load_avg_start'][0]:.2f} at the start, {r['load_avg_end'][0]:.2f} at "
             "the end.", ""]
    for kind, k in r["kinds"].items():
        lines += [f"### {kind}: {k['messages']:,} messages, {k['samples_per_message']} sample(s) each", "",
                  "| consumer | messages/s | samples/s | vs 1 worker | worker / server CPU ms per 1k msgs "
                  "| cores busy (ours) | cores others took | load avg before |",
                  "|---|---|---|---|---|---|---|---|"]
        for n, v in k["nats"].items():
            loads = "/".join(f"{x['load_avg_before'][0]:.1f}" for x in v["runs"])
            lines.append(f"| NATS, {n} worker(s) | {_pm(v['msg_rate'])} | {_pm(v['sample_rate'])} "
                         f"| {_pm(v['speedup'], '.2f')}x | {v['worker_cpu_ms_per_1k']['median']} / "
                         f"{v['server_cpu_ms_per_1k']['median']} | {v['cores_busy']['median']} "
                         f"| {v['cores_others']['median']} | {loads} |")
        if k.get("mqtt"):
            q = k["mqtt"]
            loads = "/".join(f"{x[0]:.1f}" for x in q["load_avg_before"])
            lines.append(f"| MQTT, one daemon | {_pm(q['msg_rate'])} | {_pm(q['sample_rate'])} | | | | | {loads} |")
        two = k["nats"].get("2")
        lines.append("")
        if two:
            verdict = "met" if two["speedup"]["median"] >= target else "missed"
            lines.append(f"2 workers vs 1: {two['speedup']['median']:.2f}x (target {target}x: **{verdict}**); "
                         f"CPU ceiling on otherwise idle cores (worker and server CPU per message of the 1-worker "
                         f"runs): {k['ceiling_on_idle_cores']}x.")
            lines.append("")
    return "\n".join(lines)
