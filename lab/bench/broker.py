"""A private Mosquitto on a free loopback port for the MQTT benchmarks, and its ``$SYS`` dropped count.

The broker queue is sized for the bursts a benchmark sends (``max_queued_messages``), so a message
the broker drops is a benchmark failure, counted from ``$SYS/broker/publish/messages/dropped``.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any

from edge_runtime.service.mqtt import BrokerAddress, ClientOptions, make_client, parse_broker_url
from edge_runtime.tools.localbroker import BrokerError, MosquittoBroker

__all__ = ["BrokerError", "bench_broker", "prime_session", "sys_value"]


def bench_broker(max_queued_messages: int = 2_000_000, workdir: Path | None = None) -> MosquittoBroker:
    """A private broker for a benchmark: anonymous, loopback, no persistence, ``$SYS`` every second, a queue
    sized for its bursts, TCP_NODELAY, a log of errors only (not started)."""
    return MosquittoBroker(workdir=workdir or Path(tempfile.mkdtemp(prefix="edgewatch-bench-mosq-")),
                           max_queued_messages=max_queued_messages, log_types=("error", "warning"),
                           connection_messages=False, extra_config="max_queued_bytes 0\nset_tcp_nodelay true")


def sys_value(broker: MosquittoBroker, topic: str = "$SYS/broker/publish/messages/dropped",
              timeout: float = 3.0) -> int | None:
    """The broker's current value of a numeric ``$SYS`` topic (published every second), or None."""
    got: list[int] = []
    done = threading.Event()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        try:
            got.append(int(float(msg.payload.decode())))
        except ValueError:
            return
        done.set()

    c = make_client(parse_broker_url(broker.url), ClientOptions(buffered=False))
    c.on_message = on_message
    c.on_connect = lambda cl, *a: cl.subscribe(topic, 0)
    c.connect(broker.host, broker.port)
    c.loop_start()
    done.wait(timeout)
    c.disconnect()
    c.loop_stop()
    return got[-1] if got else None


def prime_session(host: str, port: int, client_id: str, topic_filter: str = "sensors/+/data") -> None:
    """Create a persistent QoS 1 session for ``client_id`` so the broker queues data until it connects."""
    ready = threading.Event()
    c = make_client(BrokerAddress(host, port, False), ClientOptions(client_id=client_id, persistent=True, buffered=False))
    c.on_connect = lambda cl, *a: cl.subscribe(topic_filter, 1)
    c.on_subscribe = lambda *a: ready.set()
    c.connect(host, port)
    c.loop_start()
    if not ready.wait(10):
        raise BrokerError(f"could not subscribe {client_id} on {host}:{port}")
    c.disconnect()
    c.loop_stop()
