"""The daemon's link when ``input.source = nats``: one worker of a partitioned consumer group.

One thread runs an asyncio loop with the nats-py connection and these tasks:

- heartbeat: the worker's key in the group's members bucket (expires after ``member_ttl_s``). A worker
  whose last good heartbeat is older than that has lost its *lease* (paused, cut off): it drops every
  partition at once, publishes and acknowledges nothing of what it held, and joins again.
- membership: every second, the live members and the group's configuration -> :func:`~.groups.assign`
  -> the partitions this worker pulls. A partition assigned away is finished (its batch scored and
  acknowledged), released and unpinned, so the next owner takes it at once.
- one puller per owned partition (:class:`~.pull.Puller`): the pin keeps a second worker out. On taking a
  partition (a new pin id) it reads the stream back: messages up to the consumer's ack floor rebuild the
  windows (:meth:`Ingest.prime`, ``rebuild_s``), later ones the previous owner never acknowledged are scored
  (``messages_caught_up``). A device seen for the first time gets its alert state from the retained
  bucket (:meth:`Scorer.adopt`), so a raised alert is cleared by the new owner and ``seq`` carries on.
- every batch: decode and window each message (the daemon's :meth:`Ingest.handle`), score (``after_read``),
  send what scoring produced, then acknowledge the batch's last message (ack policy ``all``).

Outputs go to NATS subjects (topic ``/`` -> ``.``): alerts with a ``Nats-Msg-Id`` of subject and ``seq``
(published through JetStream where a stream keeps their subject, which drops a duplicate; core messages
elsewhere), scores and stats as core messages; retained messages
(alert states, the status) are put in the group's retained KV bucket and published as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from edge_runtime.config import Config, ConfigError
from edge_runtime.integrations.nats import admin
from edge_runtime.integrations.nats.groups import (
    GroupConfig,
    GroupError,
    assign,
    kv_key,
    subject_matches,
    topic_to_subject,
)
from edge_runtime.integrations.nats.pull import Puller, StoredMsg
from edge_runtime.pipeline.documents import to_json
from edge_runtime.pipeline.stats import RateLimitedLog, Stats
from edge_runtime.pipeline.topics import format_topic

log = logging.getLogger(__name__)

MEMBERSHIP_POLL_S = 1.0
SHUTDOWN_S = 5.0  # the most close() spends unpinning, sending the offline status and draining (then it closes)
DRAIN_S = 2.0  # nats-py's drain_timeout (its default 30 s)
STREAM_RECHECK_S = 60.0  # the streams' subjects (which alert subjects a stream keeps) are listed again after this


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """End the link's event loop without waiting on tasks that ignore a cancel (asyncio.run would, for ever):
    cancel what is left, give it a second, close."""
    left = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in left:
        t.cancel()
    if left:
        with contextlib.suppress(Exception):
            loop.run_until_complete(asyncio.wait(left, timeout=1.0))
    for t in left:  # read what ended, so none is reported as never retrieved
        if t.done() and not t.cancelled():
            t.exception()
    with contextlib.suppress(Exception):
        loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


def worker_name(cfg: Config) -> str:
    """``nats.worker``, else ``runtime.instance``, else host name and process id (letters, digits, - and _)."""
    raw = cfg.worker or cfg.instance or f"{socket.gethostname()}-{os.getpid()}"
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in raw)[:64]


def _first_line(path: str, key: str) -> str:
    try:
        with open(path) as fh:
            return (fh.read().splitlines() or [""])[0]
    except OSError as exc:
        raise ConfigError(f"nats.{key}: cannot read {path}: {exc.strerror}") from None


def connect_options(cfg: Config, name: str) -> dict[str, Any]:
    """nats-py ``connect`` keyword arguments from ``[nats]``: servers, auth (user/password, token, creds, NKey),
    TLS; reconnects for ever."""
    opts: dict[str, Any] = {
        "servers": [u.strip() for u in cfg.servers.split(",") if u.strip()], "name": name,
        "allow_reconnect": True, "max_reconnect_attempts": -1, "reconnect_time_wait": 0.5,
        "connect_timeout": 3, "ping_interval": 5, "max_outstanding_pings": 2, "drain_timeout": DRAIN_S,
    }
    if cfg.nats_user:
        opts["user"] = cfg.nats_user
        opts["password"] = _first_line(cfg.nats_password_file, "nats_password_file") if cfg.nats_password_file else ""
    if cfg.token_file:
        opts["token"] = _first_line(cfg.token_file, "token_file")
    if cfg.creds_file:
        opts["user_credentials"] = cfg.creds_file
    if cfg.nkey_file:
        opts["nkeys_seed"] = cfg.nkey_file
    if cfg.nats_ca_file or cfg.nats_cert_file or any(u.startswith("tls://") for u in opts["servers"]):
        try:
            ctx = ssl.create_default_context(cafile=cfg.nats_ca_file or None)
            if cfg.nats_cert_file:
                ctx.load_cert_chain(cfg.nats_cert_file, cfg.nats_key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"nats.nats_ca_file/nats_cert_file/nats_key_file: cannot load TLS files: {exc}") from None
        opts["tls"] = ctx
    return opts


class NatsLink:
    """The :class:`~edge_runtime.service.sources.Source` of a consumer-group worker (see the module docstring).

    Callbacks (all run on the link's thread): ``on_message(topic, payload, arrival)`` per sensor message,
    ``after_read()`` after each batch (scores it), ``on_state(topic, payload)`` with a device's retained state,
    ``prime(topic, payload, arrival)`` for a message read back to rebuild windows, ``release(devices)`` when
    devices go to another worker."""

    def __init__(self, cfg: Config, on_message: Callable[..., None], status_topic: str,
                 online_doc: Callable[[], dict[str, Any]], stats: Stats, *,
                 after_read: Callable[[], None] | None, on_state: Callable[[str, bytes], object],
                 prime: Callable[[str, bytes, float], None], release: Callable[[list[str]], None],
                 device_of: Callable[[str], str | None], instance: str,
                 on_connected: Callable[[], None] | None = None, rebuild_s: float = 300.0) -> None:
        from edge_runtime.integrations.nats import require_nats

        require_nats()
        self.cfg = cfg
        self.worker = worker_name(cfg)
        self.instance = instance  # the group's name in alerts and states
        self.status_topic = status_topic
        self._online_doc = online_doc
        self.stats = stats
        self._on_message, self._after_read, self._on_state = on_message, after_read, on_state
        self._prime, self._release, self._device_of = prime, release, device_of
        self._on_connected = on_connected
        self.rebuild_s = rebuild_s
        self._opts = connect_options(cfg, self.worker)
        self.connected = threading.Event()
        self.status_owed = threading.Event()  # the online status at the connect was refused (the queue full)
        self.paused = False
        self.failure = ""
        self._rl = RateLimitedLog(log, cfg.log_interval_s)
        self._out: deque[tuple[str, bytes, bool, dict[str, str] | None]] = deque()
        self._max_out = cfg.max_outgoing
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._known: dict[str, int] = {}  # device -> partition, for the devices this worker owns
        self._pullers: dict[int, Puller] = {}
        self._lease_ok = 0.0  # monotonic time of the last good heartbeat
        self.group: GroupConfig | None = None
        self.nc: Any = None
        self._offline: dict[str, Any] | None = None
        self._stream_subjects: list[str] | None = None  # every stream's subjects (None: to be listed)
        self._streams_until = 0.0  # when they are listed again

    # -- the Source interface (daemon threads) ------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="edgewatch-nats", daemon=True)
        self._thread.start()

    def network_alive(self) -> bool:
        return not self.failure and (self._thread is None or self._thread.is_alive() or self._offline is not None)

    def detach_after_read(self) -> None:
        self._after_read = None

    def publish(self, topic: str, payload: str | bytes, qos: int = 1, retain: bool = False,
                bulk: bool = False) -> bool:
        """Queue one message for the link's thread; False when ``max_outgoing`` are waiting (half for bulk)."""
        limit = self._max_out // 2 if bulk else self._max_out
        if len(self._out) >= limit:  # the publisher retries it or counts it lost
            return False
        data = payload.encode() if isinstance(payload, str) else bytes(payload)
        subject = topic_to_subject(topic)
        headers = self._msg_id(subject, data) if qos and not retain and not bulk else None
        self._out.append((subject, data, retain, headers))
        self.stats.incr("published")
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and threading.current_thread() is not self._thread:
            loop.call_soon_threadsafe(wake.set)
        return True

    def close(self, offline: dict[str, Any], timeout: float = 3.0) -> None:
        """Finish the batches in hand, send what is queued and the ``offline`` status, unpin, disconnect."""
        self._offline = offline
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("NATS link still closing after %.1f s; leaving it to exit with the process", timeout)

    # -- the loop -----------------------------------------------------------------------
    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main())
        except Exception as exc:  # the thread's boundary: the daemon sees network_alive() False and exits 70
            self.failure = f"NATS link: {type(exc).__name__}: {str(exc)[:200]}"
            log.error("%s", self.failure)
            log.debug("NATS link failure", exc_info=True)
        finally:
            _close_loop(loop)

    async def _main(self) -> None:
        import nats

        self._loop = asyncio.get_running_loop()
        self._wake, self._stopping = asyncio.Event(), asyncio.Event()
        if self._offline is not None:  # close() came before the loop existed: it could not set _stopping
            self._stopping.set()

        async def disconnected() -> None:
            self.connected.clear()
            if self._offline is None:  # (closing: the stop's own disconnect is no trouble)
                self._rl.log(logging.WARNING, "nats_disconnected", "disconnected from NATS; reconnecting")

        async def reconnected() -> None:
            self.connected.set()
            self.stats.incr("reconnects")
            log.info("reconnected to NATS %s", self.nc.connected_url.netloc if self.nc.connected_url else "")

        async def error(exc: Exception) -> None:
            self._rl.log(logging.WARNING, "nats_error", "NATS: %s: %s", type(exc).__name__, str(exc)[:200])

        while True:
            # nats-py retries a first connect for ever (max_reconnect_attempts -1): race it against close()
            connecting = asyncio.ensure_future(nats.connect(**self._opts, disconnected_cb=disconnected,
                                                            reconnected_cb=reconnected, error_cb=error))
            stop = asyncio.ensure_future(self._stopping.wait())
            await asyncio.wait({connecting, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if not connecting.done():
                for _ in range(50):  # nats-py swallows a cancel that lands in its own clean-up: repeat it
                    connecting.cancel()
                    await asyncio.wait({connecting}, timeout=0.05)
                    if connecting.done():
                        break
                # it connected all the same: close that connection (a failure is read, so none goes unretrieved)
                if connecting.done() and not connecting.cancelled() and connecting.exception() is None:
                    with contextlib.suppress(Exception):
                        await connecting.result().close()
                return
            try:
                self.nc = connecting.result()
                break
            except Exception as exc:
                self._rl.log(logging.WARNING, "connect_failed", "cannot connect to NATS %s: %s; retrying",
                             self.cfg.servers, str(exc)[:200] or type(exc).__name__)
                if await self._stopped_within(1.0):
                    return
        try:
            self.group = await admin.load_group(self.nc, self.cfg.group)
        except GroupError as exc:
            self.failure = str(exc)
            log.critical("%s", exc)
            await self.nc.close()
            return
        js = self.nc.jetstream()
        self._members = await js.key_value(self.group.members_bucket)
        self._retained = await js.key_value(self.group.retained_bucket)
        self._js = js
        self.connected.set()
        log.info("NATS worker %s of group %s (stream %s, %d partitions) on %s", self.worker, self.group.name,
                 self.group.stream, self.group.partitions, self.nc.connected_url.netloc)
        if not self.publish(self.status_topic, to_json(self._online_doc()), qos=1, retain=True):
            self.status_owed.set()  # the outgoing queue full: the housekeeping sends it through the publisher
        if self._on_connected is not None:
            self._on_connected()
        tasks = [asyncio.create_task(t) for t in (self._heartbeats(), self._membership(), self._flusher())]
        await self._stopping.wait()
        # bounded, and not waiting on a cancel (nats-py can swallow one): a server gone meanwhile would keep it
        # reconnecting, and this thread alive, for ever
        closing = asyncio.ensure_future(self._shutdown(tasks))
        if not (await asyncio.wait({closing}, timeout=SHUTDOWN_S))[0]:
            log.warning("NATS link: closing took over %.0f s (server unreachable?); closed without the rest", SHUTDOWN_S)
        if not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait({asyncio.ensure_future(self.nc.close())}, timeout=DRAIN_S)

    async def _stopped_within(self, seconds: float) -> bool:
        assert self._stopping is not None
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
            return True
        except asyncio.TimeoutError:
            return False

    async def _shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        for p in list(self._pullers.values()):
            p.stop()
        await asyncio.gather(*(p.task for p in self._pullers.values() if p.task), return_exceptions=True)
        for k in list(self._pullers):
            await self._give_up(k, unpin=True)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._offline is not None and not self.publish(self.status_topic, to_json(self._offline), qos=1,
                                                          retain=True):
            self.stats.lose("outgoing_full")  # at the stop nothing retries it
            log.warning("NATS link: outgoing queue full at the stop: the offline status was not sent")
        await self._flush()
        try:
            await self._members.delete(self.worker)
            await self.nc.drain()
        except Exception as exc:
            log.debug("NATS close: %s", exc)

    # -- membership ---------------------------------------------------------------------
    def lease_ok(self) -> bool:
        assert self.group is not None
        return time.monotonic() - self._lease_ok < self.group.member_ttl_s

    async def _heartbeats(self) -> None:
        assert self.group is not None
        body = json.dumps({"worker": self.worker, "host": socket.gethostname(), "pid": os.getpid()}).encode()
        every = self.group.member_ttl_s / 4
        while True:
            sent = time.monotonic()
            try:
                await self._members.put(self.worker, body)
                if self._lease_ok and sent - self._lease_ok >= self.group.member_ttl_s:
                    self._lapse(sent)  # paused or cut off: the others own our partitions by now
                self._lease_ok = sent
            except Exception as exc:
                self._rl.log(logging.WARNING, "heartbeat", "heartbeat failed: %s", str(exc)[:200])
            await asyncio.sleep(every)

    async def _membership(self) -> None:
        assert self.group is not None
        while True:
            try:
                await self._rebalance()
            except Exception as exc:
                self._rl.log(logging.WARNING, "membership", "group membership: %s: %s", type(exc).__name__,
                             str(exc)[:200])
            await asyncio.sleep(MEMBERSHIP_POLL_S)

    async def _rebalance(self) -> None:
        assert self.group is not None
        if self._lease_ok and not self.lease_ok():  # paused or cut off for longer than a member lives
            self._lapse(time.monotonic())
            return
        if not self._lease_ok:
            return
        self.group = await admin.load_group(self.nc, self.group.name)
        seen = set(await admin.members(self.nc, self.group)) | {self.worker}  # our lease is good: we are one
        # a member missing from one listing is kept for one more poll (a listing can miss a key being
        # refreshed): no partition moves on a flap; a dead worker is dropped one poll later
        members = sorted(seen | (self._seen_before - {self.worker}))
        self._seen_before = seen
        mine = set(assign(self.group.partitions, members, self.group.drained).get(self.worker, []))
        for k in sorted(set(self._pullers) - mine):
            await self._give_up(k, unpin=True)
        for k in sorted(mine - set(self._pullers)):
            p = Puller(self.nc, self.group, k, self.cfg.fetch_batch)
            self._pullers[k] = p
            p.task = asyncio.create_task(self._pull_loop(p))
        if mine != self._last_mine:
            log.info("worker %s: partitions %s of %d (%d member(s))", self.worker, sorted(mine),
                     self.group.partitions, len(members))
            self._last_mine = mine

    def _lapse(self, now: float) -> None:
        """The lease ran out (no good heartbeat for ``member_ttl_s``): drop every partition at once, silently,
        and what the batch in hand produced; nothing of it is published or acknowledged (fenced)."""
        self.lease_epoch += 1
        if self._pullers:
            log.warning("lease lost (no heartbeat for %.1f s): dropping partitions %s unacknowledged",
                        now - self._lease_ok, sorted(self._pullers))
        self._out.clear()
        for k, p in list(self._pullers.items()):
            p.stop()
            if p.task is not None and p.task is not asyncio.current_task():
                p.task.cancel()
            del self._pullers[k]
            self._release_partition(k)
        self._seen_before = set()

    lease_epoch = 0  # bumped when the lease runs out: a batch taken under an older epoch is not ours any more
    _last_mine: set[int] = set()
    _seen_before: set[str] = set()

    async def _give_up(self, k: int, unpin: bool, wait: bool = True) -> None:
        """Stop pulling partition ``k``: its batch in hand is finished first (``wait``), its devices forgotten
        silently, and (``unpin``) the pin released so the next owner need not wait for it to time out."""
        p = self._pullers.pop(k, None)
        if p is None:
            return
        p.stop()
        if wait and p.task is not None:
            await asyncio.gather(p.task, return_exceptions=True)
        elif p.task is not None:
            p.task.cancel()
        self._release_partition(k)
        if unpin and p.pin_id and self.group is not None:
            try:
                await admin.unpin(self.nc, self.group, k)
            except Exception as exc:
                log.debug("unpin %d: %s", k, exc)

    def _release_partition(self, k: int) -> None:
        devices = [d for d, p in self._known.items() if p == k]
        for d in devices:
            del self._known[d]
        if devices:
            self._release(devices)
        self.stats.incr("partitions_released")

    # -- partitions ---------------------------------------------------------------------
    async def _pull_loop(self, p: Puller) -> None:
        await p.open()
        try:
            while (not p.stopped or p.requesting) and not self.paused:  # a stopping puller finishes its request
                batch = await p.fetch()
                if p.lost_pin:
                    log.info("partition %d: pin lost (another worker took it over)", p.partition)
                    self._release_partition(p.partition)
                    p.lost_pin = False
                    continue
                if not batch:
                    continue  # (a batch that came while stopping is still ours: scored and acknowledged)
                if not self.lease_ok():
                    continue  # ours no more: unacknowledged, redelivered to the partition's next owner
                if p.gained_pin:
                    p.gained_pin = False
                    self.stats.incr("partitions_taken")
                    self._release_partition(p.partition)
                    self.stats.counts["partitions_released"] -= 1  # the release above is a reset, not a give-up
                    await self._take_over(p, batch[0].stream_seq)
                    p.last_cseq = batch[0].cseq - 1
                gap = next((i for i, m in enumerate(batch) if m.cseq != p.last_cseq + 1 + i), None)
                if gap is not None:
                    # deliveries lost in transit (a server fail-over): acknowledging past them (ack all) would
                    # lose them, and their redelivery would come out of order. Score what came before the gap,
                    # then read the partition back up to the message after it, as a take-over does.
                    if gap:
                        await self._process(p, batch[:gap], ack=False)
                    self.stats.incr("delivery_gaps")
                    log.warning("partition %d: deliveries %d..%d lost in transit: reading the stream back",
                                p.partition, p.last_cseq + gap + 1, batch[gap].cseq - 1)
                    await self._take_over(p, batch[gap].stream_seq)
                p.last_cseq = batch[-1].cseq
                await self._process(p, batch, ack=True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._rl.log(logging.ERROR, "partition", "partition %d: %s: %s", p.partition, type(exc).__name__,
                         str(exc)[:200])
            log.debug("partition loop", exc_info=True)
        finally:
            await p.close()

    async def _take_over(self, p: Puller, first_seq: int) -> None:
        """Read partition ``p`` back from the stream up to ``first_seq``: prime windows with what the previous
        owner acknowledged (from ``rebuild_s`` before its ack floor), score what it did not."""
        floor = await p.ack_floor()
        primed = caught = 0
        async for chunk in p.read_back(floor, first_seq, self.rebuild_s):
            await self._adopt(p.partition, chunk)
            for m in chunk:
                if m.stream_seq <= floor:
                    self._prime(m.topic, m.data, m.time)
                    primed += 1
            rest = [m for m in chunk if m.stream_seq > floor]
            if rest:
                caught += len(rest)
                await self._process(p, rest, ack=False)
        self.stats.incr("messages_primed", primed)
        self.stats.incr("messages_caught_up", caught)
        log.info("partition %d taken over: %d message(s) read back to rebuild windows, %d unacknowledged "
                 "one(s) scored (ack floor %d, first delivered %d)", p.partition, primed, caught, floor, first_seq)

    async def _adopt(self, k: int, batch: list[StoredMsg]) -> None:
        """Devices seen for the first time: their retained alert state from the group's bucket."""
        new: dict[str, str] = {}
        known = self._known
        for topic in dict.fromkeys(m.topic for m in batch):  # a partition's batch holds few devices: each looked up once
            device = self._device_of(topic)
            if device and device not in known:
                new[device] = topic
        for device in new:
            self._known[device] = k
            topic = format_topic(self.cfg.state_topic, device=device)
            try:
                entry = await self._retained.get(kv_key(topic_to_subject(topic)))
            except Exception:
                continue  # no state yet (or deleted)
            if entry.value:
                self._on_state(topic, entry.value)
        if len(self._known) > 4 * self.cfg.max_devices:
            self._known = {d: q for d, q in self._known.items() if q in self._pullers}

    async def _process(self, p: Puller, batch: list[StoredMsg], ack: bool) -> None:
        """Window and score ``batch``, send what it produced, then acknowledge it (its last message, ack all)."""
        epoch = self.lease_epoch
        await self._adopt(p.partition, batch)
        handle = self._on_message
        for m in batch:
            try:
                handle(m.topic, m.data, m.time)
            except Exception as exc:  # one message never ends the partition
                self.stats.drop("internal_error")
                self._rl.log(logging.ERROR, "internal_error", "error handling a NATS message (%s: %s)",
                             type(exc).__name__, str(exc)[:200])
        if self._after_read is not None:
            self._after_read()
        while True:
            if not self.lease_ok() or self.paused or epoch != self.lease_epoch:
                if not self.paused:  # fenced off meanwhile: publish and acknowledge nothing of it
                    self._out.clear()
                return
            if await self._flush():
                break
            await asyncio.sleep(0.2)  # NATS refused an output (a fail-over): no ack before it is out
        if ack:
            await p.ack(batch[-1])
            self.stats.incr("messages_acked", len(batch))

    # -- outputs ------------------------------------------------------------------------
    def _msg_id(self, subject: str, data: bytes) -> dict[str, str] | None:
        """An alert's ``Nats-Msg-Id`` (instance, subject, seq; a process alert and a sensor alert of one device
        have their own seq): the same alert sent twice is stored once by a stream that keeps its subject."""
        try:
            doc = json.loads(data)
        except ValueError:
            return None
        if isinstance(doc, dict) and "seq" in doc and "device" in doc and "state" in doc:
            return {"Nats-Msg-Id": f"{self.instance}:{subject}:{doc['seq']}"}
        return None

    async def _kept(self, subject: str) -> bool:
        """Does a stream keep ``subject``? The streams' subjects are listed from JetStream once a minute (a stream
        made later is found) and matched here: an alert no stream keeps is a core message, never a JetStream
        request that nothing answers (or that a plain subscriber takes without answering: sent again for ever).
        JetStream not answering raises: the message waits for the next try."""
        now = time.monotonic()
        if self._stream_subjects is None or now >= self._streams_until:
            subjects: list[str] = []
            offset = 0
            while True:
                page = await self._js.streams_info_iterator(offset)
                subjects += [sub for info in page for sub in (info.config.subjects or [])]
                offset += len(page.streams)
                if not page.streams or offset >= page.total:
                    break
            self._stream_subjects, self._streams_until = subjects, now + STREAM_RECHECK_S
        return any(subject_matches(pat, subject) for pat in self._stream_subjects)

    async def _flusher(self) -> None:
        assert self._wake is not None
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.1)
            self._wake.clear()
            await self._flush()

    _flushing: asyncio.Lock | None = None

    async def _flush(self) -> bool:
        """Send every queued message, in order; False when NATS refused one. A message leaves the queue only
        once NATS has confirmed it: alerts (with a message id) are published through JetStream and confirmed
        by the stream that keeps them, when there is one; the others are core messages, confirmed together by
        a flush (a server that dies with them in its buffers never confirms them: they are sent again after the
        reconnect, at least once). Retained messages also go into the retained bucket (kept for the next
        owner). What failed waits at the head of the queue for the next try."""
        if self._flushing is None:
            self._flushing = asyncio.Lock()
        async with self._flushing:
            out = self._out
            sent: list[tuple[str, bytes, bool, dict[str, str] | None]] = []  # core messages not yet confirmed
            try:
                while len(sent) < len(out):
                    item = out[len(sent)]
                    subject, data, retain, headers = item
                    if retain:
                        await self._retained.put(kv_key(subject), data)
                    if headers is not None:
                        if sent:  # in order: what came before is confirmed first (and never sent again)
                            sent = await self._confirm(sent)
                        if await self._kept(subject):
                            try:
                                await self._js.publish(subject, data, timeout=2, headers=headers)
                            except Exception as exc:
                                if type(exc).__name__ in ("NoRespondersError", "NoStreamResponseError"):
                                    self._stream_subjects = None  # the stream went away: listed again next time
                                raise
                            if out and out[0] is item:
                                out.popleft()
                            continue
                    await self.nc.publish(subject, data, headers=headers)
                    sent.append(item)
                if sent:
                    await self._confirm(sent)
            except Exception as exc:
                self._rl.log(logging.WARNING, "nats_publish", "cannot send to NATS (%s: %s): %d message(s) wait",
                             type(exc).__name__, str(exc)[:120] or type(exc).__name__, len(out))
                return False
            return True

    async def _confirm(self, sent: list[tuple[str, bytes, bool, dict[str, str] | None]]) -> list[Any]:
        """Flush (NATS has every message sent before it), then drop ``sent`` from the head of the queue (unless
        a fence cleared the queue meanwhile); an empty list."""
        await self.nc.flush(timeout=5)
        out = self._out
        for item in sent:
            if not out or out[0] is not item:
                break
            out.popleft()
        return []


