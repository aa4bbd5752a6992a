"""Test-side MQTT clients (collector, publisher) and an in-process daemon runner."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import paho.mqtt.client as paho

from edge_runtime.config import build_config
from edge_runtime.service.daemon import Daemon
from edge_runtime.service.mqtt import BrokerAddress, ClientOptions, make_client


def wait_until(pred: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _local(port: int) -> BrokerAddress:
    return BrokerAddress("127.0.0.1", port, False)


class Collector:
    """Subscribes to ``filters`` and keeps every (topic, payload, retain) it receives."""

    def __init__(self, port: int, filters: list[str]) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = make_client(_local(port), ClientOptions(client_id=f"collector-{uuid.uuid4().hex[:6]}", buffered=False))
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in filters])
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._ready.wait(10):
            raise AssertionError("collector did not subscribe")

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload, msg.retain))

    def docs(self, prefix: str) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            msgs = list(self.messages)
        return [(t, json.loads(p)) for t, p, _ in msgs if t.startswith(prefix) and p]

    def alerts(self) -> list[dict[str, Any]]:
        return [d for t, d in self.docs("alerts/") if not t.endswith("/state")]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Publisher:
    """Publishes sensor payloads QoS 1 and waits for the broker's acks."""

    def __init__(self, port: int) -> None:
        self.client = make_client(_local(port), ClientOptions(client_id=f"pub-{uuid.uuid4().hex[:6]}", buffered=False,
                                                              max_inflight=1000, max_queued=0))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self._infos: list[paho.MQTTMessageInfo] = []

    def send(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> None:
        self._infos.append(self.client.publish(topic, payload, qos=qos, retain=retain))

    def send_series(self, topic: str, x: Any, t0: float, chunk: int) -> int:
        """``x`` (n, C) as ``{"ts", "values"}`` messages of ``chunk`` samples 1 s apart from ``t0``; how many."""
        for i in range(0, len(x), chunk):
            self.send(topic, json.dumps({"ts": [t0 + j for j in range(i, min(i + chunk, len(x)))],
                                         "values": x[i : i + chunk].tolist()}))
        return -(-len(x) // chunk)

    def flush(self, timeout: float = 20.0) -> None:
        for info in self._infos:
            info.wait_for_publish(timeout)
        self._infos.clear()

    def close(self) -> None:
        self.flush()
        self.client.disconnect()
        self.client.loop_stop()


def daemon_config(broker_url: str, model_path, **overrides: Any):
    base = {"path": str(model_path), "broker": broker_url, "instance": "test", "stats_interval_s": 0.0,
            "watch_interval_s": 0.0, "max_wait_ms": 2.0, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0}
    base.update(overrides)
    return build_config(None, base)


@contextmanager
def running_daemon(broker_url: str, model_path, **overrides: Any) -> Iterator[Daemon]:
    """An in-process daemon, connected and subscribed; stopped (cleanly) on exit."""
    d = Daemon(daemon_config(broker_url, model_path, **overrides)).start()
    try:
        wait_until(d.link.connected.is_set, 10, "daemon connected")
        time.sleep(0.1)  # the subscription follows the connect
        yield d
    finally:
        d.stop()


def idle(d: Daemon, timeout: float = 20.0, quiet_s: float = 0.3) -> None:
    """Wait until every queued window has been scored and no message has arrived for ``quiet_s``."""
    seen = [-1, time.monotonic()]

    def settled() -> bool:
        n = d.stats.counts["messages"]
        if n != seen[0]:
            seen[:] = [n, time.monotonic()]
        done = len(d.batching) == 0 and (d.stats.counts["windows_scored"] + d.stats.drops["queue_full"]
                                      >= d.stats.counts["windows_queued"])
        return done and time.monotonic() - seen[1] >= quiet_s

    wait_until(settled, timeout, "daemon idle")


def stream_and_settle(d: Daemon, port: int, topic: str, x: Any, t0: float, chunk: int) -> None:
    """Publish ``x`` as :meth:`Publisher.send_series` messages, wait until the daemon has them all, then :func:`idle`."""
    pub = Publisher(port)
    n = pub.send_series(topic, x, t0, chunk)
    pub.close()
    wait_until(lambda: d.stats.counts["messages"] >= n, 10, "messages")
    idle(d)
