"""Pinned pull requests on one partition's consumer, spoken on nats-py's connection.

nats-py 2.16 has no priority groups, so the request is built here (ADR-42): ``{"batch", "expires",
"group", "id"}`` on ``$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>``. The server pins one client per
consumer and tags its messages with ``Nats-Pin-Id``; a request with another id gets status 423 (the pin
moved); a request without an id waits as a stand-by until the pin is free. One request is outstanding at a
time, so every message and status on the inbox belongs to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from edge_runtime.integrations.nats import admin, fastpath
from edge_runtime.integrations.nats.groups import PIN_GROUP, GroupConfig, stored_to_topic

EXPIRES_S = 1.0  # a pull request waits this long for messages (well below the pin's timeout)
LINGER_S = 0.02  # a chunk's first message waits at most this long for the rest (the latency at low rates)
READ_BACK_BATCH = 1000
READ_BACK_TRIES = 5  # empty 2 s answers in a row before a read-back gives up
MAX_CACHED_SUBJECTS = 10_000

log = logging.getLogger(__name__)


@dataclass(slots=True)
class StoredMsg:
    """One sensor message of the stream: its MQTT-style topic, payload, stream time (s) and sequence."""

    topic: str
    data: bytes
    time: float
    stream_seq: int
    reply: str = ""
    delivered: int = 1
    device: str | None = None
    cseq: int = 0  # the consumer's delivery sequence: consecutive unless a delivery was lost in transit


def from_reply(subject: str, data: bytes, reply: str, topics: dict[str, str] | None = None) -> StoredMsg | None:
    """A delivered message; its sequence, delivery count and time from the ack subject
    ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>`` (None: not a sensor subject).
    ``topics``: a cache of stored subject -> topic (a partition has few devices: parsed once each)."""
    topic = topics.get(subject) if topics is not None else None
    if topic is None:
        _, topic = stored_to_topic(subject)
        if topics is not None and topic:
            if len(topics) >= MAX_CACHED_SUBJECTS:
                topics.clear()
            topics[subject] = topic
    parts = reply.split(".")
    if not topic or len(parts) < 9:
        return None
    return StoredMsg(topic, data, int(parts[-2]) / 1e9, int(parts[-4]), reply, int(parts[-5]), None, int(parts[-3]))


class Puller:
    """Fetches batches of partition ``partition`` for one worker; tracks the pin.

    The inbox's callback parses each delivery into :class:`StoredMsg` and collects it (a status line
    as its code) in arrival order; :meth:`fetch` is woken once per batch, not once per message (no queue
    hop per message: this is the worker's hot path)."""

    def __init__(self, nc: Any, group: GroupConfig, partition: int, batch: int) -> None:
        self.nc, self.group, self.partition, self.batch = nc, group, partition, batch
        self.subject = f"$JS.API.CONSUMER.MSG.NEXT.{group.stream}.{group.consumer(partition)}"
        self.pin_id = ""
        self.gained_pin = False  # set when a batch came with a new pin id (the caller takes the partition over)
        self.lost_pin = False  # set on a 423: another worker holds the pin now
        self.stopped = False
        self.task: asyncio.Task[None] | None = None
        self._items: list[StoredMsg | str] = []  # deliveries not yet fetched: messages, and statuses as "408"...
        self._want = 0  # wake fetch when this many items are in (or a status came)
        self._open = 0  # deliveries the open pull request may still bring (0: none open)
        self._open_until = 0.0  # loop time after which it is over even without a status (server gone)
        self._waiter: asyncio.Future[None] | None = None
        self._topics: dict[str, str] = {}
        self._sub: Any = None
        self._inbox = ""
        self.last_cseq = 0  # the last delivery sequence scored (0: none since the pin was taken)

    async def open(self) -> None:
        self._inbox = self.nc.new_inbox()
        self._sub = await self.nc.subscribe(self._inbox, cb=self._deliver, pending_msgs_limit=-1,
                                            pending_bytes_limit=-1)
        fastpath.route(self.nc, self._sub, self._collect)  # else the callback above: slower, the same

    async def _deliver(self, msg: Any) -> None:
        """nats-py's callback for the inbox (when :mod:`.fastpath` cannot take it)."""
        headers = msg.headers or {}
        self._collect(msg.subject, msg.reply, msg.data, headers.get("Status", ""), headers.get("Nats-Pin-Id", ""))

    def _collect(self, subject: str, reply: str, data: bytes, status: str, pin: str) -> None:
        """One delivery, in arrival order: collect it, track the pin, wake :meth:`fetch`."""
        if pin and pin != self.pin_id:
            self.pin_id, self.gained_pin = pin, True
        if status:
            self._open = 0  # the request is over
            self._items.append(status)
        else:
            self._open -= 1
            m = from_reply(subject, data, reply, self._topics)
            if m is None:
                return
            self._items.append(m)
        w = self._waiter
        if w is not None and not w.done() and (status or len(self._items) >= self._want):
            w.set_result(None)

    async def close(self) -> None:
        if self._sub is not None:
            fastpath.unroute(self.nc, self._sub)
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    def stop(self) -> None:
        self.stopped = True

    @property
    def requesting(self) -> bool:
        """A pull request is open: it may still deliver messages (a stopping puller finishes it first)."""
        return self._open > 0 and asyncio.get_running_loop().time() < self._open_until

    async def fetch(self) -> list[StoredMsg]:
        """The next chunk: up to ``batch`` messages, as soon as the pull request has delivered them all, or
        :data:`LINGER_S` after the first one (the request stays open for the next chunk), or the request is
        over (empty on a timeout); sets :attr:`gained_pin` / :attr:`lost_pin`. A new request is sent only when
        the last one is over, so every message and status on the inbox belongs to the open one."""
        loop = asyncio.get_running_loop()
        if not self.requesting:
            req: dict[str, Any] = {"batch": self.batch, "expires": int(EXPIRES_S * 1e9), "group": PIN_GROUP}
            if self.pin_id:
                req["id"] = self.pin_id
            self._open, self._open_until = self.batch, loop.time() + EXPIRES_S + 2.0
            await self.nc.publish(self.subject, json.dumps(req).encode(), reply=self._inbox)
        out: list[StoredMsg] = []
        status = ""
        linger_until = 0.0
        while True:
            items = self._items
            i = 0
            while i < len(items) and len(out) < self.batch:
                it = items[i]
                i += 1
                if isinstance(it, str):
                    status = it
                    break
                out.append(it)
            del items[:i]
            if status or len(out) >= self.batch or (out and self._open <= 0):
                break  # the request is over, or delivered all it asked for
            now = loop.time()
            if out and not linger_until:
                linger_until = now + LINGER_S
            left = (linger_until if out else self._open_until) - now
            if left <= 0:
                break  # the chunk so far (the request stays open), or no status came (server gone?)
            self._want = 1 if not out else self.batch - len(out)
            self._waiter = loop.create_future()
            try:
                await asyncio.wait_for(self._waiter, left)
            except asyncio.TimeoutError:
                pass
            finally:
                self._waiter = None
        if status == "423":
            self.pin_id, self.lost_pin = "", True
            return []
        if status in ("400", "409") and not out:
            await asyncio.sleep(0.2)  # consumer deleted / leader change / bad request: retry later
        # 408 (expired) / 404: the request is over
        return out

    async def ack(self, last: StoredMsg) -> None:
        """Acknowledge ``last`` and, ack policy ``all``, everything before it on this consumer."""
        await self.nc.publish(last.reply, b"+ACK")

    async def ack_floor(self) -> int:
        info = await admin.api(self.nc, f"CONSUMER.INFO.{self.group.stream}.{self.group.consumer(self.partition)}")
        return int((info.get("ack_floor") or {}).get("stream_seq") or 0)

    async def read_back(self, floor: int, first_seq: int, rebuild_s: float) -> AsyncIterator[list[StoredMsg]]:
        """The partition's messages before ``first_seq``, from ``rebuild_s`` before the ack floor's message
        (all unacknowledged ones after ``floor``): an ephemeral consumer, no acks, deleted afterwards."""
        if first_seq <= 1:
            return
        g = self.group
        cfg: dict[str, Any] = {"filter_subject": g.partition_filter(self.partition), "ack_policy": "none",
                               "inactive_threshold": int(30e9), "mem_storage": True, "num_replicas": 1}
        start = await self._floor_time(floor)
        if start is None:
            cfg.update(deliver_policy="by_start_sequence", opt_start_seq=max(1, floor + 1))
        else:
            t = start - dt.timedelta(seconds=rebuild_s)
            cfg.update(deliver_policy="by_start_time", opt_start_time=t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        info = await admin.api(self.nc, f"CONSUMER.CREATE.{g.stream}", {"stream_name": g.stream, "config": cfg})
        name = info["name"]
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{g.stream}.{name}"
        inbox = self.nc.new_inbox()
        queue: asyncio.Queue[Any] = asyncio.Queue()

        async def deliver(msg: Any) -> None:
            queue.put_nowait(msg)

        sub = await self.nc.subscribe(inbox, cb=deliver, pending_msgs_limit=-1, pending_bytes_limit=-1)
        try:
            # read until the message at first_seq (it is in the stream: it was just delivered), never until the
            # first empty answer: a new consumer on a cluster may answer "no messages" before it has caught up
            done, empty = False, 0
            while not done:
                await self.nc.publish(subject, json.dumps({"batch": READ_BACK_BATCH, "expires": int(2e9)}).encode(),
                                      reply=inbox)
                chunk: list[StoredMsg] = []
                while True:
                    try:
                        msg = await asyncio.wait_for(queue.get(), 5.0)
                    except asyncio.TimeoutError:
                        break
                    if (msg.headers or {}).get("Status"):
                        break  # this request is over (expired): ask again
                    m = from_reply(msg.subject, msg.data, msg.reply)
                    if m is None:
                        continue
                    if m.stream_seq >= first_seq:
                        done = True
                        break
                    chunk.append(m)
                    if len(chunk) >= READ_BACK_BATCH:
                        break
                if chunk:
                    empty = 0
                    yield chunk
                elif not done:
                    empty += 1
                    if empty >= READ_BACK_TRIES:  # first_seq aged out of the stream (or the server is gone)
                        log.warning("partition %d: read-back stopped before message %d (not found)",
                                    self.partition, first_seq)
                        done = True
        finally:
            await sub.unsubscribe()
            with contextlib.suppress(Exception):
                await admin.api(self.nc, f"CONSUMER.DELETE.{g.stream}.{name}")

    async def _floor_time(self, floor: int) -> dt.datetime | None:
        """When the ack floor's message was stored (None: no floor, or it has aged out)."""
        if floor <= 0:
            return None
        try:
            msg = await self.nc.jetstream().get_msg(self.group.stream, floor)
        except Exception:
            return None
        t = getattr(msg, "time", None)
        return t if isinstance(t, dt.datetime) else None
