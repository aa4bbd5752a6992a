"""The network-thread half of the daemon: topic -> device, payload -> samples -> windows -> the batch buffer.

Runs on paho's network thread for every sensor message. It blocks on inference only to apply back-pressure
when the batch buffer is full (``settle``, outside the lock). Every drop is counted
(:class:`~edge_runtime.pipeline.stats.Stats`) and logged at a bounded rate.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from edge_runtime.config import Config
from edge_runtime.pipeline.batcher import WindowItem
from edge_runtime.pipeline.decode import DecodeError, Decoder, Samples
from edge_runtime.pipeline.documents import Outbound
from edge_runtime.pipeline.health import stale_limit
from edge_runtime.pipeline.states import SETTLING, STOPPED, StateGate, runs
from edge_runtime.pipeline.stats import RateLimitedLog, Stats
from edge_runtime.pipeline.topics import TopicRouter, sanitize_id
from edge_runtime.pipeline.windows import (
    GAP_PERIODS,
    PushResult,
    WindowStore,
    device_bytes,
    devices_within,
    merge_results,
)
from edge_runtime.service.model import EdgeModel
from edge_runtime.service.sensor_health import SensorHealth

log = logging.getLogger(__name__)

MAX_CACHED_TOPIC = 256  # longer input topics are routed per message, not cached (bounds the cache's memory)


def gap_tolerance(cfg: Config, model: EdgeModel) -> float:
    """``input.gap_s``, or :data:`GAP_PERIODS` (10) x the model's sample period, or 60 s."""
    if cfg.gap_s > 0:
        return cfg.gap_s
    sp = model.metadata.sample_period_s
    return GAP_PERIODS * sp if sp else 60.0


def scoring_hop(cfg: Config, model: EdgeModel) -> int:
    """``input.hop`` (capped at the model's window), or the model's default hop when it is 0."""
    return min(cfg.hop, model.window) if cfg.hop > 0 else model.metadata.hop


def state_gate(cfg: Config, model: EdgeModel, max_devices: int) -> StateGate | None:
    """The model's operating states as a :class:`StateGate`, or None (``input.operating_states`` off, a model
    without states, or one whose states recognise nothing)."""
    states = model.metadata.state_model() if cfg.operating_states else None
    if states is None:
        return None
    rule = states.rule(model.metadata.channels)
    return StateGate(rule, states.settle_samples, max_devices) if rule.active else None


def gate_reason(gate: StateGate, state: str) -> str:
    """Why a device is in ``state``, in words (the operating document's ``reason``)."""
    rule = gate.rule
    if state == STOPPED:
        if rule.condition is not None:
            return f"the running condition {rule.condition.text()} does not hold"
        return "at the stopped signature (the model's stop_channels within their stop_tolerance)"
    if state == SETTLING:
        return f"the first {gate.settle} samples after a start are not scored"
    return "scored"


def _unwired(item: WindowItem) -> int:
    raise RuntimeError("Ingest.put is not wired to a batch buffer")


