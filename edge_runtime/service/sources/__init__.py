"""Where sensor messages come from, behind one small interface: MQTT (the default) or a NATS consumer group.

A source is the daemon's link: it delivers each sensor message to ``on_message(topic, payload)`` on its
own thread, calls ``after_read()`` after a burst (the daemon scores it there, inline batching), and
carries the daemon's outputs (:meth:`Source.publish`). The daemon builds it with :func:`make_source`:

- ``mqtt``: :class:`edge_runtime.service.mqtt.MqttLink` (persistent session, QoS 1, manual acks).
- ``nats``: :class:`edge_runtime.integrations.nats.link.NatsLink`, imported only when chosen: a worker
  of a JetStream partitioned consumer group, acknowledging a batch after it has been scored.

A Kafka consumer-group source would implement the same :class:`Source` (a poll loop on its thread
calling ``on_message`` per record and ``after_read`` per poll, committing offsets after that; partitions
assigned/revoked -> the same ``prime``/``release`` hooks the NATS link uses). It is not built: no Kafka
broker can be run where this project is tested (docs/NATS.md).
"""

from __future__ import annotations

import threading
from typing import Any, Protocol


class Source(Protocol):
    """What the daemon needs of its link (MQTT or NATS)."""

    connected: threading.Event
    paused: bool  # set while stopping: take no more input, acknowledge nothing more

    def start(self) -> None: ...

    def publish(self, topic: str, payload: str | bytes, qos: int = 1, retain: bool = False,
                bulk: bool = False) -> bool: ...

    def network_alive(self) -> bool: ...

    def detach_after_read(self) -> None: ...

    def close(self, offline: dict[str, Any], timeout: float = 3.0) -> None: ...
