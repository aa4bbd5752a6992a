"""Sensor-fault alerts per device and channel, raised and cleared with hysteresis. Pure.

Fed the per-sample channel states of :class:`edge_runtime.pipeline.health.ChannelHealth` (codes (n, C)).
A channel raises after ``raise_after`` samples in a row in a fault state and clears after ``clear_after``
healthy samples in a row (:func:`edge_runtime.pipeline.hysteresis.hysteresis`, the rule process alerts use,
on the fault flag). Each alert names the channel, the fault kind, since when (the first faulty sample of the
run; for ``stuck`` the first sample of the flat run, from its length) and the last good value (for ``stuck``
the value the channel froze at). ``stale`` (the device sends nothing) is a device-wide alert (``channel`` null),
raised and cleared by :meth:`SensorAlerts.set_stale`. These are never process anomalies: they go to their own
topic; the scorer leaves a missing or stuck channel out of the process score (an out-of-range one only when it is
frozen there, or with ``health.range_excludes``: :func:`edge_runtime.pipeline.health.left_out`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_runtime.pipeline.documents import CLEARED, RAISED, health_doc, sensor_alert_doc
from edge_runtime.pipeline.health import STATES
from edge_runtime.pipeline.hysteresis import RAISE, AlertPolicy, Run, hysteresis

F64 = npt.NDArray[np.float64]
STALE = "stale"
REJECTED = "rejected"  # device-wide: its last messages were all dropped (wrong channels, not JSON, ...)


@dataclass
class DeviceSensors:
    """One device's sensor-alert state, per channel (C,)."""

    runs: list[Run]
    kind: list[str]  # the raised fault's kind, "" when not raised
    alert_id: list[str]
    since: F64  # epoch s of the first faulty sample of the current faulty run (NaN: none)
    fault_since: F64  # the raised alert's since
    last_good: F64  # the last healthy value (NaN: none yet)
    last_good_t: F64
    codes: npt.NDArray[np.uint8]
    seq: int = 0
    stale: bool = False
    stale_id: str = ""
    stale_since: float = float("nan")
    rejected: bool = False
    rejected_id: str = ""
    rejected_since: float = float("nan")
    degraded: bool = False
    published: tuple[Any, ...] = field(default_factory=tuple)  # what the last health document said


