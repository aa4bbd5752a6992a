"""The one caller of the link's publish: outbound messages go out here, in order."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from edge_runtime.pipeline.documents import Outbound


class Link(Protocol):
    def publish(self, topic: str, payload: str | bytes, qos: int = 1, retain: bool = False) -> bool: ...


class Publisher:
    """Sends :class:`Outbound` messages through ``link`` (an :class:`~edge_runtime.service.mqtt.MqttLink`; paho's
    bounded queue and the drop counters are there). The daemon attaches the link once it is built."""

    def __init__(self, link: Link | None = None) -> None:
        self.link = link

    def send(self, messages: Iterable[Outbound]) -> int:
        """Queue every message; the number paho accepted."""
        link = self.link
        assert link is not None, "Publisher.send before the daemon attached its link"
        return sum(link.publish(m.topic, m.payload, m.qos, m.retain) for m in messages)
