"""The one caller of the link's publish: outbound messages go out here, in order of priority.

Two classes of traffic share the link's bounded outgoing queue (``max_outgoing``):

- critical (alerts, retained states, status): sent at once. One that finds the queue full (or, QoS 0, the
  broker away) is kept and retried by :meth:`Publisher.pace` (the housekeeping tick), in order, with a newer
  retained message replacing an older one for the same topic; while any wait, later critical messages queue
  behind them. Each held is counted once (``publish_deferred``: not lost), each sent on a retry
  (``publish_retried``); only past ``max_retry`` waiting messages is the oldest given up
  (``publish_lost["critical_lost"]``).
- bulk (:attr:`Outbound.bulk`: Home Assistant discovery, scores, stats): may fill only half the queue
  (the link refuses the rest), so it never takes an alert's place. Retained bulk messages (discovery) are
  paced: held here and sent by :meth:`pace` as the queue has room (at most ``bulk_per_pace`` a tick);
  beyond ``max_paced`` held the oldest is given up (``publish_lost["discovery_dropped"]``). The others (scores,
  and the retained stats: :attr:`Outbound.paced` False, one a stats interval, and the last must go out before a
  stop) are sent once: one refused is lost, ``publish_lost["not_connected"]`` while the link is down (QoS 0
  is not queued), else ``publish_lost["outgoing_full"]``.

Outgoing losses are counted apart from ``drops`` (the daemon's input and work): a stats document lost while
the broker is away says nothing about the sensor data. Each reason is logged at most once per
``log_interval_s``.

The last retained message of each topic (the devices' states, operating states and health documents:
:attr:`Outbound.reassert`; not the status, discovery, stats or shadow documents, which are published afresh) is
remembered, at most ``max_remembered`` topics (a forgotten device's are dropped: :meth:`forget_remembered`);
after a reconnect, to a broker that may have lost them (a restart without persistence) or restored an older
snapshot (a crash between its autosaves), :meth:`reassert` sends each again, paced like discovery, each topic's
newest document.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import Protocol

from edge_runtime.pipeline.documents import Outbound
from edge_runtime.pipeline.stats import RateLimitedLog, Stats

log = logging.getLogger(__name__)


class Link(Protocol):
    def publish(self, topic: str, payload: str | bytes, qos: int = 1, retain: bool = False,
                bulk: bool = False) -> bool: ...


class Publisher:
    """Sends :class:`Outbound` messages through ``link`` (an :class:`~edge_runtime.service.mqtt.MqttLink`, paho's
    bounded queue behind it, or the NATS link) and counts what waits and what is lost. The daemon attaches the
    link once it is built; one with a ``connected`` event (both have) tells a lost message's reason."""

    def __init__(self, link: Link | None = None, stats: Stats | None = None, max_retry: int = 10_000,
                 max_paced: int = 100_000, bulk_per_pace: int = 200, max_remembered: int = 100_000,
                 log_interval_s: float = 10.0) -> None:
        self.link = link
        self.stats = stats or Stats()
        self._rl = RateLimitedLog(log, log_interval_s)
        self.max_retry, self.max_paced, self.bulk_per_pace = max_retry, max_paced, bulk_per_pace
        self._lock = threading.Lock()
        self._retry: OrderedDict[object, Outbound] = OrderedDict()  # topic (retained) or a unique key -> message
        self._paced: deque[Outbound] = deque()
        self._n = 0
        self.max_remembered = max_remembered
        self._remembered: OrderedDict[str, Outbound] = OrderedDict()  # topic -> its last retained message
        self._again: deque[str] = deque()  # topics to publish again (reassert), their newest message each

    def __len__(self) -> int:
        """Messages held here (waiting for a retry or paced)."""
        return len(self._retry) + len(self._paced)

    def send(self, messages: Iterable[Outbound]) -> int:
        """Send (or hold) every message; the number the link accepted now."""
        link = self.link
        assert link is not None, "Publisher.send before the daemon attached its link"
        sent = 0
        for m in messages:
            if m.retain and m.reassert:
                self._remember(m)
            if m.bulk:
                if m.retain and m.paced:
                    self._hold_paced(m)
                elif link.publish(m.topic, m.payload, m.qos, m.retain, bulk=True):
                    sent += 1
                else:
                    self._lost(m, self._refusal(link))
            elif self._retry:
                with self._lock:
                    self._hold_retry(m)
            elif link.publish(m.topic, m.payload, m.qos, m.retain):
                sent += 1
            else:
                self._rl.log(logging.WARNING, "publish_deferred", "outgoing message for %s refused (outgoing queue "
                             "full or broker away): held for a retry", m.topic[:200])
                with self._lock:
                    self._hold_retry(m)
        return sent

    def pace(self) -> int:
        """Retry held critical messages in order, then send paced bulk ones while the link has room
        (housekeeping thread, every tick); the number sent."""
        link = self.link
        if link is None:
            return 0
        sent = 0
        with self._lock:
            while self._retry:
                key, m = next(iter(self._retry.items()))
                if not link.publish(m.topic, m.payload, m.qos, m.retain):
                    return sent
                del self._retry[key]
                self.stats.incr("publish_retried")
                sent += 1
            budget = self.bulk_per_pace
            while budget and self._paced:
                m = self._paced[0]
                if not link.publish(m.topic, m.payload, m.qos, m.retain, bulk=True):
                    return sent
                self._paced.popleft()
                sent, budget = sent + 1, budget - 1
            while budget and self._again:
                m2 = self._remembered.get(self._again[0])
                if m2 is not None and not link.publish(m2.topic, m2.payload, m2.qos, True, bulk=True):
                    break
                self._again.popleft()
                if m2 is not None:
                    self.stats.incr("retained_reasserted")
                    sent, budget = sent + 1, budget - 1
        return sent

    def reassert(self) -> int:
        """After a reconnect: each remembered topic's newest retained message published again (paced, the most
        recently changed first); the number queued."""
        with self._lock:
            self._again = deque(reversed(self._remembered))
            return len(self._again)

    def remember(self, topic: str, payload: bytes | bytearray) -> None:
        """A retained document an earlier run published and this one carries on (a raised alert's state): kept
        as this run's own, so a broker that lost it gets it again after a reconnect."""
        self._remember(Outbound(topic, bytes(payload).decode("utf-8", "replace"), qos=1, retain=True))

    def forget_remembered(self, topics: Iterable[str]) -> None:
        """A device left: its topics are not published again after a reconnect."""
        with self._lock:
            for t in topics:
                self._remembered.pop(t, None)

    def _remember(self, m: Outbound) -> None:
        with self._lock:
            if not m.payload:  # an empty retained message deletes the topic's
                self._remembered.pop(m.topic, None)
                return
            self._remembered[m.topic] = m
            self._remembered.move_to_end(m.topic)
            if len(self._remembered) > self.max_remembered:
                self._remembered.popitem(last=False)

    def _hold_retry(self, m: Outbound) -> None:  # under self._lock
        self._n += 1
        key: object = m.topic if m.retain else self._n
        self._retry[key] = m  # a newer retained message for the topic replaces the older one in its place
        self.stats.incr("publish_deferred")
        if len(self._retry) > self.max_retry:
            _, old = self._retry.popitem(last=False)
            self._lost(old, "critical_lost")

    def _hold_paced(self, m: Outbound) -> None:
        with self._lock:
            self._paced.append(m)
            if len(self._paced) > self.max_paced:
                self._lost(self._paced.popleft(), "discovery_dropped")

    @staticmethod
    def _refusal(link: Link) -> str:
        """Why ``link`` refused a message: ``not_connected`` while it is down, else ``outgoing_full``."""
        connected = getattr(link, "connected", None)
        return "not_connected" if isinstance(connected, threading.Event) and not connected.is_set() \
            else "outgoing_full"

    def _lost(self, m: Outbound, reason: str) -> None:
        """``m`` is given up: counted by ``reason`` in ``publish_lost`` (not an input drop), logged at a bounded rate."""
        self.stats.lose(reason)
        why = {"not_connected": "the broker is away: a score or stats message is not queued",
               "outgoing_full": "the outgoing queue's share for scores and stats is full",
               "critical_lost": f"more than {self.max_retry} alerts and states wait for a retry: the oldest given up",
               "discovery_dropped": f"more than {self.max_paced} discovery messages wait: the oldest given up",
               }.get(reason, reason)
        self._rl.log(logging.WARNING, f"publish_lost_{reason}", "outgoing message for %s lost: %s", m.topic[:200], why)
