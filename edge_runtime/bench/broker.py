"""A private Mosquitto on a free loopback port for the MQTT benchmarks, and its ``$SYS`` dropped count.

The broker queue is sized for the bursts a benchmark sends (``max_queued_messages``), so a message
the broker drops is a benchmark failure, counted from ``$SYS/broker/publish/messages/dropped``.
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from edge_runtime.localbroker import free_port, mosquitto_binary, terminate, wait_port


class BrokerError(RuntimeError):
    """Mosquitto is not installed or did not start."""


class BenchBroker:
    """One ``mosquitto`` process (anonymous, loopback, no persistence, ``$SYS`` every second)."""

    def __init__(self, max_queued_messages: int = 2_000_000, workdir: Path | None = None) -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise BrokerError("the mosquitto binary is not installed (apt-get install mosquitto)")
        self.binary = binary
        self.host, self.port = "127.0.0.1", free_port()
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="edgewatch-bench-mosq-"))
        self.conf = self.workdir / "mosquitto.conf"
        self.conf.write_text("\n".join([
            f"listener {self.port} {self.host}", "allow_anonymous true",
            f"max_queued_messages {max_queued_messages}", "max_queued_bytes 0", "max_inflight_messages 100", "set_tcp_nodelay true",
            "sys_interval 1", f"log_dest file {self.workdir / 'mosquitto.log'}", "log_type error", "log_type warning",
        ]) + "\n")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> BenchBroker:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        if wait_port(self.host, self.port, timeout, self.proc):
            return self
        self.stop()
        raise BrokerError(f"mosquitto did not start on {self.host}:{self.port}")

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None

    def __enter__(self) -> BenchBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def sys_value(self, topic: str = "$SYS/broker/publish/messages/dropped", timeout: float = 3.0) -> int | None:
        """The broker's current value of a numeric ``$SYS`` topic (published every second), or None."""
        got: list[int] = []
        done = threading.Event()

        def on_message(client, userdata, msg) -> None:
            try:
                got.append(int(float(msg.payload.decode())))
            except ValueError:
                return
            done.set()

        c = paho.Client(CallbackAPIVersion.VERSION2, client_id="")
        c.on_message = on_message
        c.on_connect = lambda cl, *a: cl.subscribe(topic, 0)
        c.connect(self.host, self.port)
        c.loop_start()
        done.wait(timeout)
        c.disconnect()
        c.loop_stop()
        return got[-1] if got else None


def prime_session(host: str, port: int, client_id: str, topic_filter: str = "sensors/+/data") -> None:
    """Create a persistent QoS 1 session for ``client_id`` so the broker queues data until it connects."""
    ready = threading.Event()
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    c.on_connect = lambda cl, *a: cl.subscribe(topic_filter, 1)
    c.on_subscribe = lambda *a: ready.set()
    c.connect(host, port)
    c.loop_start()
    if not ready.wait(10):
        raise BrokerError(f"could not subscribe {client_id} on {host}:{port}")
    c.disconnect()
    c.loop_stop()