class SensorAlerts:
    """Sensor-alert state of every device; :meth:`update` turns channel states into alert documents."""

    def __init__(self, policy: AlertPolicy, instance: str, channels: Sequence[str],
                 id_factory: Callable[[], str] = lambda: uuid.uuid4().hex,
                 clock: Callable[[], float] = time.time) -> None:
        self.policy = AlertPolicy(policy.raise_after, policy.clear_after, 1.0, policy.top_channels)
        self.instance = instance
        self.channels = list(channels)
        self.devices: dict[str, DeviceSensors] = {}
        self._id = id_factory
        self._clock = clock

    def _state(self, device: str) -> DeviceSensors:
        st = self.devices.get(device)
        if st is None:
            c = len(self.channels)
            nan = np.full(c, np.nan)
            st = self.devices[device] = DeviceSensors(
                [Run() for _ in range(c)], [""] * c, [""] * c, nan.copy(), nan.copy(), nan.copy(), nan.copy(),
                np.zeros(c, np.uint8))
        return st

    def update(self, device: str, ts: F64, codes: npt.NDArray[np.uint8], values: npt.NDArray[np.floating[Any]],
               model_id: str, flat_runs: npt.NDArray[np.int64] | None = None,
               miss_runs: npt.NDArray[np.int64] | None = None, period_s: float | None = None,
               out_runs: npt.NDArray[np.int64] | None = None, inside_before: F64 | None = None
               ) -> list[dict[str, Any]]:
        """Feed one device's samples in time order: ``ts`` (n,), ``codes`` (n, C), ``values`` (n, C) (filled);
        the flat, missing and out-of-range run lengths (n, C) (:attr:`ChannelHealth.flat_runs`, ``miss_runs``,
        ``out_runs``) and the sample period ``period_s`` date a stuck, missing or out-of-range channel's ``since``
        back to the start of its run; ``inside_before`` (C,) is each channel's last value inside its range before
        this block (:attr:`ChannelHealth.inside_before`: the last good value of a run that began before it)."""
        st = self._state(device)
        n = codes.shape[0]
        if n == 0:
            return []
        bad = codes != 0  # (n, C)
        ok = ~bad
        busy = bad.any(axis=0) | np.array([r.raised or r.above > 0 for r in st.runs])
        out: list[dict[str, Any]] = []
        now = self._clock()
        for j in np.flatnonzero(busy).tolist():
            col = bad[:, j]
            _, events, run = hysteresis(col.astype(np.float64), 0.5, self.policy, st.runs[j])
            st.runs[j] = run
            ok_idx = np.flatnonzero(~col)
            for i, event in events:
                before = ok_idx[ok_idx < i]
                if event == RAISE:
                    if before.size:
                        since = float(ts[before[-1] + 1])
                        good, good_t = float(values[before[-1], j]), float(ts[before[-1]])
                    else:
                        since = st.since[j] if st.since[j] == st.since[j] else float(ts[0])
                        good, good_t = float(st.last_good[j]), float(st.last_good_t[j])
                    kind = STATES[int(codes[i, j])]
                    if kind == "stuck" and flat_runs is not None and period_s:
                        since = float(ts[i]) - float(flat_runs[i, j]) * period_s
                        good, good_t = float(values[i, j]), since
                    elif kind == "missing" and miss_runs is not None and period_s:
                        since = float(ts[i]) - float(miss_runs[i, j] - 1) * period_s
                        good, good_t = float(values[i, j]), since - period_s  # the value carried forward
                    elif kind == "out_of_range" and out_runs is not None:
                        first = i - int(out_runs[i, j]) + 1  # the run's first sample outside the range (the hold)
                        if first >= 0:
                            since = float(ts[first])
                        elif period_s:
                            since = float(ts[i]) - float(out_runs[i, j] - 1) * period_s
                        if first > 0:
                            good, good_t = float(values[first - 1, j]), float(ts[first - 1])
                        elif inside_before is not None:  # the run began with this block or before it
                            good = float(inside_before[j])
                            good_t = since - period_s if period_s else float("nan")
                    st.kind[j], st.fault_since[j] = kind, since
                    st.alert_id[j] = self._id()
                    out.append(self._doc(device, self.channels[j], st.kind[j], RAISED, st.alert_id[j],
                                         st.alert_id[j], st, since, float(ts[i]), float(values[i, j]), good, good_t,
                                         now, model_id))
                else:
                    out.append(self._doc(device, self.channels[j], st.kind[j], CLEARED, self._id(),
                                         st.alert_id[j], st, float(st.fault_since[j]), float(ts[i]),
                                         float(values[i, j]), float(values[i, j]), float(ts[i]), now, model_id))
                    st.kind[j] = ""
            if col[-1]:
                start = int(ok_idx[-1]) + 1 if ok_idx.size else -1
                if start >= 0:
                    st.since[j] = float(ts[start])
                elif st.since[j] != st.since[j]:
                    st.since[j] = float(ts[0])
            else:
                st.since[j] = np.nan
        any_ok = ok.any(axis=0)
        if any_ok.all():
            last = n - 1 - np.argmax(ok[::-1], axis=0)  # (C,) the last healthy sample of each channel
            st.last_good = np.asarray(values, dtype=np.float64)[last, np.arange(codes.shape[1])]
            st.last_good_t = ts[last]
        elif any_ok.any():
            last = n - 1 - np.argmax(ok[::-1], axis=0)
            cols = np.flatnonzero(any_ok)
            st.last_good[cols] = np.asarray(values, dtype=np.float64)[last[cols], cols]
            st.last_good_t[cols] = ts[last[cols]]
        st.codes = codes[-1].copy()
        for a in out:
            a["detected_at"] = float(ts[-1])  # the newest sample checked: when the daemon could tell
        return out

    def count_towards_raise(self, device: str, samples: npt.NDArray[np.int64]) -> None:
        """``samples`` (C,): faulty samples in a row each channel had before the next :meth:`update` that its run
        did not count (hidden while the device was out of distribution); a channel not raised counts them, up to
        one short of ``raise_after``."""
        st = self._state(device)
        cap = self.policy.raise_after - 1
        for j in np.flatnonzero(samples).tolist():
            r = st.runs[j]
            if not r.raised:
                st.runs[j] = Run(False, max(r.above, min(int(samples[j]), cap)), 0)

    def set_stale(self, device: str, stale: bool, since: float, model_id: str) -> list[dict[str, Any]]:
        """The device went quiet (``stale``, its last sample at ``since``) or sends again (its first sample
        at ``since``): the device-wide alert."""
        st = self._state(device)
        if st.stale == stale:
            return []
        st.stale = stale
        now = self._clock()
        if stale:
            st.stale_id, st.stale_since = self._id(), since
            return [self._doc(device, None, STALE, RAISED, st.stale_id, st.stale_id, st, since, float("nan"),
                              float("nan"), float("nan"), since, now, model_id)]
        return [self._doc(device, None, STALE, CLEARED, self._id(), st.stale_id, st, st.stale_since, since,
                          float("nan"), float("nan"), float("nan"), now, model_id)]

    def set_rejected(self, device: str, rejected: bool, at: float, model_id: str, detail: str = "",
                     reason: str = "") -> list[dict[str, Any]]:
        """The device's messages are all dropped (``rejected``: since ``at``, why in ``detail``) or it sent one
        that decodes again (at ``at``), daemon clock: the device-wide alert."""
        st = self._state(device)
        if st.rejected == rejected:
            return []
        st.rejected = rejected
        now = self._clock()
        nan = float("nan")
        if rejected:
            st.rejected_id, st.rejected_since = self._id(), at
            return [self._doc(device, None, REJECTED, RAISED, st.rejected_id, st.rejected_id, st, at, at, nan, nan,
                              nan, now, model_id, detail=detail)]
        return [self._doc(device, None, REJECTED, CLEARED, self._id(), st.rejected_id, st, st.rejected_since, at,
                          nan, nan, nan, now, model_id, reason)]

    def _doc(self, device: str, channel: str | None, kind: str, state: str, alert_id: str, raised_id: str,
             st: DeviceSensors, since: float, at: float, value: float, good: float, good_t: float, now: float,
             model_id: str, reason: str = "", detail: str = "") -> dict[str, Any]:
        st.seq += 1
        return sensor_alert_doc(device, channel, kind, state, alert_id, raised_id, st.seq, since, at, value, good,
                                good_t, now, model_id, self.instance, reason, detail)

    def faults(self, device: str) -> list[dict[str, Any]]:
        """The raised sensor alerts of ``device``: channel (None: stale), kind, since, last good value."""
        st = self.devices.get(device)
        if st is None:
            return []
        out: list[dict[str, Any]] = []
        if st.stale:
            out.append({"channel": None, "kind": STALE, "since": _finite(st.stale_since), "last_good_value": None})
        if st.rejected:
            out.append({"channel": None, "kind": REJECTED, "since": _finite(st.rejected_since), "last_good_value": None})
        for j, kind in enumerate(st.kind):
            if kind:
                out.append({"channel": self.channels[j], "kind": kind, "since": _finite(st.fault_since[j]),
                            "last_good_value": _finite(st.last_good[j])})
        return out

    def health_if_changed(self, device: str, excluded: Sequence[str], degraded: bool,
                          model_id: str, out_of_distribution: bool = False) -> dict[str, Any] | None:
        """The health document of ``device`` when its states, faults, exclusions, degraded or out-of-distribution
        flag changed since the last one returned; else None."""
        st = self._state(device)
        st.degraded = degraded
        states = [STATES[int(c)] for c in st.codes]
        faults = self.faults(device)
        key = (tuple(states), tuple((f["channel"], f["kind"]) for f in faults), tuple(excluded), degraded, st.stale,
               out_of_distribution)
        if key == st.published:
            return None
        st.published = key
        return health_doc(device, self.channels, states, faults, excluded, degraded, st.stale, self._clock(),
                          model_id, self.instance, out_of_distribution)

    def health_as_published(self, device: str, model_id: str) -> dict[str, Any] | None:
        """:meth:`health_if_changed` after a device-wide fault changed: exclusions and flags as last published."""
        st = self._state(device)
        excluded, ood = (list(st.published[2]), bool(st.published[5])) if st.published else ([], False)
        return self.health_if_changed(device, excluded, st.degraded, model_id, ood)

    def clear_kind(self, device: str, kind: str, at: float, reason: str, model_id: str) -> list[dict[str, Any]]:
        """Clear ``device``'s raised alerts of ``kind`` with ``reason`` (the sample at ``at``), their runs reset."""
        st = self.devices.get(device)
        if st is None:
            return []
        now = self._clock()
        out = []
        for j, k in enumerate(st.kind):
            if k == kind:
                out.append(self._doc(device, self.channels[j], kind, CLEARED, self._id(), st.alert_id[j], st,
                                     float(st.fault_since[j]), at, float("nan"), float(st.last_good[j]),
                                     float(st.last_good_t[j]), now, model_id, reason))
                st.kind[j], st.runs[j] = "", Run()
        return out

    def forget(self, device: str, reason: str, model_id: str) -> list[dict[str, Any]]:
        """Drop a device (evicted/expired/reload): a ``cleared`` alert with ``reason`` for each raised fault."""
        st = self.devices.pop(device, None)
        if st is None:
            return []
        now = self._clock()
        out = []
        if st.stale:
            out.append(self._doc(device, None, STALE, CLEARED, self._id(), st.stale_id, st, st.stale_since,
                                 float("nan"), float("nan"), float("nan"), float("nan"), now, model_id, reason))
        if st.rejected:
            out.append(self._doc(device, None, REJECTED, CLEARED, self._id(), st.rejected_id, st, st.rejected_since,
                                 float("nan"), float("nan"), float("nan"), float("nan"), now, model_id, reason))
        for j, kind in enumerate(st.kind):
            if kind:
                out.append(self._doc(device, self.channels[j], kind, CLEARED, self._id(), st.alert_id[j], st,
                                     float(st.fault_since[j]), float("nan"), float("nan"), float(st.last_good[j]),
                                     float(st.last_good_t[j]), now, model_id, reason))
        return out


def _finite(v: float) -> float | None:
    return None if v != v else float(v)
