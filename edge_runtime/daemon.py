"""Wires the pipeline: MQTT -> decode -> windows -> queue -> inference worker -> alerts -> MQTT.

Threads: paho's network thread runs :class:`Ingest` (decode, window, enqueue;
never blocks on inference); one :class:`Daemon` worker thread runs one
``session.run`` per micro-batch and publishes alerts; one housekeeping thread
publishes stats, expires idle devices and hot-reloads the model (SIGHUP or a
changed file). :meth:`Daemon.stop` stops input, scores what is queued,
publishes pending alerts and the offline status, then disconnects.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import numpy as np

from edge_runtime import __version__
from edge_runtime.alerts import CLEARED, RAISED, AlertPolicy, AlertTracker, DeviceState
from edge_runtime.batcher import WindowItem, WindowQueue, stack
from edge_runtime.config import Config, ConfigError
from edge_runtime.decode import DecodeError, Decoder
from edge_runtime.model import EdgeModel, FileSignature, ModelError, load_model
from edge_runtime.mqtt import MqttLink
from edge_runtime.stats import RateLimitedLog, Stats
from edge_runtime.topics import TopicRouter, format_topic, sanitize_id
from edge_runtime.windows import ACCEPTED, DUPLICATE, GAP, OUT_OF_ORDER, WINDOW, WindowStore

log = logging.getLogger(__name__)

MAX_CACHED_TOPIC = 256  # longer input topics are routed per message, not cached (bounds the cache's memory)


def gap_tolerance(cfg: Config, model: EdgeModel) -> float:
    """``input.gap_s``, or 10 x the model's sample period, or 60 s."""
    if cfg.gap_s > 0:
        return cfg.gap_s
    sp = model.metadata.sample_period_s
    return 10.0 * sp if sp else 60.0


def scoring_hop(cfg: Config, model: EdgeModel) -> int:
    """``input.hop`` (capped at the model's window), or the model's default hop when it is 0."""
    return min(cfg.hop, model.window) if cfg.hop > 0 else model.metadata.hop


