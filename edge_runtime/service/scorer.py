"""Batches in, outbound messages out: stack -> ``model.run`` -> alert state machine -> documents.

:class:`Scorer` turns a batch of :class:`~edge_runtime.pipeline.batcher.WindowItem` s into
:class:`~edge_runtime.pipeline.documents.Outbound` messages (alerts, retained states, scores, Home Assistant
discovery) and owns the :class:`~edge_runtime.pipeline.alerts.AlertTracker` (forgetting devices,
re-adopting retained states of an earlier run). It publishes nothing itself.

Where batches are scored is the daemon's choice (``inference.batching``):

- :class:`InlineScoring` (``inline``, the fastest): windows wait in a plain
  :class:`~edge_runtime.pipeline.batcher.WindowBuffer` and are scored on the network thread right after
  each read burst (the link's ``after_read``); no thread hand-off, no thread-safe queue.
- :class:`ThreadedScoring` (``opportunistic`` / ``fill``): a
  :class:`~edge_runtime.service.window_queue.WindowQueue` to one inference thread.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from edge_runtime.config import Config
from edge_runtime.pipeline.alerts import AlertTracker, Ranges, StateError
from edge_runtime.pipeline.batcher import WindowBuffer, WindowItem, stack
from edge_runtime.pipeline.documents import RAISED, Outbound, operating_doc, score_doc, state_doc, to_json
from edge_runtime.pipeline.drift import drift_doc
from edge_runtime.pipeline.explain import channel_normals, out_of_range, peak_departure
from edge_runtime.pipeline.factor_fill import fill_excluded, residual_projection
from edge_runtime.pipeline.guards import F32_MAX, clip_bounds, clip_windows, saturate_non_finite
from edge_runtime.pipeline.health import renormalised_score
from edge_runtime.pipeline.states import OUT_OF_DISTRIBUTION, RUNNING, STOPPED, DistributionCheck
from edge_runtime.pipeline.stats import Stats
from edge_runtime.pipeline.topics import format_topic, sanitize_id
from edge_runtime.service.device_thresholds import DRIFT_Q, DeviceThresholds
from edge_runtime.service.ingest import Ingest
from edge_runtime.service.model import EdgeModel
from edge_runtime.service.publisher import Publisher
from edge_runtime.service.window_queue import WindowQueue

log = logging.getLogger(__name__)

INLINE_SWEEP_S = 0.05  # inline batching: the housekeeping thread scores windows left queued this long


ALERT_COUNTERS = {"raise": "alerts_raised", "update": "alerts_updated", "clear": "alerts_cleared"}


class _Detail:
    """Window ``i`` of an item at ``off`` in ``batch`` (B, W, C, as scored: clipped, the device's warm-up offsets
    subtracted): its measured mean over the window from ``raw`` (k, W, C, the device's own values) and the
    model's expected one (its reconstruction's mean, the offsets added back), then both at each channel's sample
    that departs most from the expected curve (:func:`~edge_runtime.pipeline.explain.peak_departure`), (C,) each;
    None when the model exports no reconstruction. Asked only for the windows that raise or update an alert; each one's whole
    reconstruction (W, C, offsets added back) is kept in ``curves`` (window index -> curve) for the evidence."""

    __slots__ = ("model", "batch", "off", "raw", "offset", "curves")

    def __init__(self, model: EdgeModel, batch: np.ndarray, off: int, raw: np.ndarray,
                 offset: np.ndarray | None) -> None:
        self.model, self.batch, self.off, self.raw, self.offset = model, batch, off, raw, offset
        self.curves: dict[int, np.ndarray] = {}

    def __call__(self, i: int) -> tuple[np.ndarray, ...] | None:
        w = self.batch[self.off + i : self.off + i + 1]  # (1, W, C)
        recon = self.model.reconstruct(w)
        if recon is None or recon.shape != w.shape:
            return None
        expected = recon[0].mean(axis=0, dtype=np.float64)
        curve = np.array(recon[0], np.float32)  # (W, C), the channels' units
        if self.offset is not None:
            expected = expected + np.asarray(self.offset, np.float64)
            curve += np.asarray(self.offset, np.float32)
        self.curves[i] = curve
        peak_measured, peak_expected = peak_departure(self.raw[i], curve)
        return self.raw[i].mean(axis=0, dtype=np.float64), expected, peak_measured, peak_expected


class Scorer:
    """Scores batches for the devices ``ingest`` tracks, with ``model`` (swapped by a reload)."""

    def __init__(self, cfg: Config, model: EdgeModel, ingest: Ingest, tracker: AlertTracker, stats: Stats,
                 discovery: Any = None) -> None:
        self.cfg = cfg
        self.model = model
        self.ingest = ingest
        self.tracker = tracker
        self.stats = stats
        self.discovery = discovery  # edge_runtime.integrations.homeassistant.Discovery, or None
        self.tracker_lock = threading.Lock()
        self._discovery_lock = threading.Lock()
        self.adopted: dict[str, float] = {}  # device -> monotonic time it was adopted (guarded by tracker_lock)
        self._batch_buf = np.zeros((cfg.max_batch, model.window, model.n_channels), np.float32)
        self._clip_for: EdgeModel | None = None  # the model _clip was computed for
        self._clip: tuple[np.ndarray, np.ndarray] | None = None  # (lo, hi) (C,) float32, or None: clip_z 0
        self._projection_cache: tuple[EdgeModel, np.ndarray | None] | None = None  # (model, cross-channel M)
        # per-device thresholds: warm-up calibration, feedback raises, drift (service/device_thresholds.py)
        self.thresholds = DeviceThresholds(cfg, model)
        self.evidence: Any = None  # edge_runtime.service.evidence_store.Evidence when alerts.evidence_dir is set
        self._normal_for: EdgeModel | None = None  # the model _normal was computed for
        self._normal = np.zeros(0)  # each channel's normal channel_error (C,): alerts' excess shares
        # out_of_distribution per device (alerts.ood_windows; guarded by the ingest lock: ingest restarts it)
        self.distribution = DistributionCheck(cfg.ood_windows, cfg.ood_factor, cfg.max_devices)
        # fleet rollout's shadow: (items, batch (B, W, C), live score (B,)) after each live run, or None
        self.shadow: Callable[[list[WindowItem], np.ndarray, np.ndarray], None] | None = None

    @property
    def threshold(self) -> float:
        return self.cfg.threshold or self.model.threshold

    def score_guarded(self, items: list[WindowItem]) -> list[Outbound]:
        """:meth:`score`, a failure counted (``inference_error``) and logged, not raised: keep serving."""
        try:
            return self.score(items)
        except Exception:
            n = sum(it.n for it in items)
            self.stats.drop("inference_error", n)
            log.exception("inference failed for a batch of %d window(s)", n)
            return []

    def score(self, items: list[WindowItem]) -> list[Outbound]:
        """Run one batch (windows of a reloaded shape or of forgotten devices are dropped and counted)."""
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
            return []
        cfg = self.cfg
        if self._batch_buf.shape[1:] != shape:
            self._batch_buf = np.zeros((self.cfg.max_batch, *shape), np.float32)
        batch = stack(good, self._batch_buf)  # (B, W, C)
        th = self.thresholds
        if th.model_id != model.model_id:  # a reload swapped the model: its threshold, new warm-ups
            th.configure(model)
        if th.policy.offsets:
            self._apply_offsets(good, batch)
        if self._clip_for is not model:
            self._clip_for = model
            norm = model.metadata.normalisation
            self._clip = clip_bounds(norm.mean, norm.std, cfg.clip_z) if cfg.clip_z > 0 else None
        masked = self._mask(good, batch, model)
        if self._clip is not None:
            clipped = clip_windows(batch, *self._clip)
            if clipped:
                self.stats.incr("windows_clipped", clipped)
                self.ingest.rl.log(logging.WARNING, "clipped", "%d window(s) with values beyond %g training "
                                   "standard deviations: clipped before scoring", clipped, cfg.clip_z)
        t0 = time.perf_counter()
        score, ce = model.run(batch)
        self.stats.record_batch(batch.shape[0], time.perf_counter() - t0)
        score, ce, non_finite = saturate_non_finite(score, ce)
        if non_finite:
            self.stats.incr("windows_non_finite", non_finite)
            self.ingest.rl.log(logging.WARNING, "non_finite", "%d window(s) scored NaN or infinite: treated as "
                               "anomalous (score %g)", non_finite, F32_MAX)
        if masked:
            score, ce = self._masked_scores(good, score, ce, model)
        shadow = self.shadow
        if shadow is not None:  # a staged model scores the same batch (edge_runtime/service/rollout.py)
            shadow(good, batch, score)
        scored = time.monotonic()
        for it in good:  # arrival of the completing message (enqueued) to scored: the metrics' histogram
            self.stats.record_latency(scored - it.enqueued, it.n)
        now = time.time()
        meta = model.metadata
        channels = meta.channels
        if self._normal_for is not model:
            self._normal_for = model
            self._normal = channel_normals(meta.scoring, meta.threshold.validation, meta.n_channels)
        publish_scores = cfg.publish_scores or self.discovery is not None
        out: list[Outbound] = []
        for it, s, c, src, row in self._in_distribution(good, score, ce, batch, out, now):
            # a device forgotten (evicted/expired/reset) since it queued these windows is not tracked again:
            # the check and the update under both locks, so forget() cannot run in between
            drift = None
            with self.ingest.lock, self.tracker_lock:
                if it.device not in self.ingest.store.devices:
                    continue  # forgotten while its windows were being scored
                dthr, warming = th.before(it.device, now)
                if warming:  # scored, never alerted, until its warm-up is done
                    alerts = []
                    changed = th.warm(it.device, s, it.t_end, it.windows)
                    state = self._state(it.device, now) if changed else None
                    if changed:
                        self._log_calibration(it.device)
                else:  # raised for the windows like a false alarm of the device (pipeline/feedback.py)
                    wthr = th.for_windows(it.device, dthr, s, c, it.windows, now,
                                           it.excluded is not None and bool(it.excluded.any()))
                    detail = _Detail(model, src, row, it.windows,
                                     # held windows come from the item: no offsets
                                     None if src is it.windows else th.offsets(it.device))
                    alerts = self.tracker.update(it.device, s, c, it.t_start, it.t_end, wthr, channels,
                                                 model.model_id, normal=self._normal, units=meta.units,
                                                 detail=detail, excluded=self._excluded_names(it, channels),
                                                 ranges=self._ranges(it, channels, meta.units))
                    dst = self.tracker.devices.get(it.device)
                    drift = th.scored(it.device, s, it.t_end, alerts, dst is not None and dst.state == RAISED, wthr,
                                      now, c, it.windows)
                    state = self._state(it.device, now) if alerts else None
                    if self.evidence is not None:  # under the locks: forget() cannot interleave
                        self.evidence.observe(it.device, it.windows, it.t_start, it.t_end, s, c, alerts,
                                              model.model_id, dthr, channels, meta.units, detail.curves)
            config = self._discovery("on_device", it.device)  # Home Assistant discovery config, once per device
            if config and self.ingest.states is None:  # its Operating state entity: running (no states to say so),
                # paced with the discovery config (bulk): a burst of new devices must not take an alert's place
                first = self.operating_message(it.device, RUNNING, float(it.t_end[0]), "scored", now)
                config.append(dataclasses.replace(first, bulk=True))
            out += config
            for a in alerts:
                # locked: forget() counts alerts_cleared on other threads
                self.stats.incr(ALERT_COUNTERS[a["event"]])
                log.info("alert %s device=%s score=%.4g threshold=%.4g top=%s: %s", a["event"], it.device,
                         a["score"], a["threshold"], ",".join(t["name"] for t in a["top_channels"]), a["summary"])
                out.append(Outbound(format_topic(cfg.alert_topic, device=it.device), to_json(a), qos=1))
            if state is not None:
                out.append(Outbound(format_topic(cfg.state_topic, device=it.device), to_json(state),
                                    qos=1, retain=True))
            if drift is not None:
                out.append(self._drift(it.device, drift, dthr, now))
            if publish_scores:
                doc = score_doc(it.device, model.model_id, dthr, it.t_start, it.t_end, s)
                out.append(Outbound(format_topic(cfg.score_topic, device=it.device), to_json(doc), qos=0,
                                    bulk=True))
        return out

    def _in_distribution(self, items: list[WindowItem], score: np.ndarray, ce: np.ndarray, batch: np.ndarray,
                         out: list[Outbound], now: float
                         ) -> list[tuple[WindowItem, np.ndarray, np.ndarray, np.ndarray, int]]:
        """Each item with its scores (k,), channel errors (k, C) and where its windows are (``batch`` (B, W, C)
        and its first row), less the windows the out-of-distribution check holds back or drops
        (``alerts.ood_windows``; held ones come back in order once it decides, their windows then read from the
        item); its state changes appended to ``out``."""
        parts, off = [], 0
        for it in items:
            parts.append((it, score[off : off + it.n], ce[off : off + it.n], batch, off))
            off += it.n
        check = self.distribution
        if check.windows <= 0:
            return parts
        thr = self.threshold
        current = {id(p) for p in parts}
        decided: list[tuple[WindowItem, np.ndarray, np.ndarray, np.ndarray, int]] = []
        with self.ingest.lock:
            for part in parts:
                it, s = part[0], part[1]
                before = check.held(it.device) + len(s)
                slices, change = check.update(it.device, s, thr, part)
                dropped = before - check.held(it.device) - sum(b - a for _, a, b in slices)
                if dropped:  # scored while out of distribution (the held start windows included): no alerts
                    self.stats.incr("windows_out_of_distribution", dropped)
                for p, a, b in slices:
                    pit, ps, pc, src, row = p
                    sub = pit if (a, b) == (0, pit.n) else WindowItem(
                        pit.device, pit.windows[a:b], pit.t_start[a:b], pit.t_end[a:b], pit.enqueued, pit.excluded)
                    where = (src, row + a) if id(p) in current else (sub.windows, 0)  # held: the batch is gone
                    decided.append((sub, ps[a:b], pc[a:b], *where))
                if change is not None:
                    out.append(self._distribution_changed(it.device, change, s, float(it.t_end[-1]), thr, now))
        return decided

    def _distribution_changed(self, device: str, state: str, s: np.ndarray, since: float, thr: float,
                              now: float) -> Outbound:
        cfg = self.cfg
        self.stats.incr("state_changes")
        if state == OUT_OF_DISTRIBUTION:
            self.stats.incr("out_of_distribution")
            reason = (f"the first {cfg.ood_windows} windows after the start all scored above {cfg.ood_factor:g} x the "
                      f"threshold {thr:.4g} (last {float(s[-1]):.4g}): an operating point far from training; no "
                      f"process alerts until {cfg.ood_windows} windows in a row score below the threshold")
            log.warning("device %s: out_of_distribution (%s)", device, reason)
        else:
            reason = f"{cfg.ood_windows} windows in a row below the threshold: back in distribution, scored"
            log.info("device %s: %s", device, reason)
        return self.operating_message(device, state, since, reason, now)

    def operating_message(self, device: str, state: str, since: float, reason: str, now: float) -> Outbound:
        """The retained operating state document of ``device`` (operating.schema.json)."""
        doc = operating_doc(device, state, since, reason, self.tracker.instance, self.model.model_id, now)
        return Outbound(format_topic(self.cfg.operating_topic, device=device), to_json(doc), qos=1, retain=True)

    def state_changed(self, device: str, state: str, since: float, reason: str) -> list[Outbound]:
        """Ingest saw ``device`` change operating state (network thread, ingest lock held): after a stop, its next
        windows are checked for out_of_distribution again."""
        if state == STOPPED:
            self.distribution.restart(device)
        return [self.operating_message(device, state, since, reason, time.time())]

    def _apply_offsets(self, items: list[WindowItem], batch: np.ndarray) -> None:
        """Subtract each device's learnt level offsets (warm-up) from its rows of ``batch`` (B, W, C)."""
        off = 0
        for it in items:
            o = self.thresholds.offsets(it.device)
            if o is not None:
                batch[off : off + it.n] -= o
            off += it.n

    def _state(self, device: str, now: float) -> dict[str, Any]:
        """The retained state document, with the device's threshold, calibration and feedback raise."""
        doc = self.tracker.state_payload(device)
        doc.update(self.thresholds.fields(device, now))
        return doc

    def state_message(self, device: str) -> Outbound:
        """The retained state of ``device`` now (after a command changed its threshold)."""
        with self.tracker_lock:
            doc = self._state(device, time.time())
        return Outbound(format_topic(self.cfg.state_topic, device=device), to_json(doc), qos=1, retain=True)

    def _log_calibration(self, device: str) -> None:
        f = self.thresholds.fields(device, time.time())
        cal = f.get("calibration") or {}
        phase = cal.get("phase")
        if phase == "calibrated":
            self.stats.incr("calibrations")
            log.info("device %s calibrated on %d windows of its own data: threshold %.4g (model %.4g)", device,
                     cal.get("windows", 0), f["threshold_base"], f["threshold_model"])
        elif phase == "refused":
            self.stats.incr("calibrations_refused")
            log.warning("device %s: warm-up refused (%s): scored on the model's threshold %.4g", device,
                        cal.get("reason", ""), f["threshold_model"])
        else:
            log.info("device %s: level offsets learnt (%s); learning its threshold", device, cal.get("offsets"))

    def _drift(self, device: str, due: tuple[str, float, float, float], threshold: float, now: float) -> Outbound:
        kind, rolling, reference, ratio = due
        if kind == "drift":
            self.stats.incr("drift_notices")
        log.info("drift %s device=%s: 90 %% score quantile %.4g vs calibrated %.4g (x%.3g); threshold unchanged",
                 kind, device, rolling, reference, ratio)
        doc = drift_doc(device, kind, DRIFT_Q, rolling, reference, ratio, self.cfg.drift_window, threshold,
                        self.tracker.instance, now)
        return Outbound(format_topic(self.cfg.drift_topic, device=device), to_json(doc), qos=1)
    def _mask(self, items: list[WindowItem], batch: np.ndarray, model: EdgeModel) -> int:
        """Put the training mean in place of each item's excluded channels (so their level is 0 and adds nothing
        to the Mahalanobis level term), or with the cross-channel term the common factors' estimate from the
        healthy channels (edge_runtime.pipeline.factor_fill); the number of windows masked."""
        n, off = 0, 0
        if all(it.excluded is None for it in items):
            return 0
        norm = model.metadata.normalisation
        mean, std = np.asarray(norm.mean, dtype=np.float32), np.asarray(norm.std, dtype=np.float32)
        proj = self._projection(model)
        for it in items:
            if it.excluded is not None:
                fill_excluded(batch[off : off + it.n], it.excluded, mean, std, proj)
                n += it.n
            off += it.n
        if n:
            self.stats.incr("windows_masked", n)
        return n

    def _projection(self, model: EdgeModel) -> np.ndarray | None:
        """The model's cross-channel projection (None without the term), parsed once per model."""
        if self._projection_cache is None or self._projection_cache[0] is not model:
            self._projection_cache = (model, residual_projection(model.metadata.scoring, model.n_channels))
        return self._projection_cache[1]

    def _masked_scores(self, items: list[WindowItem], score: np.ndarray, ce: np.ndarray,
                       model: EdgeModel) -> tuple[np.ndarray, np.ndarray]:
        """Scores renormalised over each item's healthy channels (edge_runtime.contract: masked scoring); the
        excluded channels' errors set to 0 (never named as top channels)."""
        score, ce = score.astype(np.float32, copy=True), ce.astype(np.float32, copy=True)
        weight = model.metadata.scoring.get("weight")
        w = np.asarray(weight, dtype=np.float64) if weight and len(weight) == model.n_channels else None
        off = 0
        for it in items:
            if it.excluded is not None:
                sl = slice(off, off + it.n)
                ce[sl][:, it.excluded] = 0.0
                score[sl] = renormalised_score(ce[sl], it.excluded, w, model.metadata.score_power())
            off += it.n
        return score, ce

    def _ranges(self, it: WindowItem, channels: list[str], units: Mapping[str, str]) -> Ranges | None:
        """The channels of each of ``it``'s windows outside the range its device is checked against (sensor checks
        on; under the ingest lock), for the alerts that raise or update."""
        health = self.ingest.health
        limits = health.range_of(self.ingest.store.devices[it.device]) if health is not None else None
        if limits is None:
            return None
        raw, lo, hi = it.windows, limits.lo, limits.hi
        return lambda i: out_of_range(raw[i], lo, hi, channels, units)

    @staticmethod
    def _excluded_names(it: WindowItem, channels: list[str]) -> list[str]:
        if it.excluded is None:
            return []
        return [c for c, e in zip(channels, it.excluded.tolist(), strict=True) if e]

    def _discovery(self, what: str, device: str) -> list[Outbound]:
        """Home Assistant discovery messages (retained) for ``device``: ``on_device`` or ``forget``."""
        return self.discovery_event(what, device)

    def on_connect_messages(self) -> list[Outbound]:
        """After every (re)connect: the retained discovery configs, if Home Assistant discovery is on."""
        return self.discovery_event("on_connect")

    def discovery_event(self, what: str, *args: Any) -> list[Outbound]:
        """The retained messages of ``Discovery.<what>(*args)`` (edge_runtime/integrations/homeassistant.py:
        on_device, on_rejected, forget, on_connect, on_birth, sweep); none when Home Assistant discovery is off."""
        if self.discovery is None:
            return []
        with self._discovery_lock:
            msgs = getattr(self.discovery, what)(*args)
        return [Outbound(topic, payload, qos=1, retain=True, bulk=True, reassert=False) for topic, payload in msgs]

    def adopt(self, topic: str, payload: bytes | bytearray) -> str | None:
        """A retained state of this instance from an earlier run (paho thread): see :meth:`AlertTracker.adopt`;
        the device adopted raised, or None;
        an adopted raised device that never sends data again is expired after ``device_idle_s``. A raised one
        carries on with its peak (from the state), an episode a verdict can name, and its evidence (continued
        in the same file, or started here when the store has none)."""
        state_topic = self.cfg.state_topic
        try:
            doc = json.loads(payload)  # bytes: a bad encoding is a ValueError too
            with self.tracker_lock:
                device = self.tracker.adopt(doc, topic, lambda dev: format_topic(state_topic, device=dev))
                if device is not None:
                    self.adopted[device] = time.monotonic()
            if doc.get("instance") == self.tracker.instance and topic == format_topic(
                    state_topic, device=str(doc.get("device"))):
                self.thresholds.adopt(doc)  # its calibration and feedback raise, when no state file has them
            if device is not None:
                self._adopt_alert(device)
        except (ValueError, RecursionError) as exc:  # not JSON, nested too deep, or a malformed state
            self.stats.drop("bad_state")
            self.ingest.rl.log(logging.WARNING, "bad_state", "retained state on %r refused: %s", topic[:200],
                               str(exc)[:120] if isinstance(exc, StateError) else f"not JSON ({type(exc).__name__})")
            return None
        if device is not None:
            log.info("device %s was left raised by an earlier run: tracked as raised until it clears or expires",
                     sanitize_id(device, self.cfg.max_device_id_len))
        return device

    def _adopt_alert(self, device: str) -> None:
        model, now = self.model, time.time()
        with self.tracker_lock:
            st = self.tracker.devices.get(device)
            if st is None or st.state != RAISED:
                return
            self.thresholds.adopt_alert(device, st.alert_id, st.peak_score, st.anomalous_since, now)
            if self.evidence is not None:
                self.evidence.resume(device, st.alert_id, st.anomalous_since, model.model_id,
                                     self.thresholds.threshold(device, now), model.metadata.channels,
                                     model.metadata.units)

    def expire_adopted(self, now: float, idle_s: float) -> list[str]:
        """Adopted raised devices that sent nothing for ``idle_s`` (the caller holds the ingest lock)."""
        gone: list[str] = []
        live = self.ingest.store.devices
        with self.tracker_lock:
            for dev, t in list(self.adopted.items()):
                if dev in live or dev not in self.tracker.devices:
                    del self.adopted[dev]  # sending again (or forgotten): handled like any device
                elif now - t >= idle_s:
                    del self.adopted[dev]
                    gone.append(dev)
        return gone

    def device_topics(self, device: str) -> list[str]:
        """The retained topics of ``device``'s own documents: state, operating state, health."""
        cfg = self.cfg
        return [format_topic(t, device=device) for t in (cfg.state_topic, cfg.operating_topic, cfg.health_topic)]

    def forget(self, device: str, reason: str) -> list[Outbound]:
        """A device left (evicted/expired/reload): drop its alert state; a raised one gets a ``cleared``
        alert with ``reason`` (counted in ``alerts_cleared``) and a retained ``cleared`` state."""
        model = self.model
        with self.tracker_lock:
            st, alert = self.tracker.forget(device, reason, self.threshold, model.metadata.channels, model.model_id)
            self.adopted.pop(device, None)
            if self.evidence is not None:
                self.evidence.forget(device, reason)
        out = self._discovery("forget", device) + self.ingest.forget_health(device, reason)
        if st is not None and alert is not None:
            self.stats.incr("alerts_cleared")
            log.info("alert cleared device=%s reason=%s", device, reason)
            cfg = self.cfg
            out.append(Outbound(format_topic(cfg.alert_topic, device=device), to_json(alert), qos=1))
            doc = state_doc(device, False, st.alert_id, st.seq, st.since, self.tracker.instance, reason)
            out.append(Outbound(format_topic(cfg.state_topic, device=device), to_json(doc), qos=1, retain=True))
        return out


