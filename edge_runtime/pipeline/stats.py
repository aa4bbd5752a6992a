"""Runtime counters in one place, and a rate-limited logger for paths bad input can trigger.

Every counter the daemon publishes on ``edgewatch/{instance}/stats`` lives in
:class:`Stats`. Counters are plain ints bumped from the thread that owns the
event; ``drops`` is keyed by reason code (the decoder's and the pipeline's: what the daemon dropped of its
input and its work), ``publish_lost`` by why an outgoing message was given up (the publisher's: see
:mod:`edge_runtime.service.publisher`). An outgoing message that waits for a retry is lost in neither.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from edge_runtime.pipeline.histogram import INFERENCE_BUCKETS_S, LATENCY_BUCKETS_S, Histogram

# Counter names, in the order they appear in the stats payload.
COUNTERS = (
    "messages",  # MQTT messages received on sensor topics
    "samples",  # samples decoded and accepted into a window buffer
    "windows_queued",  # windows handed to the inference queue
    "windows_scored",  # windows run through the model
    "windows_clipped",  # windows with values beyond inference.clip_z training std devs, clipped before the model
    "windows_non_finite",  # windows whose score or channel error was NaN/inf: treated as anomalous (float32-max)
    "batches",  # session.run calls
    "alerts_raised",
    "alerts_cleared",
    "alerts_updated",  # updates of a raised alert (its top channels or severity changed)
    "evidence_written",  # evidence files written (at a raise, and again when the alert's evidence is complete)
    "evidence_evicted",  # evidence files removed past alerts.evidence_max_mb / evidence_max_age_s
    "evidence_requests_answered",
    "evidence_requests_refused",
    "published",  # messages handed to the MQTT client
    "publish_deferred",  # critical messages (alerts, states) held for a retry: the outgoing queue was full, or broker away
    "publish_retried",  # critical messages (alerts, states) sent on a retry after the outgoing queue was full
    "retained_reasserted",  # retained documents published again after a broker that lost them (no session)
    "reconnects",
    "subscriptions_refused",  # input subscriptions the broker refused at a connect (an ACL without read on them)
    "reloads",
    "reloads_refused",
    "pin_refused",  # models refused because they break the pin (model.channels / window / family): kept serving the old one
    "devices_evicted",  # removed to keep max_devices
    "devices_expired",  # removed after device_idle_s without data
    "stale_checks_paused",  # input link outages with devices known: stale checks and idle expiry paused, then a grace
    "gaps",  # window restarts after a time gap
    "sparkplug_seq_gaps",  # Sparkplug B: a node's seq skipped (its messages lost on the way): a rebirth asked for
    "instance_conflicts",  # online statuses of this instance name from another daemon (a clone)
    "clock_resets",  # devices whose clock jumped back for good (clock_reset_after samples): window restarted
    "calibrations",  # devices whose warm-up set their own threshold (input.warmup)
    "calibrations_refused",  # warm-ups refused as anomalous against the model (the model's threshold kept)
    "drift_notices",  # drift notices published (a sustained shift of a device's scores; no threshold changed)
    "feedback_false_alarms",  # false-alarm verdicts applied (each raised its device's threshold within the bounds)
    "feedback_confirmed",  # confirmed-alarm verdicts
    "feedback_acks",  # acknowledgements
    "feedback_withdrawn",  # false alarms withdrawn by a later confirmed on the same alert (its raise taken back)
    "feedback_repeated",  # verdicts an alert already had: accepted, nothing changed (not counted above, not logged)
    "feedback_capped",  # false alarms whose peak needs more than alerts.feedback_max_factor: windows like it still alert
    "commands_accepted",  # operator commands carried out (runtime.commands)
    "commands_refused",  # malformed or inapplicable commands, refused with a reply saying why
    "samples_stopped",  # samples of a stopped machine (the model's operating states): not windowed
    "samples_settling",  # samples in the settling time after a start: not windowed
    "state_changes",  # operating state changes published (running, stopped, settling, out_of_distribution)
    "out_of_distribution",  # devices reported out_of_distribution (most channels out of range; alerts.ood_windows)
    "range_excursions",  # most channels out of range at once on a device that had run in range: scored, no range alerts
    "windows_out_of_distribution",  # windows not scored, or scored without alerts, while out of distribution
    "ranges_learnt",  # devices whose normal range was learnt on site over their warm-up (input.warmup)
    "partitions_taken",  # NATS group: partitions this worker was pinned to (after a start, a failover or a rebalance)
    "partitions_released",  # NATS group: partitions given up (rebalance, lost pin or lease, stop)
    "messages_acked",  # NATS: sensor messages acknowledged after their windows were scored
    "messages_caught_up",  # NATS: unacknowledged messages of a taken-over partition read back from the stream
    "messages_primed",  # NATS: acknowledged messages read back to rebuild the windows of a taken-over partition
    "delivery_gaps",  # NATS: deliveries lost in transit (a server fail-over), read back from the stream
    "shadow_windows",  # windows a staged model scored beside the live one (fleet rollout; nothing published)
    "rollout_refused",  # announced models and commands refused (signature, hash, pin, contract, age)
    "promotions",  # staged models made live (command or automatic rule)
    "rollbacks",  # returns to the previous model (command or automatic)
    "values_filled",  # missing values (null/NaN/absent) carried forward or filled; by reason in values_missing
    "sensor_alerts_raised",  # sensor-fault alerts raised (by kind in sensor_faults)
    "sensor_alerts_cleared",
    "windows_masked",  # windows scored without their faulty channels (health.sensor_checks)
    "windows_degraded",  # windows not scored: too many faulty channels (health.degraded_share)
)


# why an outgoing message is given up (the publisher's and the links'): each exported at 0 from the start, so a
# rate or an alert rule on one works before the first loss
LOST_REASONS = ("not_connected", "outgoing_full", "critical_lost", "discovery_dropped")


class Stats:
    """Counters, drops and lost outgoing messages by reason and a ring of recent inference latencies.

    ``latency_ms``: the last ``latency_window`` batch inference times, (n,) float64.
    """

    def __init__(self, latency_window: int = 2048) -> None:
        self.counts: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.drops: Counter[str] = Counter()  # input and work dropped, by reason
        self.publish_lost: Counter[str] = Counter()  # outgoing messages given up, by reason
        self.missing: Counter[str] = Counter()  # missing values by reason (decode's MISSING_REASONS)
        self.sensor_faults: Counter[str] = Counter()  # sensor alerts raised by fault kind
        self._lat = np.zeros(latency_window, dtype=np.float64)
        self._bs = np.zeros(latency_window, dtype=np.int64)
        self._n_lat = 0
        self._lock = threading.Lock()
        self.started = time.time()
        # Prometheus histograms (edge_runtime/integrations/metrics_http.py): seconds per batch, and per window
        # from the arrival of the message that completed it to its scoring
        self.inference_seconds = Histogram(INFERENCE_BUCKETS_S)
        self.window_latency_seconds = Histogram(LATENCY_BUCKETS_S)

    def incr(self, name: str, n: int = 1) -> None:
        """Thread-safe increment (for counters bumped from several threads, e.g. ``published``).

        Counters owned by one thread (``messages``/``samples`` on the MQTT thread, ``windows_scored``
        on the worker) are bumped directly on ``counts`` by that thread.
        """
        with self._lock:
            self.counts[name] += n

    def drop(self, reason: str, n: int = 1) -> None:
        """Count ``n`` dropped items (messages, samples or windows) for ``reason``."""
        with self._lock:
            self.drops[reason] += n

    def lose(self, reason: str, n: int = 1) -> None:
        """Count ``n`` outgoing messages given up for ``reason`` (never sent; not input drops)."""
        with self._lock:
            self.publish_lost[reason] += n

    def count_in(self, counter: Counter[str], reasons: dict[str, int]) -> None:
        """Thread-safe: add ``reasons`` (reason -> n) to ``counter`` (:attr:`missing`, :attr:`sensor_faults`)."""
        with self._lock:
            counter.update(reasons)

    def record_batch(self, batch_size: int, seconds: float) -> None:
        i = self._n_lat % self._lat.shape[0]
        self._lat[i] = seconds * 1000.0
        self._bs[i] = batch_size
        self._n_lat += 1
        self.counts["batches"] += 1
        self.counts["windows_scored"] += batch_size
        self.inference_seconds.observe(seconds)

    def record_latency(self, seconds: float, n: int = 1) -> None:
        """``n`` windows scored ``seconds`` after the message that completed them arrived."""
        self.window_latency_seconds.observe(seconds, n)

    def latency_ms(self) -> np.ndarray:
        """Recent batch inference times in ms, (n,) float64."""
        n = min(self._n_lat, self._lat.shape[0])
        out: np.ndarray = self._lat[:n].copy()
        return out

    def snapshot(self, **extra: Any) -> dict[str, Any]:
        """A JSON-ready view of every counter; ``extra`` keys are merged in (provider, devices...)."""
        lat = self.latency_ms()
        n = min(self._n_lat, self._bs.shape[0])
        with self._lock:
            drops = dict(sorted(self.drops.items()))
            lost = dict(sorted(self.publish_lost.items()))
            missing = dict(sorted(self.missing.items()))
            faults = dict(sorted(self.sensor_faults.items()))
        out: dict[str, Any] = {
            **self.counts,
            "drops": drops,
            "dropped_total": int(sum(drops.values())),
            "publish_lost": lost,
            "publish_lost_total": int(sum(lost.values())),
            "values_missing": missing,
            "sensor_faults": faults,
            "batch_size_mean": round(float(self._bs[:n].mean()), 3) if n else 0.0,
            "inference_ms_p50": round(float(np.percentile(lat, 50)), 4) if lat.size else None,
            "inference_ms_p99": round(float(np.percentile(lat, 99)), 4) if lat.size else None,
            "uptime_s": round(time.time() - self.started, 3),
        }
        out.update(extra)
        return out


class RateLimitedLog:
    """Log at most once per ``interval_s`` per reason; the next line says how many were suppressed."""

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()
        self._lock = threading.Lock()

    def log(self, level: int, reason: str, msg: str, *args: Any) -> bool:
        """Emit ``msg % args`` tagged with ``reason`` unless one was emitted within the interval."""
        now = self._clock()
        with self._lock:
            last = self._last.get(reason)
            if last is not None and now - last < self.interval_s:
                self._suppressed[reason] += 1
                return False
            self._last[reason] = now
            suppressed = self._suppressed.pop(reason, 0)
        suffix = f" ({suppressed} more '{reason}' suppressed)" if suppressed else ""
        self.logger.log(level, "[%s] " + msg + suffix, reason, *args)
        return True
