"""Fault-injection harness: MQTT clients with persistent sessions (ground truth on the test
side survives broker restarts), the daemon as a real subprocess, RSS sampling."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import paho.mqtt.client as paho

from edge_runtime.service.mqtt import BrokerAddress, ClientOptions, make_client

ROOT = Path(__file__).resolve().parents[2]
# Mosquitto started as root switches to the `mosquitto` user, which cannot write its log or its
# persistence file under pytest's 0700 temp folders: persistence would silently be off.
# (Ignored when not run as root.)
RUN_AS_ME = "user root"


def wait_until(pred: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> float:
    """Poll ``pred``; return the seconds it took. Timeouts are upper bounds, never performance asserts."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return time.monotonic() - t0
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Client:
    """A paho client on a persistent session (stable id, clean_session false) that reconnects fast.

    QoS 1 publishes made while the broker is away stay in paho's (unbounded) queue and go out
    after the reconnect; QoS 1 subscriptions live in the broker's session, so messages
    published while this client is away are queued for it by the broker.
    """

    def __init__(self, port: int, name: str, filters: tuple[str, ...] = (), persistent: bool = True,
                 auth: tuple[str, str] | None = None) -> None:
        self.messages: list[tuple[str, bytes, bool, float]] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.connects = 0
        self.session_present: list[bool] = []  # one per CONNACK
        self.filters = filters
        cid = f"{name}-{uuid.uuid4().hex[:6]}"
        # max_queued 0, unbounded: the test's ground truth must not drop
        self.client = make_client(BrokerAddress("127.0.0.1", port, False), ClientOptions(
            client_id=cid, persistent=persistent, username=auth[0] if auth else "", password=auth[1] if auth else None,
            reconnect_min_s=1, reconnect_max_s=1, max_queued=0, max_inflight=100, buffered=False))
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        wait_until(self.connected.is_set, 10, f"{name} connected")
        if filters:
            wait_until(self.subscribed.is_set, 10, f"{name} subscribed")

    def _on_connect(self, client, userdata, flags, rc, props) -> None:
        self.connects += 1
        self.session_present.append(bool(flags.session_present))
        if self.filters and not flags.session_present:
            client.subscribe([(f, 1) for f in self.filters])
        elif self.filters:
            self.subscribed.set()
        self.connected.set()

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, msg.payload, msg.retain, time.monotonic()))

    def publish(self, topic: str, payload: str | bytes, qos: int = 1, retain: bool = False) -> paho.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def unacked(self) -> int:
        return len(self.client._out_messages)  # QoS 1 messages the broker has not acknowledged yet

    def docs(self, prefix: str = "", retained: bool | None = None) -> list[tuple[str, dict[str, Any]]]:
        with self.lock:
            msgs = list(self.messages)
        out = []
        for t, p, r, _ in msgs:
            if t.startswith(prefix) and p and (retained is None or r == retained):
                out.append((t, json.loads(p)))
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class DaemonProcess:
    """``edgewatch run`` as a subprocess; stderr goes to a log file the test can read. One still running when its
    test ends (a failed assertion before its stop) is stopped by the ``stop_leftover_daemons`` fixture."""

    started: ClassVar[list[DaemonProcess]] = []

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None

    def start(self) -> DaemonProcess:
        fh = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge_runtime.cli", "run", *self.args],
            cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env=self.env,
        )
        fh.close()
        DaemonProcess.started.append(self)
        return self

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> int | None:
        """SIGTERM and wait (kill after 15 s); return the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def rss_mb(pid: int | None = None) -> float:
    import psutil

    return psutil.Process(pid or os.getpid()).memory_info().rss / 2**20