class Ingest:
    """The MQTT-thread half: topic -> device, payload -> samples -> windows -> queue. Counts every drop."""

    def __init__(self, cfg: Config, model: EdgeModel, queue: WindowQueue, stats: Stats) -> None:
        self.cfg = cfg
        self.router = TopicRouter(cfg.topics)
        self.queue = queue
        self.stats = stats
        self.rl = RateLimitedLog(log, cfg.log_interval_s)
        self.lock = threading.RLock()  # guards decoder/store against a model swap (re-entered by reload)
        self.accepting = True
        self.on_forget: Any = None  # callback(device, reason) for evicted devices
        # input topic -> sanitised device id; bounded: cleared when full, topics > MAX_CACHED_TOPIC chars not kept
        self._ids: dict[str, str] = {}
        self.configure(model, keep_windows=False)

    def configure(self, model: EdgeModel, keep_windows: bool) -> None:
        """Use ``model``'s channels/window; keep device buffers when W and C are unchanged."""
        cfg = self.cfg
        with self.lock:
            self.decoder = Decoder(model.metadata.channels, cfg.max_payload_bytes, cfg.max_samples_per_message)
            gap = gap_tolerance(cfg, model)
            if keep_windows:
                self.store.retune(scoring_hop(cfg, model), gap)
            else:
                self.store = WindowStore(model.window, scoring_hop(cfg, model), model.n_channels, gap, cfg.max_devices)

    def handle(self, topic: str, payload: bytes) -> None:
        """One MQTT message (paho network thread)."""
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
        with self.lock:
            try:
                samples = self.decoder.decode_fast(payload, time.time())
            except DecodeError as exc:
                st.drop(exc.reason)
                self.rl.log(logging.WARNING, exc.reason, "device %s: %s", device, exc.detail)
                return
            if type(samples) is tuple:  # one plain sample: straight into the device's ring, no arrays
                ring, code, evicted = self.store.push_row(device, *samples, time.monotonic())
                if code == ACCEPTED and not evicted:  # the common case: nothing else to count
                    st.counts["samples"] += 1
                    return
                win = ring.last_window() if code & WINDOW else None
            else:
                res = self.store.push(device, samples.ts, samples.values, samples.stamped, time.monotonic())
                code = 0
        if code:
            self._counted_row(device, code, evicted, win)
            return
        st.counts["samples"] += res.accepted
        if res.out_of_order:
            st.drop("out_of_order", res.out_of_order)
            self.rl.log(logging.WARNING, "out_of_order", "device %s: %d sample(s) older than the latest dropped",
                        device, res.out_of_order)
        if res.duplicate:
            st.drop("duplicate", res.duplicate)
            self.rl.log(logging.WARNING, "duplicate", "device %s: %d duplicate timestamp(s) dropped", device, res.duplicate)
        if res.gaps:
            st.counts["gaps"] += res.gaps
            self.rl.log(logging.INFO, "gap", "device %s: time gap > %.3g s, window restarted", device, self.store.gap_s)
        self._evicted(res.evicted)
        if res.windows.shape[0]:
            self._enqueue(device, res.windows, res.t_start, res.t_end)


    def _counted_row(self, device: str, code: int, evicted: list[str],
                     win: tuple[np.ndarray, np.ndarray, np.ndarray] | None) -> None:
        """The rest of :meth:`handle` for one fast-path sample (``code``: WindowStore.push_row flags)."""
        st = self.stats
        if code & OUT_OF_ORDER:
            st.drop("out_of_order")
            self.rl.log(logging.WARNING, "out_of_order", "device %s: %d sample(s) older than the latest dropped",
                        device, 1)
        elif code & DUPLICATE:
            st.drop("duplicate")
            self.rl.log(logging.WARNING, "duplicate", "device %s: %d duplicate timestamp(s) dropped", device, 1)
        else:
            st.counts["samples"] += 1
        if code & GAP:
            st.counts["gaps"] += 1
            self.rl.log(logging.INFO, "gap", "device %s: time gap > %.3g s, window restarted", device, self.store.gap_s)
        self._evicted(evicted)
        if win is not None:
            self._enqueue(device, *win)

    def _evicted(self, evicted: list[str]) -> None:
        for dev in evicted:
            self.stats.counts["devices_evicted"] += 1
            self.rl.log(logging.WARNING, "device_evicted", "max_devices %d reached: evicted %s", self.cfg.max_devices, dev)
            if self.on_forget is not None:
                self.on_forget(dev, "evicted")

    def _enqueue(self, device: str, windows: np.ndarray, t_start: np.ndarray, t_end: np.ndarray) -> None:
        """Hand (k, W, C) windows to the inference queue; count what the bound drops."""
        st = self.stats
        st.counts["windows_queued"] += windows.shape[0]
        dropped = self.queue.put(WindowItem(device, windows, t_start, t_end, time.monotonic()))
        if dropped:
            st.drop("queue_full", dropped)
            self.rl.log(logging.WARNING, "queue_full", "inference queue full: %d window(s) dropped (%s)",
                        dropped, self.queue.policy)


INLINE_SWEEP_S = 0.05  # inline batching: the housekeeping thread scores windows left queued this long


