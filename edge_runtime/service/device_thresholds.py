"""Per-device thresholds: warm-up calibration, feedback raises, drift, kept across restarts.

:class:`DeviceThresholds` owns, for every device, its :class:`~edge_runtime.pipeline.calibration.Calibration`,
its feedback :class:`~edge_runtime.pipeline.feedback.ThresholdRaise` s, its drift tracker and its recent alert
episodes (alert id -> peak score, signature and verdict, so a false-alarm verdict knows how far to raise, and for
which windows, and a later verdict on the same alert replaces it: :meth:`DeviceThresholds.verdict`). The rules are pure
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
from edge_runtime.pipeline.explain import channel_normals
from edge_runtime.pipeline.feedback import (
    FalseAlarm,
    FeedbackRule,
    ThresholdRaise,
    apply_false_alarms,
    current_factor,
    describe_signature,
    global_factor,
    is_repeat,
    needed_factor,
    profiles,
    signature_of,
    standing,
    window_factors,
)
from edge_runtime.service.ingest import scoring_hop
from edge_runtime.service.model import EdgeModel

log = logging.getLogger(__name__)

STATE_FILE = "devices.json"
STATE_FORMAT = 1
EPISODES_KEPT = 8  # recent alerts per device a verdict can name
STANDING_KEPT = EPISODES_KEPT  # false alarms per device a later confirmed can still withdraw (as many as named)
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
    profile: np.ndarray | None = None  # (2C,) the sum of its windows' profiles (pipeline/feedback.py)
    verdict: str = ""  # its judgement: the last false_alarm or confirmed on it ("": none)
    acked: bool = False
    adopted: bool = False  # raised by an earlier run (its verdicts so far are in the feedback log: recall)


@dataclass(frozen=True)
class VerdictOutcome:
    """What a verdict did: the threshold of the windows like its episode (``applies``) ``before`` and
    ``after``; ``change``: ``raised`` (a false alarm applied), ``withdrawn`` (a confirmed took an earlier false
    alarm's raise back), ``kept`` (that raise is folded into the settled ones: it stays and decays), ``repeated``
    (the alert had this verdict: nothing changed) or ``recorded`` (nothing to change); ``previous``: the
    episode's judgement before; a false alarm's ``needed`` factor over the base, ``capped`` above max_factor."""

    before: float
    after: float
    applies: str
    change: str
    previous: str = ""
    needed: float = 0.0
    capped: bool = False


@dataclass
class DeviceEntry:
    cal: Calibration
    raises: list[ThresholdRaise] = field(default_factory=list)  # apply_false_alarms(settled, standing)
    settled: list[ThresholdRaise] = field(default_factory=list)  # the raises no verdict can withdraw any more
    standing: list[FalseAlarm] = field(default_factory=list)  # the latest false alarms, in order (STANDING_KEPT)
    drift: DriftState = field(default_factory=DriftState)
    drift_reference: float = 0.0
    episodes: OrderedDict[str, Episode] = field(default_factory=OrderedDict)
    open_episode: str = ""  # alert id of the raised episode, if any
    aliases: dict[str, str] = field(default_factory=dict)  # an update's or clear's alert id -> its raise's
    run_profile: np.ndarray | None = None  # (2C,) profiles summed over the current run of windows near the threshold


class DeviceThresholds:
    """Every device's threshold now: ``base x feedback factor``, base = its calibration or the model's; the
    factor of a window is that of the false alarms it is like (:meth:`for_windows`)."""

    def __init__(self, cfg: Config, model: EdgeModel) -> None:
        self.cfg = cfg
        self.rule = FeedbackRule(cfg.feedback_margin, cfg.feedback_max_factor, cfg.feedback_half_life_s,
                                 cfg.feedback_similarity)
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
        self._inv_std = 1.0 / np.where(self.train_std > 0, self.train_std, 1.0)
        self.normal = channel_normals(meta.scoring, thr.validation, meta.n_channels)
        self.channels = list(meta.channels)
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
        if e.raises:
            d["feedback"] = self._summary(e, 0.0, with_now=False)
        return d if len(d) > 1 else None

    def _restore(self, e: DeviceEntry, doc: dict[str, Any]) -> None:
        if doc.get("model_id") == self.model_id and self.policy.spec.on:
            cal = Calibration.from_doc(doc.get("calibration"), len(self.train_mean))
            if cal is not None:
                e.cal = cal
        fb = doc.get("feedback")
        listed = fb.get("raises") if isinstance(fb, dict) else None
        found = [ThresholdRaise.from_doc(r) for r in listed] if isinstance(listed, list) else [
            ThresholdRaise.from_doc(fb)]  # an older daemon's: one raise, for every window
        dims = 2 * len(self.train_mean)
        e.raises = [r for r in found if r is not None and r.factor > 1 and len(r.signature) in (0, dims)]
        e.settled, e.standing = list(e.raises), []

    def base(self, e: DeviceEntry) -> float:
        return e.cal.threshold if e.cal.phase == CALIBRATED and e.cal.threshold else self.model_threshold

    def threshold(self, device: str, now: float) -> float:
        """The device's threshold now for windows unlike every false alarm it was told of."""
        with self.lock:
            e = self._entry(device)
            return self.base(e) * global_factor(self.rule, e.raises, now)

    def before(self, device: str, now: float) -> tuple[float, bool]:
        """:meth:`threshold`, and whether the device is still warming up (scored, never alerted)."""
        with self.lock:
            e = self._entry(device)
            return self.base(e) * global_factor(self.rule, e.raises, now), not e.cal.done

    def _z(self, e: DeviceEntry, windows: np.ndarray) -> np.ndarray:
        """Each window's channel means (k, C) in training std from the training mean (the device's offsets
        taken out); ``windows`` (k, W, C) the device's own values."""
        mean = windows.mean(axis=1, dtype=np.float64) - self.train_mean
        if e.cal.offsets is not None:
            mean -= np.asarray(e.cal.offsets, np.float64)
        z: np.ndarray = mean * self._inv_std
        return z

    def for_windows(self, device: str, threshold: float, scores: np.ndarray, channel_error: np.ndarray,
                    windows: np.ndarray, now: float, masked: bool = False) -> float | np.ndarray:
        """Each window's threshold: ``threshold`` (:meth:`before`'s), raised for the windows like a false alarm
        of the device (scores (k,), channel_error (k, C), windows (k, W, C) raw). A float (the common case: no
        such raise, or no window near the threshold), else (k,). Only the windows whose decision the raise can
        change (score at least ``clear_ratio`` x ``threshold``: *near*) are compared, each by the profile of
        its run of near windows so far (summed: one window alone is a noisy sample of the episode); the
        others keep ``threshold``, and so do windows scored with channels left out (``masked``: a sensor fault;
        the verdict was given on the whole picture)."""
        with self.lock:
            e = self.devices.get(device)
            if e is None or not any(r.signature for r in e.raises):
                return threshold
            if masked:
                e.run_profile = None
                return threshold
            near = np.flatnonzero(scores >= self.cfg.clear_ratio * threshold)
            if not near.shape[0]:
                e.run_profile = None
                return threshold
            p = profiles(channel_error[near], self.normal, self._z(e, windows[near]))
            run = e.run_profile if e.run_profile is not None and e.run_profile.shape == p.shape[1:] else 0.0 * p[0]
            last = -1  # a run carried over from the last call goes on when window 0 is near
            for j, i in enumerate(near.tolist()):
                if i != last + 1:
                    run = 0.0 * run  # a window below the near level ended the run
                run = p[j] = run + p[j]
                last = i
            e.run_profile = run if last == scores.shape[0] - 1 else None
            f = window_factors(self.rule, e.raises, p, now)
            base = self.base(e)
        out = np.full(scores.shape[0], threshold)
        out[near] = np.maximum(threshold, base * f)
        return out

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
               alerts: list[dict[str, Any]], raised: bool, threshold: float | np.ndarray, now: float,
               channel_error: np.ndarray | None = None, windows: np.ndarray | None = None,
               ) -> tuple[str, float, float, float] | None:
        """After the alert tracker: note alert episodes, their peaks and (from ``channel_error`` (k, C) and
        ``windows`` (k, W, C) of the windows above ``threshold``) their profiles; feed drift. A drift notice
        due: ``(kind, rolling, reference, ratio)``."""
        with self.lock:
            e = self._entry(device)
            ep = e.episodes.get(e.open_episode)  # the episode these windows belong to (one cleared here too)
            for a in alerts:
                event = a.get("event") or ("raise" if a.get("state") == "raised" else "clear")
                if event == "raise":
                    ep = self._open(e, a, now, float(a.get("threshold", np.max(threshold))))
                elif e.open_episode in e.episodes:  # an update: the episode goes on
                    e.aliases[str(a.get("alert_id", ""))] = e.open_episode  # a verdict may name any message
                    if event == "clear":
                        done = e.episodes[e.open_episode]
                        done.cleared_at = now
                        done.window_end = max(done.window_end, float(a.get("window_end", 0.0)))
                        e.open_episode = ""
            if (raised or alerts) and ep is not None and scores.shape[0]:
                ep.peak = max(ep.peak, max(scores.tolist()))  # (a few windows: cheaper than np.max)
                if ep.cleared_at is None:
                    ep.window_end = max(ep.window_end, float(t_end[-1]))
                if channel_error is not None and windows is not None:
                    above = np.flatnonzero(scores > threshold)
                    if above.shape[0]:
                        p = profiles(channel_error[above], self.normal, self._z(e, windows[above])).sum(axis=0)
                        ep.profile = p if ep.profile is None or ep.profile.shape != p.shape else ep.profile + p
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

    def _open(self, e: DeviceEntry, a: dict[str, Any], now: float, threshold: float) -> Episode:
        aid = str(a.get("alert_id", ""))
        ep = e.episodes[aid] = Episode(aid, now, float(a.get("window_start", 0.0)), float(a.get("window_end", 0.0)),
                                       float(a.get("score", 0.0)), threshold)
        e.open_episode = aid
        while len(e.episodes) > EPISODES_KEPT:
            gone, _ = e.episodes.popitem(last=False)
            e.aliases = {k: v for k, v in e.aliases.items() if v != gone}
        return ep

    def adopt_alert(self, device: str, alert_id: str, peak: float, anomalous_since: float, now: float) -> None:
        """An alert left raised by an earlier run (its retained state): its episode, so a verdict can name it
        and its peak (and profile) goes on from here."""
        if not alert_id:
            return
        with self.lock:
            e = self._entry(device)
            if alert_id not in e.episodes:
                thr = self.base(e) * global_factor(self.rule, e.raises, now)
                self._open(e, {"alert_id": alert_id, "window_start": anomalous_since,
                               "window_end": anomalous_since, "score": peak}, now, thr).adopted = True

    def recall(self, ep: Episode, judgement: str, acked: bool) -> None:
        """An adopted episode's verdicts from before the restart (the feedback log's): its ``judgement`` and
        whether it was acked, so a verdict on it is a repeat or a change as it would have been."""
        with self.lock:
            if not (ep.verdict or ep.acked):
                ep.verdict, ep.acked = judgement, acked

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

    def verdict(self, device: str, ep: Episode, verdict: str, now: float) -> VerdictOutcome:
        """Carry out ``verdict`` on ``device``'s episode ``ep`` by the last-verdict-wins rule
        (pipeline/feedback.py): a ``false_alarm`` raises the threshold above its peak (bounded) for the windows
        like it, a ``confirmed`` after one withdraws that raise, a verdict the alert already has changes nothing."""
        sig = signature_of(ep.profile) if ep.profile is not None else ()
        label = describe_signature(sig, self.channels) if sig else ""
        if self.rule.similarity <= 0:
            sig, label = (), ""
        with self.lock:
            e = self._entry(device)
            base = self.base(e)
            previous = ep.verdict
            before = base * self._factor_like(e.raises, sig, now)
            applies = f"windows like it ({label})" if sig else "every window"
            needed = needed_factor(self.rule, base, ep.peak) if verdict == "false_alarm" else 0.0
            capped = needed > self.rule.max_factor
            if is_repeat(previous, ep.acked, verdict):
                return VerdictOutcome(before, before, applies, "repeated", previous, needed, capped)
            ep.verdict, ep.acked = standing(previous, verdict), ep.acked or verdict == "ack"
            if verdict == "false_alarm":
                e.standing = [fa for fa in e.standing if fa.alert_id != ep.alert_id]
                e.standing.append(FalseAlarm(ep.alert_id, base, ep.peak, now, sig, label))
                while len(e.standing) > STANDING_KEPT:
                    e.settled, _ = apply_false_alarms(self.rule, e.settled, [e.standing.pop(0)])
                e.raises, i = apply_false_alarms(self.rule, e.settled, e.standing)
                r = e.raises[i]
                change, applies = "raised", (f"windows like it ({r.label})" if r.signature else "every window")
            elif verdict == "confirmed" and previous == "false_alarm":
                kept = [fa for fa in e.standing if fa.alert_id != ep.alert_id]
                if len(kept) == len(e.standing):
                    return VerdictOutcome(before, before, applies, "kept", previous)
                e.standing = kept
                e.raises, _ = apply_false_alarms(self.rule, e.settled, e.standing)
                change = "withdrawn"
            else:
                return VerdictOutcome(before, before, applies, "recorded", previous)
            self.dirty = True
            after = base * self._factor_like(e.raises, sig, now)
            return VerdictOutcome(before, after, applies, change, previous, needed, capped)

    def _factor_like(self, raises: list[ThresholdRaise], sig: tuple[float, ...], now: float) -> float:
        """The factor a window of profile ``sig`` (an episode's signature; (): none) gets from ``raises``."""
        if sig:
            return float(window_factors(self.rule, raises, np.asarray([sig]), now)[0])
        return global_factor(self.rule, raises, now)

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
            base = self.base(e)
            doc: dict[str, Any] = {"threshold": base * global_factor(self.rule, e.raises, now),
                                   "threshold_model": self.model_threshold, "threshold_base": base}
            if e.cal.phase != OFF:
                doc["calibration"] = {**e.cal.to_doc(), "model_id": self.model_id}
            if e.raises:
                doc["feedback"] = self._summary(e, now)
                doc["threshold_feedback"] = base * doc["feedback"]["factor_now"]
            return doc

    def _summary(self, e: DeviceEntry, now: float, with_now: bool = True) -> dict[str, Any]:
        """The device's raises in one document: the largest ``factor`` (and ``factor_now``), the latest
        ``since``, the false alarms in all, and ``raises``, each with the windows it applies to."""
        rs = e.raises
        doc: dict[str, Any] = {"factor": round(max(r.factor for r in rs), 6), "since": max(r.since for r in rs),
                               "false_alarms": sum(r.false_alarms for r in rs), "raises": [r.to_doc() for r in rs]}
        if with_now:
            nows = [current_factor(self.rule, r, now) for r in rs]
            doc["factor_now"] = round(max(nows), 6)
            for d, f in zip(doc["raises"], nows, strict=True):
                d["factor_now"] = round(f, 6)
        return doc

    def snapshot(self, now: float, limit: int = 1000) -> dict[str, float]:
        """Devices whose threshold is not the model's (calibrated or raised): device -> threshold."""
        with self.lock:
            out: dict[str, float] = {}
            for dev, e in self.devices.items():
                value = self.base(e) * global_factor(self.rule, e.raises, now)
                if value != self.model_threshold:
                    out[dev] = value
                    if len(out) >= limit:
                        break
            return out

    def feedback_snapshot(self, now: float, limit: int = 1000) -> dict[str, float]:
        """Devices with a feedback raise: device -> the highest threshold a window like a false alarm gets."""
        with self.lock:
            out: dict[str, float] = {}
            for dev, e in self.devices.items():
                if e.raises:
                    out[dev] = self.base(e) * max(current_factor(self.rule, r, now) for r in e.raises)
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