class Ingest:
    """Decode and window each message; hand due windows to ``put`` (set by the daemon: a ``WindowBuffer`` or
    ``WindowQueue``'s ``put``, which returns the windows its bound dropped) and, after each put with the
    lock released, to ``settle`` when set (threaded batching: wait for room to place what ``put`` held; returns
    the windows dropped all the same). ``lock`` guards the decoder, the window store and (inline batching) the
    buffer against a model swap and the daemon's other threads."""

    def __init__(self, cfg: Config, model: EdgeModel, stats: Stats,
                 put: Callable[[WindowItem], int] | None = None, policy: str = "") -> None:
        self.cfg = cfg
        self.router = TopicRouter(cfg.topics)
        self.put: Callable[[WindowItem], int] = put or _unwired
        self.settle: Callable[[], int] | None = None
        self.policy = policy or cfg.queue_policy
        self.stats = stats
        self.rl = RateLimitedLog(log, cfg.log_interval_s)
        self.lock = threading.RLock()  # re-entered by reload
        self.accepting = True
        self.on_forget: Callable[[str, str], None] | None = None  # callback(device, reason) for evicted devices
        # callback(device) for each message of a device whose ``rejected`` sensor alert is raised (outside the lock):
        # it sends, though nothing decodes (the daemon keeps its Home Assistant device announced and available)
        self.on_heard: Callable[[str], None] | None = None
        # callback(device, state, since, reason) when a device's operating state changes (under the lock)
        self.on_state: Callable[[str, str, float, str], None] | None = None
        self.states: StateGate | None = None  # the model's operating states (input.operating_states)
        self.send: Callable[[list[Outbound]], object] | None = None  # sensor alerts, health documents (the daemon's)
        self.health: SensorHealth | None = None
        self._quiet: set[str] = set()  # with the sensor checks off: the devices found quiet at the last check
        self._stale_s = 0.0
        if cfg.sensor_checks:
            self.health = SensorHealth(cfg, model, stats, self.rl, cfg.instance_name)
        # input topic -> sanitised device id; bounded: cleared when full, topics > MAX_CACHED_TOPIC chars not kept
        self._ids: dict[str, str] = {}
        self.decoder: Decoder
        self.store: WindowStore
        self.configure(model, keep_windows=False)

    def configure(self, model: EdgeModel, keep_windows: bool) -> None:
        """Use ``model``'s channels/window; keep device buffers when W and C are unchanged."""
        cfg = self.cfg
        with self.lock:
            self.decoder = Decoder(model.metadata.channels, cfg.max_payload_bytes, cfg.max_samples_per_message,
                                   cfg.max_future_s, missing=cfg.sensor_checks)
            if self.health is not None and hasattr(self, "store"):  # a reload (__init__ configured it already)
                self.health.configure(model)
            gap = gap_tolerance(cfg, model)
            if keep_windows:
                self.store.retune(scoring_hop(cfg, model), gap)
            else:
                # a W/C change restarts every window, but each device's latest timestamp carries over: a sample
                # sent again after the reload is still a duplicate
                carried = self.store.last_timestamps() if hasattr(self, "store") else None
                self.store = WindowStore(model.window, scoring_hop(cfg, model), model.n_channels, gap,
                                         self.device_cap(model), clock_reset_after=cfg.clock_reset_after,
                                         last_ts=carried)
            if self.health is not None:  # plain rows are checked in blocks of this many (after a reload too)
                self.store.check_every = self.health.check_every
            # the checks' stale limit, for the quiet devices when the checks are off (health.stale_after_s)
            self._stale_s = stale_limit(model.metadata.health or {}, model.metadata.sample_period_s,
                                        cfg.stale_after_s or None)
            self.states = state_gate(cfg, model, self.store.max_devices)
        if self.health is not None and self.health.outbox:  # a reload cleared devices rejected by the old model
            self._send_health()


    def device_cap(self, model: EdgeModel) -> int:
        """``max_devices``, lowered so the devices' buffers fit ``device_memory_mb`` for this model's W and C."""
        cfg = self.cfg
        cap = devices_within(cfg.device_memory_mb * 2**20, model.window, model.n_channels, cfg.max_devices)
        if cap < cfg.max_devices:
            log.warning("input.device_memory_mb %g with W=%d C=%d (%d bytes a device): at most %d devices kept "
                        "(max_devices %d)", cfg.device_memory_mb, model.window, model.n_channels,
                        device_bytes(model.window, model.n_channels), cap, cfg.max_devices)
        return cap

    def handle(self, topic: str, payload: bytes | bytearray, arrival: float | None = None) -> None:
        """One MQTT message (paho network thread); ``arrival``: when the broker stored it (NATS: the stream's
        time, so a redelivered message without timestamps gets the same ones), else now."""
        st = self.stats
        st.counts["messages"] += 1
        device = self._ids.get(topic)
        if device is None:  # routing and sanitising once per topic, not per message
            raw = self.router.device(topic)
            if raw is None:
                st.drop("unknown_topic")
                self.rl.log(logging.WARNING, "unknown_topic", "topic %r does not fit the input templates", topic[:200])
                return
            device = sanitize_id(raw, self.cfg.max_device_id_len)
            if len(topic) <= MAX_CACHED_TOPIC:
                if len(self._ids) >= 2 * self.cfg.max_devices:
                    self._ids.clear()
                self._ids[topic] = device
        if not self.accepting:
            st.drop("shutdown")
            return
        health = self.health
        heard = False
        with self.lock:
            try:
                samples = self.decoder.decode(payload, time.time() if arrival is None else arrival)
            except DecodeError as exc:
                st.drop(exc.reason)
                self.rl.log(logging.WARNING, exc.reason, "device %s: %s", device, exc.detail)
                if health is None:
                    return
                health.rejected(device, exc.reason, exc.detail, self.store.devices)
                if device in health.rejected_raised:  # it sends: neither stale nor idle, its alert says why
                    self.store.heard(device, time.monotonic())
                    heard = True
                samples = None
            if samples is not None:
                # a device whose last messages were all dropped sends one that decodes: its rejected alert clears
                cleared = bool(health is not None and (health.rejects or health.rejected_raised)
                               and health.input_accepted(device))
                store = self.store
                gate = self.states
                if gate is None:
                    res = self._push(device, samples, time.monotonic())
                else:
                    res = self._gated(gate, device, samples, time.monotonic())
                if res is store.one_accepted and not cleared:  # the common case: one sample in, nothing to count
                    st.counts["samples"] += 1
                    return
                if health is not None and samples.row is not None and res.accepted and device in store.devices:
                    health.flush(device, store.devices[device])  # check_every plain rows wait: check them
                if res.windows.shape[0]:  # under the lock: a reload's clear of the buffer cannot interleave
                    self._put(device, res.windows, res.t_start, res.t_end)
        if samples is None:  # dropped whole: the rejected alert, if it was raised now
            if health is not None and health.outbox:
                self._send_health()
            if heard and self.on_heard is not None:
                self.on_heard(device)
            if health is not None and health.let_go:
                self._let_go()
            return
        self._after(device, res)

    def _after(self, device: str, res: PushResult) -> None:
        """Outside the lock: place held windows, send sensor messages, count."""
        if self.settle is not None and res.windows.shape[0]:
            self._dropped(self.settle())
        if self.health is not None and self.health.outbox:
            self._send_health()
        self._count(device, res)

    def device_of(self, topic: str) -> str | None:
        """The sanitised device id of an input ``topic`` (None when it fits no template); nothing counted."""
        device = self._ids.get(topic)
        if device is None:
            raw = self.router.device(topic)
            device = None if raw is None else sanitize_id(raw, self.cfg.max_device_id_len)
        return device

    def prime(self, topic: str, payload: bytes | bytearray, arrival: float) -> None:
        """A message read back only to rebuild its device's window (a NATS partition taken over): its samples
        go into the window store, the windows they complete are not scored (the previous owner did) and
        nothing is counted; a message that does not decode is skipped (it was counted when first read)."""
        device = self.device_of(topic)
        if device is None:
            return
        with self.lock:
            try:
                samples = self.decoder.decode(payload, arrival)
            except DecodeError:
                return
            if self.health is not None and samples.row is None:  # missing values filled: the ring holds no NaN
                self._push_block(device, samples.ts, samples.values, samples.stamped, time.monotonic())
            else:
                self.store.push_samples(device, samples, time.monotonic())

    def release(self, devices: list[str]) -> None:
        """Forget ``devices``' windows and operating states silently (another worker of the group owns them now)."""
        with self.lock:
            for d in devices:
                self.store.devices.pop(d, None)
                if self.states is not None:
                    self.states.forget(d)
                if self.health is not None:
                    self.health.running_owed.pop(d, None)
    def _let_go(self) -> None:
        """Rejected devices without a window that the bound on them let go: forgotten like evicted ones."""
        if self.health is None:
            return
        with self.lock:
            gone, self.health.let_go = self.health.let_go, []
        for dev in gone:
            if self.on_forget is not None:
                self.on_forget(dev, "evicted")

    def _send_health(self) -> None:
        with self.lock:
            out = self.health.take() if self.health is not None else []
        if out and self.send is not None:
            self.send(out)

    def _push(self, device: str, samples: Samples, now: float) -> PushResult:
        """Push decoded samples (under the lock); with sensor health, a message with arrays is checked and
        filled first (:meth:`_push_block`); plain single samples are checked in blocks later (:meth:`flush`)."""
        if self.health is None or samples.row is not None:
            return self.store.push_samples(device, samples, now)
        self._count_missing(device, samples)
        return self._push_block(device, samples.ts, samples.values, samples.stamped, now, samples.missing is None)

    def _count_missing(self, device: str, samples: Samples) -> None:
        if samples.missing:
            self.stats.counts["values_filled"] += sum(samples.missing.values())
            self.stats.count_in(self.stats.missing, samples.missing)
            self.rl.log(logging.INFO, "missing_value", "device %s: missing value(s) %s: kept the rest of the "
                        "sample, carried the last value forward", device, samples.missing)

    def _push_block(self, device: str, ts: np.ndarray, values: np.ndarray, stamped: bool, now: float,
                    plain: bool = False) -> PushResult:
        """Samples ``ts`` (n,) / ``values`` (n, C) that enter the window ring: checked and filled (in place)
        by sensor health first when it is on (``plain``: no value is missing)."""
        h = self.health
        if h is None:
            return self.store.push(device, ts, values, stamped, now)
        ring, evicted = self.store.ring(device, now)
        h.check_block(device, ring, ts, values, plain)
        res = self.store.push(device, ts, values, stamped, now)
        ring.unchecked = 0  # its rows were checked above
        if evicted:
            res.evicted = list(evicted) + res.evicted
        return res

    def check_stale(self, now: float) -> list[str]:
        """Housekeeping: devices that went quiet for the stale limit raise a ``stale`` sensor alert; those found
        stale now (with the sensor checks off too, without an alert: what waits for their data, an evidence
        episode's margin after a clear, must not wait until they expire)."""
        if self.health is None:
            with self.lock:
                quiet = {d for d, ring in self.store.devices.items() if now - ring.last_seen > self._stale_s}
                found, self._quiet = [d for d in quiet if d not in self._quiet], quiet
            return found
        with self.lock:
            found = self.health.check_stale(now, self.store)
        self._send_health()
        return found

    def stale_limit_s(self) -> float:
        """How long a device may be quiet before it is ``stale`` (with the sensor checks off, before it is quiet)."""
        return self.health.limits.stale_after_s if self.health is not None else self._stale_s

    def forget_health(self, device: str, reason: str) -> list[Outbound]:
        """A device left: its raised sensor alerts cleared (``reason``); the messages to send."""
        if self.health is None:
            return []
        with self.lock:
            return self.health.forget(device, reason)

    def handle_samples(self, device: str, samples: Samples) -> None:
        """Samples a source decoded itself (Sparkplug B; it counted the message): windowed like a message's."""
        if not self.accepting:
            self.stats.drop("shutdown", len(samples))
            return
        with self.lock:
            gate = self.states
            if gate is None:
                res = self._push(device, samples, time.monotonic())
            else:
                res = self._gated(gate, device, samples, time.monotonic())
            if res.windows.shape[0]:
                self._put(device, res.windows, res.t_start, res.t_end)
        self._after(device, res)

    def _gated(self, gate: StateGate, device: str, samples: Samples, now: float) -> PushResult:
        """Window only the samples of a running machine (:class:`StateGate`); the others restart the device's
        window (counted as samples_stopped / samples_settling) and each state change is reported (under the lock)."""
        store = self.store
        if samples.row is not None:  # one plain sample: no arrays
            keep, change = gate.gate_row(device, samples.row)
            if change is not None:
                if self.health is not None and device in store.devices:  # its rows so far belong before the change
                    self.health.flush(device, store.devices[device])
                self._state_changed(device, change, samples.t)
            if keep:
                return store.push_samples(device, samples, now)
            self.stats.counts[f"samples_{gate.state(device)}"] += 1
            if self.health is not None and device in store.devices:  # the rows waiting in the ring first
                self.health.flush(device, store.devices[device])
            return store.hold(device, 1, samples.t, samples.stamped, now)
        ts, values = samples.ts, samples.values
        code, changes = gate.gate(device, values)
        if not code.any():
            for i, state in changes:
                self._state_changed(device, state, float(ts[i]))
            return self._push(device, samples, now)
        self._count_missing(device, samples)
        if self.health is not None and device in store.devices:
            self.health.flush(device, store.devices[device])
        counts = np.bincount(code, minlength=3)
        self.stats.counts["samples_stopped"] += int(counts[1])
        self.stats.counts["samples_settling"] += int(counts[2])
        keep = code == 0
        parts = sorted([(a, b, True) for a, b in runs(keep)] + [(a, b, False) for a, b in runs(~keep)])
        results, pending = [], list(changes)
        for a, b, kept in parts:  # each state change reported where it happens: the rows before it checked first
            while pending and pending[0][0] <= a:
                i, state = pending.pop(0)
                self._state_changed(device, state, float(ts[i]))
            results.append(self._push_block(device, ts[a:b], values[a:b], samples.stamped, now,
                                            samples.missing is None) if kept  # sensor health: running only
                           else store.hold(device, b - a, float(ts[b - 1]), samples.stamped, now))
        for i, state in pending:
            self._state_changed(device, state, float(ts[i]))
        return merge_results(results)

    def _state_changed(self, device: str, state: str, since: float) -> None:
        gate = self.states
        reason = gate_reason(gate, state) if gate is not None else state
        # a device's running after a start is published by the sensor checks once they can tell it is not out of
        # distribution (then that is said instead; counted and logged there)
        if self.health is not None and self.health.state_changed(device, state, since, reason,
                                                                 self.store.devices.get(device)):
            return
        self.stats.counts["state_changes"] += 1
        if self.health is not None and self.health.outbox:  # a running paid by the checks goes out before this
            self._send_health()
        self.rl.log(logging.INFO, "operating_state", "device %s: %s (%s)", device, state, reason)
        if self.on_state is not None:
            self.on_state(device, state, since, reason)

    def _count(self, device: str, res: PushResult) -> None:
        st = self.stats
        st.counts["samples"] += res.accepted
        if res.out_of_order:
            st.drop("out_of_order", res.out_of_order)
            self.rl.log(logging.WARNING, "out_of_order", "device %s: %d sample(s) older than the latest dropped",
                        device, res.out_of_order)
        if res.duplicate:
            st.drop("duplicate", res.duplicate)
            self.rl.log(logging.WARNING, "duplicate", "device %s: %d duplicate timestamp(s) dropped", device, res.duplicate)
        if res.clock_resets:
            st.counts["clock_resets"] += res.clock_resets
            self.rl.log(logging.WARNING, "clock_reset", "device %s: clock went back for %d samples in a row: "
                        "window restarted on the new clock", device, self.cfg.clock_reset_after)
        if res.gaps:
            st.counts["gaps"] += res.gaps
            self.rl.log(logging.INFO, "gap", "device %s: time gap > %.3g s, window restarted", device, self.store.gap_s)
        for dev in res.evicted:
            st.counts["devices_evicted"] += 1
            self.rl.log(logging.WARNING, "device_evicted", "%d devices (max_devices / device_memory_mb) reached: "
                        "evicted %s", self.store.max_devices, dev)
            if self.states is not None:
                self.states.forget(dev)
            if self.on_forget is not None:
                self.on_forget(dev, "evicted")

    def _put(self, device: str, windows: np.ndarray, t_start: np.ndarray, t_end: np.ndarray) -> None:
        """Hand (k, W, C) windows to the batch buffer (with the channels to leave out of the score); count what
        its bound drops. The windows of a degraded or out-of-distribution device are counted (``windows_degraded``,
        ``windows_out_of_distribution``), not scored."""
        excluded = None
        if self.health is not None:
            excluded, skip = self.health.window_mask(device, self.store.devices[device])
            if skip is not None:
                self.stats.counts[f"windows_{skip}"] += windows.shape[0]
                return
        self.stats.counts["windows_queued"] += windows.shape[0]
        self._dropped(self.put(WindowItem(device, windows, t_start, t_end, time.monotonic(), excluded)))

    def _dropped(self, dropped: int) -> None:
        if dropped:
            self.stats.drop("queue_full", dropped)
            self.rl.log(logging.WARNING, "queue_full", "inference queue full: %d window(s) dropped (%s)",
                        dropped, self.policy)
