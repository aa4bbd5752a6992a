"""Helpers for the NATS consumer-group tests: a real nats-server, a group, a flood, what came out.

Everything talks to real ``nats-server`` processes (edge_runtime/tools/localnats.py) on free loopback ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import nats

from edge_runtime.integrations.nats import admin
from edge_runtime.integrations.nats.groups import GroupConfig

T0 = 1_700_000_000.0
VALUES = [0.1, 0.2, 0.3, 0.4]


def create_group(urls: list[str] | str, name: str = "g1", partitions: int = 8, replicas: int = 1,
                 alert_subject: str = "alerts.*", **kw: Any) -> GroupConfig:
    """The group (and, unless ``alert_subject`` is empty, its alert stream)."""
    cfg = GroupConfig(name, f"EW_{name}", "sensors.*.data", partitions=partitions, replicas=replicas, **kw)

    async def go() -> None:
        nc = await nats.connect(servers=urls)
        try:
            await admin.create_group(nc, cfg, alert_subject)
        finally:
            await nc.close()

    asyncio.run(go())
    return cfg


def sample(i: int, value: float | str | None = None) -> bytes:
    """Sample ``i`` of a device; ``value="alt"``: +-2 alternating (a window variance of 4: anomalous)."""
    if value == "alt":
        value = 2.0 if i % 2 else -2.0
    vals = VALUES if value is None else [float(value)] * len(VALUES)
    return json.dumps({"ts": T0 + i, "values": vals}).encode()


class Watcher:
    """A background NATS client that records score documents (window ends per device) and alerts."""

    def __init__(self, urls: list[str] | str) -> None:
        self.urls = urls
        self.window_ends: dict[str, list[float]] = defaultdict(list)
        self.alerts: list[dict[str, Any]] = []
        self.sensor_alerts: list[dict[str, Any]] = []  # on health.<device>.alerts (no stream keeps them)
        self.stats: dict[str, dict[str, Any]] = {}  # worker -> its latest stats document
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "watcher did not connect"

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        nc = await nats.connect(servers=self.urls, max_reconnect_attempts=-1, reconnect_time_wait=0.2)

        async def score(m: Any) -> None:
            doc = json.loads(m.data)
            self.window_ends[doc["device"]].extend(doc["window_end"])

        async def stats(m: Any) -> None:
            doc = json.loads(m.data)
            self.stats[doc["instance"]] = doc

        async def alert(m: Any) -> None:
            self.alerts.append(json.loads(m.data))

        await nc.subscribe("scores.*", cb=score, pending_msgs_limit=-1, pending_bytes_limit=-1)
        async def sensor_alert(m: Any) -> None:
            self.sensor_alerts.append(json.loads(m.data))

        await nc.subscribe("alerts.*", cb=alert, pending_msgs_limit=-1, pending_bytes_limit=-1)
        await nc.subscribe("health.*.alerts", cb=sensor_alert, pending_msgs_limit=-1, pending_bytes_limit=-1)
        await nc.subscribe("edgewatch.*.stats", cb=stats, pending_msgs_limit=-1, pending_bytes_limit=-1)
        await nc.flush()
        # on a cluster, also one score subscriber on each server: a score published while the server of the
        # connection above dies (and until it has reconnected and subscribed again) is missed by it, a gap of
        # the observer, not of the workers; the others still see it (window ends are kept as sets)
        per_server = []
        for url in self.urls if isinstance(self.urls, list) and len(self.urls) > 1 else []:
            c = await nats.connect(servers=[url], max_reconnect_attempts=-1, reconnect_time_wait=0.2)
            await c.subscribe("scores.*", cb=score, pending_msgs_limit=-1, pending_bytes_limit=-1)
            await c.flush()
            per_server.append(c)
        self._ready.set()
        await self._stop.wait()
        for c in per_server:
            with contextlib.suppress(Exception):
                await c.close()
        await nc.close()

    def scored(self) -> int:
        return sum(len(set(v)) for v in list(self.window_ends.values()))

    def missing(self, devices: list[str], n: int, window: int) -> dict[str, int]:
        """Per device, how many sample times (after the first window) ended no scored window."""
        want = {T0 + i for i in range(window - 1, n)}
        return {d: len(want - set(self.window_ends.get(d, []))) for d in devices
                if want - set(self.window_ends.get(d, []))}

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)


def publish(urls: list[str] | str, devices: list[str], start: int, stop: int, rate: float = 0.0,
            value: float | str | None | Callable[[str, int], float | str | None] = None,
            progress: Callable[[int], None] | None = None) -> int:
    """Publish samples ``start..stop-1`` of every device through JetStream, one step (every device's
    sample ``i``) at a time, each message stored before the next step (a server that went away: the step
    again, deduplicated by message id); ``rate`` > 0: about that many messages a second. ``value``: see
    :func:`sample`, or ``value(device, i)``."""

    def val(d: str, i: int) -> float | str | None:
        return value(d, i) if callable(value) else value

    async def go() -> int:
        nc = await nats.connect(servers=urls, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
        js = nc.jetstream()
        n = 0
        t0 = time.monotonic()
        try:
            for i in range(start, stop):
                for _attempt in range(60):
                    try:
                        await asyncio.gather(*(js.publish(f"sensors.{d}.data", sample(i, val(d, i)), timeout=5,
                                                          headers={"Nats-Msg-Id": f"{d}:{i}"}) for d in devices))
                        break
                    except Exception:
                        await asyncio.sleep(0.5)
                else:
                    raise AssertionError(f"could not publish step {i}")
                n += len(devices)
                if progress is not None:
                    progress(i + 1)
                if rate:
                    await asyncio.sleep(max(0.0, t0 + n / rate - time.monotonic()))
        finally:
            await nc.close()
        return n

    return asyncio.run(go())


async def stream_alerts(urls: list[str] | str, stream: str) -> list[dict[str, Any]]:
    """Every alert kept in ``stream`` (the group's alert stream, duplicates dropped by message id)."""
    nc = await nats.connect(servers=urls)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                out.append(json.loads((await js.get_msg(stream, seq)).data))
            except Exception:
                continue
        return out
    finally:
        await nc.close()