class InlineScoring:
    """Inline batching: :meth:`put` (network thread, under the ingest lock) fills a plain buffer that
    :meth:`drain` (the link's ``after_read``, same thread) scores in batches of up to ``max_batch``."""

    def __init__(self, cfg: Config, scorer: Scorer, publisher: Publisher) -> None:
        self.cfg = cfg
        self.scorer = scorer
        self.publisher = publisher
        self.buffer = WindowBuffer(cfg.queue_windows, cfg.queue_policy)
        self._lock = self.scorer.ingest.lock  # the buffer's guard against the daemon's other threads
        self._scoring = threading.Lock()  # one scorer at a time: a device's windows are scored in order
        self._held: list[WindowItem] = []  # put while the sweep was scoring; placed by settle (network thread)
        self.reading: Callable[[], bool] = lambda: False  # the link reads a burst now (MqttLink.reading)

    def put(self, item: WindowItem) -> int:
        """Buffer ``item`` (network thread, under the ingest lock); the windows the bound dropped.

        Back-pressure: when ``item`` would overflow the buffer, what it holds is scored first, right here (the
        network thread reads nothing meanwhile, so the broker holds the next messages) instead of dropping
        whole windows. While the housekeeping sweep is scoring (rare; it needs the ingest lock), the item is held
        and :meth:`settle` places it once that lock is free: the network thread waits, nothing is dropped."""
        buf = self.buffer
        if self._held or buf.n + item.n > buf.max_windows:
            if self._held or not self._scoring.acquire(blocking=False):
                # the housekeeping sweep is scoring and needs the ingest lock we hold: keep the item (in order)
                # for :meth:`settle`, which places it once the lock is free instead of dropping it
                self._held.append(item)
                return 0
            try:
                return self._place(item)
            finally:
                self._scoring.release()
        return buf.put(item)

    def _place(self, item: WindowItem) -> int:
        """Score what the buffer holds until ``item`` fits, then buffer it (scoring lock and ingest lock held)."""
        buf = self.buffer
        if buf.n + item.n > buf.max_windows:
            self._score_buffered()
        while item.n > buf.max_windows:  # one message with more windows than the buffer holds
            head, item = item.split(buf.max_windows)
            buf.put(head)
            self._score_buffered()
        return buf.put(item)

    def settle(self) -> int:
        """Network thread, after the ingest lock is released: place what :meth:`put` held while the sweep
        scored (waiting for the sweep; lock order scoring -> ingest, as in :meth:`drain`). Windows dropped."""
        if not self._held:
            return 0
        dropped = 0
        with self._scoring, self._lock:
            held, self._held = self._held, []
            for it in held:
                dropped += self._place(it)
        return dropped

    def _score_buffered(self) -> None:
        while self.buffer.n:
            self.publisher.send(self.scorer.score_guarded(self.buffer.take(self.cfg.max_batch)))

    def __len__(self) -> int:
        return len(self.buffer)

    def start(self) -> list[threading.Thread]:
        return []

    def drain(self) -> None:
        """Score everything buffered, in order (network thread after a read burst; the sweep; stop)."""
        if not self.buffer.n:
            return
        with self._scoring:
            while True:
                with self._lock:
                    items = self.buffer.take(self.cfg.max_batch)
                if not items:
                    return
                self.publisher.send(self.scorer.score_guarded(items))

    def sweep(self, now: float) -> None:
        """A safety net (housekeeping thread): windows buffered outside a read burst wait <= ~0.15 s. While a
        burst is being read (:attr:`reading`, bounded by the client's burst limit) the burst's own drain will
        score them: scoring them here meanwhile only makes the two threads contend."""
        if self.reading():
            return
        with self._lock:
            oldest = self.buffer.oldest_enqueued()
        if oldest is not None and now - oldest > INLINE_SWEEP_S:
            self.drain()

    def clear(self) -> int:
        with self._lock:
            return self.buffer.clear()

    def stop(self, timeout: float) -> None:
        """After the link stopped calling :meth:`drain`: score what is left here."""
        self.settle()
        self.drain()


