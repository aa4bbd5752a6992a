"""The housekeeping thread: the stats tick, idle-device expiry, the model file watch and reload, the inline sweep.

While the input link is down (the broker unreachable), no device can be heard: the stale checks and idle expiry
pause, and after the reconnect each device gets the stale limit (expiry: at least :data:`EXPIRY_GRACE_S`) to send
again before it is ``stale`` or expired, so a broker outage raises no ``stale`` sensor alert for devices that
carry on (``stale_checks_paused`` counts the outages).

A model reload (SIGHUP or a changed file) loads and validates the new file first (contract, test run, the
pin) and keeps the old model on any error (counted, logged, reported in the status document's
``last_refused``); windows are kept when W and C are unchanged, else every device restarts (a raised
one gets a ``cleared`` alert with reason ``reload``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from edge_runtime.config import Config
from edge_runtime.pipeline.documents import Outbound, to_json
from edge_runtime.pipeline.stats import Stats
from edge_runtime.service.ingest import Ingest
from edge_runtime.service.model import (
    EdgeModel,
    FileSignature,
    ModelError,
    PinError,
    check_pin,
    file_sha256,
    load_model,
)
from edge_runtime.service.publisher import Publisher
from edge_runtime.service.scorer import Scorer

log = logging.getLogger(__name__)

SAVE_INTERVAL_S = 5.0  # the per-device thresholds file is written at most this often (and at stop)
STALE_CHECK_S = 1.0  # how often devices are checked for staleness (health.stale_after_s)
EXPIRY_GRACE_S = 60.0  # after the link is back, idle expiry waits at least this long (devices resend first)


class Batching(Protocol):
    def sweep(self, now: float) -> None: ...
    def clear(self) -> int: ...


@dataclass(eq=False)
class Housekeeping:
    """Periodic work off the hot path; :meth:`run` is the thread's loop (until ``stop`` is set).
    ``status``: the retained online status message (published after a reload)."""

    cfg: Config
    scorer: Scorer
    batching: Batching
    publisher: Publisher
    stats_doc: Callable[[], dict[str, Any]]
    status: Callable[[], Outbound]
    stop: threading.Event
    stats_topic: str = ""
    reload_requested: threading.Event = field(default_factory=threading.Event)
    # is the MQTT network thread alive? When it is not, ``on_fatal(why)`` is called and the loop ends
    link_alive: Callable[[], bool] | None = None
    on_fatal: Callable[[str], None] | None = None
    rollout_tick: Callable[[float], None] | None = None  # fleet rollout's work (edge_runtime/service/rollout.py)
    link_up: Callable[[], bool] | None = None  # is the input link connected now? (None: always)
    # set by the link when its online status at a connect was refused (its queue full): sent here, cleared first
    # (a connect refused again after the clear sets it again: sent once more)
    status_owed: threading.Event | None = None

    def __post_init__(self) -> None:
        self.ingest: Ingest = self.scorer.ingest
        self.stats: Stats = self.scorer.stats
        # the configured model file (a rollout may serve a staged file meanwhile; a change of this one reloads it)
        self._watched_path: Path = Path(self.cfg.path) if self.cfg.path else self.scorer.model.path
        self._watch_sig: FileSignature | None = (
            self.scorer.model.signature if self._watched_path == self.scorer.model.path else self._stat_watched())
        self.last_refused: dict[str, Any] | None = None  # the last model refused: what, reason, time
        self._down_at: float | None = None  # when the input link went down (monotonic), None while up
        self._stale_from = self._expire_from = 0.0  # no stale check / expiry before these (after a reconnect)

    def run(self) -> None:
        cfg = self.cfg
        now = time.monotonic()
        next_stats = now + cfg.stats_interval_s if cfg.stats_interval_s else float("inf")
        next_watch = now + cfg.watch_interval_s if cfg.watch_interval_s else float("inf")
        next_expire = now + min(60.0, cfg.device_idle_s) if cfg.device_idle_s else float("inf")
        next_save = now + SAVE_INTERVAL_S
        next_stale = now + STALE_CHECK_S
        while not self.stop.wait(0.1):
            now = time.monotonic()
            if self.link_alive is not None and not self.link_alive():
                if self.on_fatal is not None:
                    self.on_fatal("the MQTT network thread has ended: no more input or reconnects")
                return
            self.batching.sweep(now)
            up = self._link_watch(now)
            if self.status_owed is not None and self.status_owed.is_set():
                self.status_owed.clear()
                self.publisher.send([self.status()])  # held for a retry by the publisher if refused again
            self.publisher.pace()  # retry held alerts/states, send paced discovery
            self.publisher.send(self.scorer.discovery_event("sweep", now))  # Home Assistant: stale -> unavailable
            if self.rollout_tick is not None:
                self._rollout(now)
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                self.reload("SIGHUP")
            if now >= next_watch:
                next_watch = now + cfg.watch_interval_s
                self.check_file()
            if now >= next_stale:  # sensor health: devices quiet for the stale limit
                next_stale = now + STALE_CHECK_S
                if up and now >= self._stale_from:
                    quiet = self.ingest.check_stale(now)
                    if quiet and self.scorer.evidence is not None:  # no margin after a clear is coming from them
                        self.scorer.evidence.finish_quiet(quiet)
            if now >= next_expire:
                next_expire = now + min(60.0, cfg.device_idle_s)
                if up and now >= self._expire_from:
                    self.expire_idle(now)
            if now >= next_stats:
                next_stats = now + cfg.stats_interval_s
                self.publish_stats()
            if now >= next_save:  # per-device calibrations and feedback raises, when changed
                next_save = now + SAVE_INTERVAL_S
                self.scorer.thresholds.save()

    def _link_watch(self, now: float) -> bool:
        """Is the input link up? On its way down the stale checks and expiry pause; once it is back they wait for
        the stale limit (expiry: at least :data:`EXPIRY_GRACE_S`) so that devices can be heard again."""
        up = self.link_up is None or self.link_up()
        if not up and self._down_at is None:
            self._down_at = now
            if self.ingest.store.devices:
                self.stats.incr("stale_checks_paused")
                log.warning("input link down: stale checks and idle expiry paused until it is back")
        elif up and self._down_at is not None:
            grace = self.ingest.stale_limit_s()
            self._stale_from, self._expire_from = now + grace, now + max(grace, EXPIRY_GRACE_S)
            if self.ingest.store.devices:
                log.info("input link back after %.1f s: devices have %.0f s to send again before they are stale",
                         now - self._down_at, grace)
            self._down_at = None
        return up

    def _rollout(self, now: float) -> None:
        assert self.rollout_tick is not None
        try:
            self.rollout_tick(now)
        except Exception as exc:  # a rollout failure must not end the housekeeping thread
            self.stats.drop("internal_error")
            log.exception("fleet rollout step failed (%s); carrying on", type(exc).__name__)

    def expire_idle(self, now: float) -> list[str]:
        """Forget devices without data for ``device_idle_s`` (and adopted raised ones that never sent any)."""
        with self.ingest.lock:
            gone = self.ingest.store.expire(now, self.cfg.device_idle_s)
            gone += self.scorer.expire_adopted(now, self.cfg.device_idle_s)
        for dev in gone:
            self.stats.incr("devices_expired")
            self.publisher.send(self.scorer.forget(dev, "expired"))
            self.publisher.forget_remembered(self.scorer.device_topics(dev))
        if gone:
            log.info("%d idle device(s) expired after %.0f s without data", len(gone), self.cfg.device_idle_s)
        return gone

    def publish_stats(self) -> None:
        doc = self.stats_doc()
        log.info(
            "stats: messages=%d samples=%d windows=%d alerts_raised=%d alerts_cleared=%d drops=%s "
            "publish_lost=%s devices=%d batch=%.1f p50=%s ms p99=%s ms provider=%s",
            doc["messages"], doc["samples"], doc["windows_scored"], doc["alerts_raised"], doc["alerts_cleared"],
            doc["drops"] or "{}", doc["publish_lost"] or "{}", doc["devices_active"], doc["batch_size_mean"],
            "-" if doc["inference_ms_p50"] is None else doc["inference_ms_p50"],
            "-" if doc["inference_ms_p99"] is None else doc["inference_ms_p99"], doc["provider"],
        )
        # retained: a fleet view that connects between two intervals sees the last one at once
        self.publisher.send([Outbound(self.stats_topic, to_json(doc), qos=0, retain=True, bulk=True, paced=False,
                                      reassert=False)])

    def _stat_watched(self) -> FileSignature | None:
        try:
            return FileSignature.of(self._watched_path)
        except OSError:
            return None

    def check_file(self) -> None:
        sig = self._stat_watched()
        if sig is None:
            return
        if sig != self._watch_sig:
            self._watch_sig = sig
            try:
                digest = file_sha256(self._watched_path, self.cfg.max_model_bytes)
            except OSError:
                return
            if digest == self.scorer.model.sha256:
                log.debug("model file %s touched or replaced by the same content: not reloaded", self._watched_path)
                return
            self.reload("file changed")

    def reload(self, why: str) -> bool:
        """Load, validate and swap in the model file; on any error keep the old model. True if swapped."""
        cfg = self.cfg
        try:
            new = load_model(cfg.path, cfg.provider, cfg.intra_op_threads, cfg.max_model_bytes)
            check_pin(new, cfg.pin)
        except Exception as exc:  # an unforeseen failure must not kill the housekeeping thread either
            self.refuse(f"model reload ({why})", exc)
            return False
        self.swap(new, f"reloaded ({why})")
        return True

    def refuse(self, what: str, exc: BaseException) -> None:
        """Count and log a model refused by ``what``; the status document reports it (``last_refused``)."""
        old = self.scorer.model
        reason = (str(exc).strip().splitlines() or [""])[0][:300]
        if not isinstance(exc, ModelError):
            reason = f"unexpected {type(exc).__name__}: {reason}"
        self.stats.incr("reloads_refused")
        if isinstance(exc, PinError):
            self.stats.incr("pin_refused")
        log.error("%s refused, keeping %s: %s", what, old.model_id, reason)
        self.last_refused = {"what": what, "reason": reason, "time": time.time()}
        self.publisher.send([self.status()])

    def swap(self, new: EdgeModel, why: str) -> None:
        """Serve ``new`` from now on (validated by the caller); device windows kept when W and C are unchanged."""
        old = self.scorer.model
        keep = (new.window, new.n_channels) == (old.window, old.n_channels)
        with self.ingest.lock:
            dropped_devices = [] if keep else list(self.ingest.store.devices)
            self.scorer.model = new
            self.ingest.configure(new, keep_windows=keep)
            if not keep:
                dropped = self.batching.clear()
                if dropped:
                    self.stats.drop("reload", dropped)
        for dev in dropped_devices:  # their windows are gone: a raised one is cleared (reason "reload")
            self.publisher.send(self.scorer.forget(dev, "reload"))
            self.publisher.forget_remembered(self.scorer.device_topics(dev))
        if new.path == old.path or new.path == self._watched_path:
            self._watch_sig = new.signature
        self.stats.incr("reloads")
        log.info("model %s: %s -> %s, W=%d C=%d, device windows %s; provider %s (%s)", why,
                 old.model_id, new.model_id, new.window, new.n_channels, "kept" if keep else "reset",
                 new.provider, new.provider_reason)
        self.publisher.send([self.status()])
