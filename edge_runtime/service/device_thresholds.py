"""Per-device thresholds: warm-up calibration, feedback raises, drift, kept across restarts.

:class:`DeviceThresholds` owns, for every device, its :class:`~edge_runtime.pipeline.calibration.Calibration`,
its feedback :class:`~edge_runtime.pipeline.feedback.ThresholdRaise`, its drift tracker and its recent alert
episodes (alert id -> peak score, so a false-alarm verdict knows how far to raise). The rules are pure
(pipeline/calibration.py, feedback.py, drift.py); this class holds the state behind one lock (the scorer
and the command handler run on different threads) and persists the finished calibrations and raises:
to ``runtime.state_dir``/devices.json when set (written by the housekeeping thread when changed), and in
every retained state document, read back at start (the broker keeps them) when there is no state file.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.config import Config
from edge_runtime.pipeline.calibration import (
    CALIBRATED,
    OFF,
    Calibration,
    WarmupPolicy,
    new_calibration,
    observe,
    parse_warmup,
    running_mask,
)
from edge_runtime.pipeline.drift import DriftPolicy, DriftState, observe_scores, reference_quantile
from edge_runtime.pipeline.feedback import FeedbackRule, ThresholdRaise, after_false_alarm, current_factor
from edge_runtime.service.ingest import scoring_hop
from edge_runtime.service.model import EdgeModel

log = logging.getLogger(__name__)

STATE_FILE = "devices.json"
STATE_FORMAT = 1
EPISODES_KEPT = 8  # recent alerts per device a verdict can name
DRIFT_Q = 0.9


@dataclass
class Episode:
    """One alert of a device: from its raise to its clear, the peak score of its windows."""

    alert_id: str
    raised_at: float
    window_start: float
    window_end: float
    peak: float
    threshold: float
    cleared_at: float | None = None


@dataclass
class DeviceEntry:
    cal: Calibration
    raise_: ThresholdRaise | None = None
    drift: DriftState = field(default_factory=DriftState)
    drift_reference: float = 0.0
    episodes: OrderedDict[str, Episode] = field(default_factory=OrderedDict)
    open_episode: str = ""  # alert id of the raised episode, if any
    aliases: dict[str, str] = field(default_factory=dict)  # an update's or clear's alert id -> its raise's


class DeviceThresholds:
    """Every device's threshold now: ``base x feedback factor``, base = its calibration or the model's."""

    def __init__(self, cfg: Config, model: EdgeModel) -> None:
        self.cfg = cfg
        self.rule = FeedbackRule(cfg.feedback_margin, cfg.feedback_max_factor, cfg.feedback_half_life_s)
        self.drift_policy = DriftPolicy(cfg.drift_window, DRIFT_Q, cfg.drift_ratio, cfg.drift_sustain)
        self.path = Path(cfg.state_dir) / STATE_FILE if cfg.state_dir else None
        self.lock = threading.Lock()
        self.devices: OrderedDict[str, DeviceEntry] = OrderedDict()
        self.dirty = False
        self.model_id = ""
        self._saved: dict[str, Any] = {}
        self.configure(model)
        self._saved = self._load()

    # -- model ---------------------------------------------------------------------------
    def configure(self, model: EdgeModel) -> None:
        """Use ``model``'s threshold, budget and normalisation; a new model id starts every warm-up again."""
        cfg, meta = self.cfg, model.metadata
        thr = meta.threshold
        self.model_threshold = float(cfg.threshold or model.threshold)
        self.policy = WarmupPolicy(
            parse_warmup(cfg.warmup), scoring_hop(cfg, model), model.window,
            budget=float(thr.params.get("budget", 1e-3)), scale=float(thr.params.get("scale", 1.0)),
            offsets=cfg.warmup_offsets, max_factor=cfg.warmup_max_factor)
        self.train_mean = np.asarray(meta.normalisation.mean, np.float64)
        self.train_std = np.asarray(meta.normalisation.std, np.float64)
        p90 = thr.validation.get("p90") if isinstance(thr.validation, dict) else None
        self.model_reference = float(p90) if isinstance(p90, (int, float)) and p90 > 0 else 0.0
        with self.lock:
            if self.model_id and model.model_id != self.model_id:
                for e in self.devices.values():
                    e.cal = new_calibration(self.policy)
                    e.drift, e.drift_reference = DriftState(), 0.0
                self.dirty = True
            self.model_id = model.model_id

    @property
    def warming(self) -> bool:
        return self.policy.spec.on

    # -- per device ----------------------------------------------------------------------
    def _entry(self, device: str) -> DeviceEntry:  # under self.lock; least recently used evicted past max_devices
        e = self.devices.get(device)
        if e is not None:
            self.devices.move_to_end(device)
        else:
            e = self.devices[device] = DeviceEntry(new_calibration(self.policy))
            saved = self._saved.pop(device, None) if self._saved else None
            if saved is not None:
                self._restore(e, saved)
            while len(self.devices) > self.cfg.max_devices:
                dev, gone = self.devices.popitem(last=False)
                doc = self._doc(gone)
                if doc is not None and len(self._saved) < self.cfg.max_devices:
                    self._saved[dev] = doc  # kept for its return (and in the state file)
        return e

    def _doc(self, e: DeviceEntry) -> dict[str, Any] | None:
        """What the state file keeps of a device: its finished calibration and its raise (None: nothing)."""
        d: dict[str, Any] = {"model_id": self.model_id}
        if e.cal.done and e.cal.phase != OFF:
            d["calibration"] = e.cal.to_doc()
        if e.raise_ is not None:
            d["feedback"] = e.raise_.to_doc()
        return d if len(d) > 1 else None

    def _restore(self, e: DeviceEntry, doc: dict[str, Any]) -> None:
        if doc.get("model_id") == self.model_id and self.policy.spec.on:
            cal = Calibration.from_doc(doc.get("calibration"), len(self.train_mean))
            if cal is not None:
                e.cal = cal
        r = ThresholdRaise.from_doc(doc.get("feedback"))
        if r is not None and r.factor > 1:
            e.raise_ = r

    def base(self, e: DeviceEntry) -> float:
        return e.cal.threshold if e.cal.phase == CALIBRATED and e.cal.threshold else self.model_threshold

    def threshold(self, device: str, now: float) -> float:
        with self.lock:
            e = self._entry(device)
            return self.base(e) * current_factor(self.rule, e.raise_, now)

    def before(self, device: str, now: float) -> tuple[float, bool]:
        """The device's threshold now, and whether it is still warming up (scored, never alerted)."""
        with self.lock:
            e = self._entry(device)
            return self.base(e) * current_factor(self.rule, e.raise_, now), not e.cal.done

    def offsets(self, device: str) -> np.ndarray | None:
        """The device's learnt level offsets (C,) float32, or None."""
        with self.lock:
            e = self.devices.get(device)
            if e is None or e.cal.offsets is None:
                return None
            return np.asarray(e.cal.offsets, np.float32)

    def warm(self, device: str, scores: np.ndarray, t_end: np.ndarray, windows: np.ndarray) -> bool:
        """Feed a warming device's scored windows (``windows`` (k, W, C) raw); True when its phase changed."""
        running = running_mask(windows, self.train_std, self.policy.stopped_std)
        means = windows.mean(axis=1, dtype=np.float64)
        with self.lock:
            e = self._entry(device)
            changed = observe(e.cal, self.policy, np.asarray(scores, np.float64), np.asarray(t_end, np.float64),
                              running, means, self.model_threshold, self.train_mean)
            if changed and e.cal.done:
                self.dirty = True
                if e.cal.phase == CALIBRATED:
                    e.drift_reference = 0.0  # set from the first scores on the new threshold
            return changed

    def scored(self, device: str, scores: np.ndarray, t_end: np.ndarray,
               alerts: list[dict[str, Any]], raised: bool, threshold: float, now: float
               ) -> tuple[str, float, float, float] | None:
        """After the alert tracker: note alert episodes and their peaks; feed drift. A drift notice due:
        ``(kind, rolling, reference, ratio)``."""
        with self.lock:
            e = self._entry(device)
            for a in alerts:
                event = a.get("event") or ("raise" if a.get("state") == "raised" else "clear")
                if event == "raise":
                    self._open(e, a, now, threshold)
                elif e.open_episode in e.episodes:  # an update: the episode goes on
                    e.aliases[str(a.get("alert_id", ""))] = e.open_episode  # a verdict may name any message
                    if event == "clear":
                        e.episodes[e.open_episode].cleared_at = now
                        e.open_episode = ""
            if (raised or alerts) and e.open_episode in e.episodes and scores.shape[0]:
                ep = e.episodes[e.open_episode]
                ep.peak = max(ep.peak, max(scores.tolist()))  # (a few windows: cheaper than np.max)
                ep.window_end = max(ep.window_end, float(t_end[-1]))
            if self.drift_policy.window <= 0 or not scores.shape[0]:
                return None
            if e.drift_reference <= 0:
                e.drift_reference = self._reference(e, scores)
                if e.drift_reference <= 0:
                    return None
            due = observe_scores(e.drift, self.drift_policy, scores, e.drift_reference)
            return None if due is None else (due[0], due[1], e.drift_reference, due[2])

    def _reference(self, e: DeviceEntry, scores: np.ndarray) -> float:
        """The drift reference: the calibrated device's warm-up quantile, else the model's validation one."""
        if e.cal.phase == CALIBRATED and e.cal.params.get("log_mean") is not None:
            mu, sd = float(e.cal.params["log_mean"]), float(e.cal.params["log_std"])
            return math.exp(mu + 1.2815515655446004 * sd)  # the lognormal fit's 90 % quantile
        if e.cal.phase == CALIBRATED:
            return reference_quantile(scores, DRIFT_Q)
        return self.model_reference

    def _open(self, e: DeviceEntry, a: dict[str, Any], now: float, threshold: float) -> None:
        aid = str(a.get("alert_id", ""))
        e.episodes[aid] = Episode(aid, now, float(a.get("window_start", 0.0)), float(a.get("window_end", 0.0)),
                                  float(a.get("score", 0.0)), threshold)
        e.open_episode = aid
        while len(e.episodes) > EPISODES_KEPT:
            gone, _ = e.episodes.popitem(last=False)
            e.aliases = {k: v for k, v in e.aliases.items() if v != gone}

    # -- feedback ------------------------------------------------------------------------
    def find(self, alert_id: str, device: str) -> tuple[str, Episode] | None:
        """The episode of ``alert_id`` (or, with only ``device``, that device's latest)."""
        with self.lock:
            if alert_id:
                for dev, entry in self.devices.items():
                    ep = entry.episodes.get(entry.aliases.get(alert_id, alert_id))
                    if ep is not None and (not device or device == dev):
                        return dev, ep
                return None
            e = self.devices.get(device)
            if e is None or not e.episodes:
                return None
            return device, next(reversed(e.episodes.values()))

    def false_alarm(self, device: str, ep: Episode, now: float) -> tuple[float, float]:
        """Raise ``device``'s threshold above ``ep``'s peak (bounded); (threshold before, after)."""
        with self.lock:
            e = self._entry(device)
            base = self.base(e)
            before = base * current_factor(self.rule, e.raise_, now)
            e.raise_ = after_false_alarm(self.rule, e.raise_, base, ep.peak, now)
            self.dirty = True
            return before, base * current_factor(self.rule, e.raise_, now)

    def recalibrate(self, device: str) -> bool:
        """Start ``device``'s warm-up again (its feedback raise is kept); False when warm-ups are off."""
        if not self.policy.spec.on:
            return False
        with self.lock:
            e = self._entry(device)
            e.cal, e.drift, e.drift_reference = new_calibration(self.policy), DriftState(), 0.0
            self.dirty = True
            return True

    # -- documents -----------------------------------------------------------------------
    def fields(self, device: str, now: float) -> dict[str, Any]:
        """What the device's state document carries about its threshold."""
        with self.lock:
            e = self._entry(device)
            factor = current_factor(self.rule, e.raise_, now)
            doc: dict[str, Any] = {"threshold": self.base(e) * factor, "threshold_model": self.model_threshold,
                                   "threshold_base": self.base(e)}
            if e.cal.phase != OFF:
                doc["calibration"] = {**e.cal.to_doc(), "model_id": self.model_id}
            if e.raise_ is not None:
                doc["feedback"] = {**e.raise_.to_doc(), "factor_now": round(factor, 6)}
            return doc

    def snapshot(self, now: float, limit: int = 1000) -> dict[str, float]:
        """Devices whose threshold is not the model's (calibrated or raised): device -> threshold."""
        with self.lock:
            out: dict[str, float] = {}
            for dev, e in self.devices.items():
                value = self.base(e) * current_factor(self.rule, e.raise_, now)
                if value != self.model_threshold:
                    out[dev] = value
                    if len(out) >= limit:
                        break
            return out

    def counts(self) -> dict[str, int]:
        with self.lock:
            phases = [e.cal.phase for e in self.devices.values()]
        return {"devices_warming": sum(p in ("offsets", "threshold") for p in phases),
                "devices_calibrated": phases.count(CALIBRATED)}

    # -- persistence ---------------------------------------------------------------------
    def adopt(self, doc: dict[str, Any]) -> None:
        """A retained state document of this instance (read back at start): its calibration and raise are
        restored when the device first sends (a state file, when there is one, wins)."""
        device = doc.get("device")
        if self.path is not None and self.path.exists() or not isinstance(device, str):
            return
        with self.lock:
            if device not in self.devices and len(self._saved) < self.cfg.max_devices:
                cal = doc.get("calibration")
                model_id = cal.get("model_id", "") if isinstance(cal, dict) else ""
                self._saved[device] = {"model_id": model_id, "calibration": cal, "feedback": doc.get("feedback")}

    def _load(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("per-device thresholds: cannot read %s (%s): devices start from the model's threshold",
                        self.path, exc)
            return {}
        if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT or not isinstance(doc.get("devices"), dict):
            log.warning("per-device thresholds: %s is not a devices file of format %d: ignored", self.path,
                        STATE_FORMAT)
            return {}
        devices = {k: v for k, v in doc["devices"].items() if isinstance(k, str) and isinstance(v, dict)}
        log.info("per-device thresholds: %d device(s) read back from %s", len(devices), self.path)
        return dict(list(devices.items())[: self.cfg.max_devices])

    def save(self) -> bool:
        """Write the state file when something changed (atomic: a temp file renamed); False on an error
        (logged; the daemon carries on, the state stays in memory)."""
        if self.path is None or not self.dirty:
            return True
        with self.lock:
            self.dirty = False
            devices: dict[str, Any] = dict(self._saved)
            for dev, e in self.devices.items():
                d = self._doc(e)
                if d is not None:
                    devices[dev] = d
        tmp = self.path.with_suffix(".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"format": STATE_FORMAT, "devices": devices}))
            os.replace(tmp, self.path)
        except OSError as exc:
            self.dirty = True
            log.warning("per-device thresholds: cannot write %s: %s (kept in memory)", self.path, exc)
            return False
        return True