class Daemon:
    """The running service. ``start()`` returns once threads run; ``stop()`` shuts down cleanly."""

    def __init__(self, cfg: Config, model: EdgeModel | None = None) -> None:
        self.cfg = cfg
        self.instance = cfg.instance_name
        self.stats = Stats()
        self.model = model or load_model(cfg.path, cfg.provider, cfg.intra_op_threads, cfg.max_model_bytes)
        self.queue = WindowQueue(cfg.queue_windows, cfg.queue_policy)
        self.ingest = Ingest(cfg, self.model, self.queue, self.stats)
        self.ingest.on_forget = self._forget
        self.tracker = AlertTracker(
            AlertPolicy(cfg.raise_after, cfg.clear_after, cfg.clear_ratio, cfg.top_channels), self.instance,
            seq_memory=cfg.max_devices,
        )
        self._tracker_lock = threading.Lock()
        self.status_topic = format_topic(cfg.status_topic, instance=self.instance)
        self.stats_topic = format_topic(cfg.stats_topic, instance=self.instance)
        self.discovery = self._make_discovery() if cfg.homeassistant_discovery else None
        self._discovery_lock = threading.Lock()
        self.link = MqttLink(cfg, self.ingest.router.filters, self.ingest.handle, self.status_topic,
                             self._online_doc, self.stats, on_connected=self._on_connected,
                             state_filter=format_topic(cfg.state_topic, device="+"), on_state=self._adopt)
        self._adopted: dict[str, float] = {}  # device -> monotonic time it was adopted (guarded by _tracker_lock)
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._reload_requested = threading.Event()
        self._threads: list[threading.Thread] = []
        self._score_lock = threading.Lock()  # one scorer at a time: a device's windows are scored in order
        self._inline = False
        self._batch_buf = np.zeros((cfg.max_batch, self.model.window, self.model.n_channels), np.float32)
        self._watch_sig: FileSignature | None = self.model.signature
        self._log_start()
        self.metrics = self._start_metrics() if cfg.metrics_port else None

    def _start_metrics(self) -> Any:
        from edge_runtime.metrics_http import MetricsUnavailable, start_metrics_server

        try:
            return start_metrics_server(self.stats_doc, self.cfg.metrics_port, self.cfg.metrics_addr)
        except MetricsUnavailable as exc:
            raise ConfigError(f"runtime.metrics_port: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"runtime.metrics_port: cannot listen on {self.cfg.metrics_addr}:"
                              f"{self.cfg.metrics_port}: {exc.strerror or exc}") from None

    def _make_discovery(self) -> Any:
        from edge_runtime.homeassistant import Discovery, DiscoverySettings

        cfg = self.cfg
        return Discovery(DiscoverySettings(
            instance=self.instance, prefix=cfg.homeassistant_prefix, state_topic=cfg.state_topic,
            alert_topic=cfg.alert_topic, score_topic=cfg.score_topic, status_topic=cfg.status_topic,
            model_id=self.model.model_id,
        ))

    def _on_connected(self) -> None:
        """After every (re)connect: retained discovery configs, if Home Assistant discovery is on."""
        if self.discovery is not None:
            with self._discovery_lock:
                msgs = self.discovery.on_connect()
            for topic, payload in msgs:
                self.link.publish(topic, payload, qos=1, retain=True)

    def _announce(self, device: str) -> None:
        if self.discovery is not None:
            with self._discovery_lock:
                msgs = self.discovery.on_device(device)
            for topic, payload in msgs:
                self.link.publish(topic, payload, qos=1, retain=True)

    # -- lifecycle ----------------------------------------------------------------------
    def _log_start(self) -> None:
        m = self.model
        log.info("model %s (%s): W=%d C=%d hop=%d threshold=%.6g; provider %s (%s)", m.model_id, m.path,
                 m.window, m.n_channels, scoring_hop(self.cfg, m), self.threshold, m.provider, m.provider_reason)

    @property
    def threshold(self) -> float:
        return self.cfg.threshold or self.model.threshold

    def start(self) -> Daemon:
        if self.cfg.batching == "inline":
            self._inline = self.link.set_after_read(self._score_queued)
            if not self._inline:
                log.warning("inference.batching = inline needs paho-mqtt 2.x (edge_runtime/mqtt_socket.py); "
                            "using opportunistic batching on an inference thread")
        self.link.start()
        workers = [("edgewatch-housekeeping", self._housekeeping)]
        if not self._inline:
            workers.insert(0, ("edgewatch-infer", self._worker))
        for name, target in workers:
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def request_stop(self) -> None:
        """Signal-safe: ask :meth:`wait` to return."""
        self._stop.set()

    def request_reload(self) -> None:
        """Signal-safe: reload the model file on the housekeeping thread."""
        self._reload_requested.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._stop.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop input, score what is queued, publish pending alerts and offline status, disconnect."""
        if self._stopped.is_set():
            return
        log.info("stopping: %d window(s) pending", len(self.queue))
        self.link.paused = True  # new sensor messages stay unacknowledged: redelivered after a restart
        self.ingest.accepting = False
        self._stop.set()
        self.queue.close()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        if self._inline:  # after a burst the network thread may still be scoring: wait for it, then take over
            with self._score_lock:
                self.link.set_after_read(None)
                self._drain_queue()
        self._publish_stats()
        self.link.close(self._offline_doc("stopped"), timeout=max(0.5, deadline - time.monotonic()))
        if self.metrics is not None:
            self.metrics.close()
        self._stopped.set()
        log.info("stopped")

    # -- documents ----------------------------------------------------------------------
    def _online_doc(self) -> dict[str, Any]:
        m = self.model
        return {"state": "online", "instance": self.instance, "version": __version__, "model_id": m.model_id,
                "provider": m.provider, "provider_reason": m.provider_reason, "channels": m.metadata.channels,
                "window": m.window, "threshold": self.threshold, "time": time.time()}

    def _offline_doc(self, reason: str) -> dict[str, Any]:
        return {"state": "offline", "instance": self.instance, "reason": reason, "time": time.time()}

    def stats_doc(self) -> dict[str, Any]:
        return self.stats.snapshot(
            instance=self.instance, devices_active=len(self.ingest.store), queue_windows=len(self.queue),
            provider=self.model.provider, model_id=self.model.model_id, connected=self.link.connected.is_set(),
            time=time.time(),
        )

    # -- inference -------------------------------------------------------------------------
    def _score_queued(self) -> None:
        """Inline batching (the network thread after each read burst; the housekeeping sweep): score every
        queued window in batches of up to max_batch."""
        if not len(self.queue):
            return
        with self._score_lock:
            self._drain_queue()

    def _drain_queue(self) -> None:
        """Score everything queued, in order (the caller holds ``_score_lock``)."""
        while True:
            items = self.queue.get_batch(self.cfg.max_batch, 0.0, timeout=0.0)
            if not items:
                return
            self._score_guarded(items)

    def _score_guarded(self, items: list[WindowItem]) -> None:
        try:
            self._score(items)
        except Exception:  # keep serving: one failed batch is counted, not fatal
            n = sum(it.n for it in items)
            self.stats.drop("inference_error", n)
            log.exception("inference failed for a batch of %d window(s)", n)

    def _worker(self) -> None:
        cfg = self.cfg
        # opportunistic: take whatever is queued (at least one window) at once; fill: wait up to max_wait_ms
        wait_s = cfg.max_wait_ms / 1000.0 if cfg.batching == "fill" else 0.0
        while True:
            items = self.queue.get_batch(cfg.max_batch, wait_s, timeout=0.25)
            if not items:
                if self._stop.is_set():
                    return
                continue
            self._score_guarded(items)

    def _score(self, items: list[WindowItem]) -> None:
        model = self.model
        shape = (model.window, model.n_channels)
        good = [it for it in items if it.windows.shape[1:] == shape]
        if len(good) < len(items):
            self.stats.drop("reload", sum(it.n for it in items if it not in good))
        with self.ingest.lock:  # windows of devices forgotten (evicted/expired) while queued
            live = self.ingest.store.devices
            gone = [it for it in good if it.device not in live]
            if gone:
                good = [it for it in good if it.device in live]
        if gone:
            self.stats.drop("device_gone", sum(it.n for it in gone))
        if not good:
            return
        if self._batch_buf.shape[1:] != shape:
            self._batch_buf = np.zeros((self.cfg.max_batch, *shape), np.float32)
        batch = stack(good, self._batch_buf)  # (B, W, C)
        t0 = time.perf_counter()
        score, ce = model.run(batch)
        self.stats.record_batch(batch.shape[0], time.perf_counter() - t0)
        thr = self.cfg.threshold or model.threshold
        channels = model.metadata.channels
        off = 0
        publish_scores = self.cfg.publish_scores or self.discovery is not None
        for it in good:
            s, c = score[off : off + it.n], ce[off : off + it.n]
            off += it.n
            # a device forgotten (evicted/expired/reset) since it queued these windows is not tracked again:
            # the check and the update under both locks, so _forget cannot run in between
            with self.ingest.lock, self._tracker_lock:
                if it.device not in self.ingest.store.devices:
                    continue  # forgotten while its windows were being scored
                alerts = self.tracker.update(it.device, s, c, it.t_start, it.t_end, thr, channels, model.model_id)
                state = self.tracker.state_payload(it.device) if alerts else None
            self._announce(it.device)  # Home Assistant discovery config, once per device
            for a in alerts:
                # locked: _forget counts alerts_cleared on other threads
                self.stats.incr("alerts_raised" if a["state"] == RAISED else "alerts_cleared")
                log.info("alert %s device=%s score=%.4g threshold=%.4g top=%s", a["state"], it.device, a["score"],
                         thr, ",".join(t["name"] for t in a["top_channels"]))
                self.link.publish(format_topic(self.cfg.alert_topic, device=it.device), json.dumps(a), qos=1)
            if state is not None:
                self.link.publish(format_topic(self.cfg.state_topic, device=it.device), json.dumps(state),
                                  qos=1, retain=True)
            if publish_scores:
                doc = {"device": it.device, "model_id": model.model_id, "threshold": thr,
                       "window_start": it.t_start.tolist(), "window_end": it.t_end.tolist(), "score": s.tolist()}
                self.link.publish(format_topic(self.cfg.score_topic, device=it.device), json.dumps(doc), qos=0)

    def _adopt(self, topic: str, payload: bytes) -> None:
        """A retained state of this instance from an earlier run (paho thread): a ``raised`` device is
        tracked as raised again, so its normal data clears it, or idle expiry does if it stays silent;
        from any state the device's ``seq`` carries on (bounded memory: ``tracker.seq_memory``)."""
        try:
            doc = json.loads(payload)
            device, seq = doc["device"], int(doc.get("seq") or 0)
        except (ValueError, TypeError, KeyError):
            return
        if (doc.get("instance") != self.instance or doc.get("state") not in (RAISED, CLEARED)
                or not isinstance(device, str) or topic != format_topic(self.cfg.state_topic, device=device)):
            return
        with self._tracker_lock:
            known = self.tracker.devices.get(device)
            if known is not None and known.seq > 0:
                return  # this run already published a newer state for it
            if doc["state"] == CLEARED:
                if known is None:
                    self.tracker.remember_seq(device, seq)
                else:  # seen in this run, no alert yet: carry on from the earlier run's seq
                    known.seq = max(known.seq, seq)
                return
            self.tracker.devices[device] = DeviceState(state=RAISED, seq=seq, alert_id=str(doc.get("raised_alert_id") or ""))
            self._adopted[device] = time.monotonic()
        log.info("device %s was left raised by an earlier run: tracked as raised until it clears or expires",
                 sanitize_id(device, self.cfg.max_device_id_len))

    def _forget(self, device: str, reason: str) -> None:
        """A device left (evicted/expired/reload): drop its alert state; a raised one gets a ``cleared``
        alert with ``reason`` (counted in ``alerts_cleared``) and a retained ``cleared`` state."""
        model = self.model
        with self._tracker_lock:
            st, alert = self.tracker.forget(device, reason, self.threshold, model.metadata.channels, model.model_id)
            self._adopted.pop(device, None)
        if self.discovery is not None:
            with self._discovery_lock:
                msgs = self.discovery.forget(device)
            for topic, payload in msgs:
                self.link.publish(topic, payload, qos=1, retain=True)
        if st is not None and alert is not None:
            self.stats.incr("alerts_cleared")
            log.info("alert cleared device=%s reason=%s", device, reason)
            self.link.publish(format_topic(self.cfg.alert_topic, device=device), json.dumps(alert), qos=1)
            doc = {"schema_version": 1, "device": device, "state": CLEARED, "reason": reason,
                   "raised_alert_id": st.alert_id, "seq": st.seq, "since": st.since, "instance": self.instance}
            self.link.publish(format_topic(self.cfg.state_topic, device=device), json.dumps(doc), qos=1, retain=True)

    # -- housekeeping -------------------------------------------------------------------
    def _housekeeping(self) -> None:
        cfg = self.cfg
        now = time.monotonic()
        next_stats = now + cfg.stats_interval_s if cfg.stats_interval_s else float("inf")
        next_watch = now + cfg.watch_interval_s if cfg.watch_interval_s else float("inf")
        next_expire = now + min(60.0, cfg.device_idle_s) if cfg.device_idle_s else float("inf")
        while not self._stop.wait(0.1):
            now = time.monotonic()
            if self._inline:  # a safety net: windows queued outside a read burst (none normally) wait <= 0.15 s
                oldest = self.queue.oldest_enqueued()
                if oldest is not None and now - oldest > INLINE_SWEEP_S:
                    self._score_queued()
            if self._reload_requested.is_set():
                self._reload_requested.clear()
                self.reload("SIGHUP")
            if now >= next_watch:
                next_watch = now + cfg.watch_interval_s
                self._check_file()
            if now >= next_expire:
                next_expire = now + min(60.0, cfg.device_idle_s)
                self.expire_idle(now)
            if now >= next_stats:
                next_stats = now + cfg.stats_interval_s
                self._publish_stats()

    def expire_idle(self, now: float) -> list[str]:
        with self.ingest.lock:
            gone = self.ingest.store.expire(now, self.cfg.device_idle_s)
            live = self.ingest.store.devices
            with self._tracker_lock:  # adopted raised devices that never sent data in this run
                for dev, t in list(self._adopted.items()):
                    if dev in live or dev not in self.tracker.devices:
                        del self._adopted[dev]  # sending again (or forgotten): handled like any device
                    elif now - t >= self.cfg.device_idle_s:
                        del self._adopted[dev]
                        gone.append(dev)
        for dev in gone:
            self.stats.incr("devices_expired")
            self._forget(dev, "expired")
        if gone:
            log.info("%d idle device(s) expired after %.0f s without data", len(gone), self.cfg.device_idle_s)
        return gone

    def _publish_stats(self) -> None:
        doc = self.stats_doc()
        log.info(
            "stats: messages=%d samples=%d windows=%d alerts=%d/%d drops=%s devices=%d batch=%.1f p50=%s ms p99=%s ms provider=%s",
            doc["messages"], doc["samples"], doc["windows_scored"], doc["alerts_raised"], doc["alerts_cleared"],
            doc["drops"] or "{}", doc["devices_active"], doc["batch_size_mean"],
            "-" if doc["inference_ms_p50"] is None else doc["inference_ms_p50"],
            "-" if doc["inference_ms_p99"] is None else doc["inference_ms_p99"], doc["provider"],
        )
        self.link.publish(self.stats_topic, json.dumps(doc), qos=0)

    def _check_file(self) -> None:
        try:
            sig = FileSignature.of(self.model.path)
        except OSError:
            return
        if sig != self._watch_sig:
            self._watch_sig = sig
            self.reload("file changed")

    def reload(self, why: str) -> bool:
        """Load, validate and swap in the model file; on any error keep the old model. True if swapped."""
        old = self.model
        try:
            new = load_model(self.cfg.path, self.cfg.provider, self.cfg.intra_op_threads, self.cfg.max_model_bytes)
        except ModelError as exc:
            self.stats.incr("reloads_refused")
            log.error("model reload (%s) refused, keeping %s: %s", why, old.model_id, exc)
            return False
        except Exception as exc:  # an unforeseen failure must not kill the housekeeping thread
            self.stats.incr("reloads_refused")
            reason = (str(exc).strip().splitlines() or [""])[0][:200]
            log.error("model reload (%s) refused, keeping %s: unexpected %s: %s", why, old.model_id,
                      type(exc).__name__, reason)
            return False
        keep = (new.window, new.n_channels) == (old.window, old.n_channels)
        with self.ingest.lock:
            dropped_devices = [] if keep else list(self.ingest.store.devices)
            self.model = new
            self.ingest.configure(new, keep_windows=keep)
            if not keep:
                dropped = self.queue.clear()
                if dropped:
                    self.stats.drop("reload", dropped)
        for dev in dropped_devices:  # their windows are gone: a raised one is cleared (reason "reload")
            self._forget(dev, "reload")
        self._watch_sig = new.signature
        self.stats.incr("reloads")
        log.info("model reloaded (%s): %s -> %s, W=%d C=%d, device windows %s; provider %s (%s)", why,
                 old.model_id, new.model_id, new.window, new.n_channels, "kept" if keep else "reset",
                 new.provider, new.provider_reason)
        self.link.publish(self.status_topic, json.dumps(self._online_doc()), qos=1, retain=True)
        return True