class ThreadedScoring:
    """``opportunistic`` / ``fill`` batching: a bounded queue to one inference thread.

    Back-pressure: :meth:`put` (network thread, under the ingest lock) never drops; windows that do not fit
    are held, and :meth:`settle` (the same thread, after the ingest lock is released, so the worker can
    score meanwhile) waits for the worker to make room before placing them. The network thread reads and
    acknowledges nothing while it waits, so the broker holds the next messages. Only when the worker takes no
    batch for half the MQTT keepalive (stalled, or one batch slower than that) does the queue policy drop
    (``queue_full``), so the broker link stays up; windows held when the queue closes (stop) are counted
    as ``shutdown``. One worker takes batches in queue order, so a device's windows are scored in order."""

    def __init__(self, cfg: Config, scorer: Scorer, publisher: Publisher, stop: threading.Event) -> None:
        self.cfg = cfg
        self.scorer = scorer
        self.publisher = publisher
        self.queue = WindowQueue(cfg.queue_windows, cfg.queue_policy)
        self._stop = stop
        self._thread: threading.Thread | None = None
        self._held: deque[WindowItem] = deque()  # windows put() could not place yet, in arrival order
        self._settling = threading.Lock()  # one settle() at a time (a second producer waits its turn)
        self.wait_s = cfg.keepalive_s / 2.0  # longest wait for room without the worker taking a batch
        self._stalled_at = -1  # queue.taken when a wait for room last timed out (no waiting until it moves)

    def put(self, item: WindowItem) -> int:
        """Queue ``item``, or hold what does not fit for :meth:`settle` (never drops: returns 0)."""
        if self._held:  # behind windows still held: keep the order
            self._held.append(item)
            return 0
        rest = self.queue.offer(item)
        if rest is not None:
            self._held.append(rest)
        return 0

    def settle(self) -> int:
        """Place the held windows, waiting for room (network thread, outside the ingest lock); return the
        windows the queue policy dropped because the worker made no room in time."""
        if not self._held:  # the common case: everything fitted
            return 0
        dropped = 0
        q = self.queue
        with self._settling:
            while self._held:
                item = self._held[0]
                if q.taken == self._stalled_at or not q.wait_room(self.wait_s):
                    self._held.popleft()
                    if q.closed:  # stopping: the message is not acknowledged, the broker redelivers it
                        self.scorer.stats.drop("shutdown", item.n)
                        continue
                    if q.taken != self._stalled_at:
                        self._stalled_at = q.taken
                        self.scorer.ingest.rl.log(logging.WARNING, "inference_stalled", "the inference thread "
                                                  "took no batch for %.1f s: windows that do not fit the queue "
                                                  "are dropped (%s) until it does", self.wait_s, q.policy)
                    dropped += q.put(item)
                    continue
                rest = q.offer(item)
                if rest is None:
                    self._held.popleft()
                else:
                    self._held[0] = rest
        return dropped

    def __len__(self) -> int:
        return len(self.queue) + sum(it.n for it in list(self._held))

    def start(self) -> list[threading.Thread]:
        self._thread = threading.Thread(target=self._run, name="edgewatch-infer", daemon=True)
        self._thread.start()
        return [self._thread]

    def _run(self) -> None:
        cfg = self.cfg
        # opportunistic: take whatever is queued (at least one window) at once; fill: wait up to max_wait_ms
        wait_s = cfg.max_wait_ms / 1000.0 if cfg.batching == "fill" else 0.0
        while True:
            items = self.queue.get_batch(cfg.max_batch, wait_s, timeout=0.25)
            if not items:
                if self._stop.is_set():
                    return
                continue
            self.publisher.send(self.scorer.score_guarded(items))

    def drain(self) -> None:
        """Score everything queued on this thread (tests; the worker does it while running)."""
        while True:
            items = self.queue.get_batch(self.cfg.max_batch, 0.0, timeout=0.0)
            if not items:
                return
            self.publisher.send(self.scorer.score_guarded(items))

    def sweep(self, now: float) -> None:
        pass

    def clear(self) -> int:
        return self.queue.clear()

    def stop(self, timeout: float) -> None:
        """Close the queue: the worker scores what is left, then ends (joined up to ``timeout`` s)."""
        self.queue.close()
        if self._thread is not None:
            self._thread.join(max(0.1, timeout))
