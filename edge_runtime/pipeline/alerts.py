"""The per-device raise/update/clear state machine with hysteresis, and the alert payload. Pure.

A device in ``normal`` raises after ``raise_after`` consecutive windows with
``score > threshold``; a ``raised`` device clears after ``clear_after``
consecutive windows with ``score < clear_ratio * threshold``. Any window in
between resets the run, so a single noisy window never pages anyone. While raised,
an ``update`` (``state`` still ``raised``, ``event`` ``update``) is published when the set of
top channels (those with at least 10 % of the excess error) or the severity changes, at most once per
``update_interval_s`` of window time, from a window above the threshold.
Every message's ``alert_id`` is ``{device}:{seq}`` (unique per instance, stable across restarts
because ``seq`` is read back from the retained state); ``raised_alert_id``, the id of the alert a
message belongs to, is its raise's ``alert_id`` (parse it with ``rsplit(":", 1)``).
The payload is described by ``edge_runtime/schemas/alert.schema.json``; what the channels say
(excess shares, measured against expected) by :mod:`edge_runtime.pipeline.explain`.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from edge_runtime.pipeline.documents import CLEARED, RAISED, iso_utc, state_doc
from edge_runtime.pipeline.explain import (
    clear_summary,
    describe_channels,
    raise_summary,
    range_summary,
    top_channels,
)
from edge_runtime.pipeline.hysteresis import RAISE, AlertPolicy, Run, hysteresis

__all__ = ["AlertTracker", "DeviceState", "StateError", "severity", "top_channels"]

SCHEMA_VERSION = 2
SCHEMA_ID = "https://edgewatch.dev/schemas/alert/2"

NORMAL = "normal"
MAX_SEQ = 2**53  # a retained seq at or above this is refused (JSON integers beyond it lose precision)
WARNING, CRITICAL = "warning", "critical"
EV_RAISE, EV_UPDATE, EV_CLEAR = "raise", "update", "clear"

# window index -> (measured (C,), expected (C,)) window means in raw units, then optionally each channel's sample
# that departs most from the expected curve (peak measured (C,), peak expected (C,)); asked for the windows that
# raise/update
Detail = Callable[[int], "tuple[np.ndarray, ...] | None"]
# window index -> the channels of that window outside their checked range (explain.out_of_range), for raise/update
Ranges = Callable[[int], "list[dict[str, Any]]"]


class StateError(ValueError):
    """A retained state document of this instance that cannot be adopted (malformed)."""


@dataclass
class DeviceState:
    state: str = NORMAL
    above: int = 0
    below: int = 0
    seq: int = 0
    alert_id: str = ""  # id of the last raise: a clear payload refers to it as raised_alert_id
    since: float = 0.0
    last: tuple[float, np.ndarray, float, float] | None = None  # last window: score, channel_error (C,), t0, t1
    run_since: float = 0.0  # window_end of the first window of the current run above the threshold (not raised)
    anomalous_since: float = 0.0  # that time for the run that raised the alert
    peak_score: float = 0.0  # highest score while raised (0: unknown, e.g. adopted from an earlier run)
    peak_time: float = 0.0  # its window_end
    published_t: float = 0.0  # window_end of the last raise/update
    published_key: tuple[frozenset[str], str] | None = None  # (top channel names, severity) last published


def severity(score: float, threshold: float, critical_ratio: float) -> str:
    """``critical`` when ``score >= critical_ratio * threshold``, else ``warning``."""
    return CRITICAL if score >= critical_ratio * threshold else WARNING


SIGNIFICANT_SHARE = 0.1  # a top channel with less of the excess does not count as a change of channels


def _names(tops: list[dict[str, Any]]) -> frozenset[str]:
    """The top channels that carry a real part of the excess (all of them when none has any)."""
    big = frozenset(t["name"] for t in tops if t.get("excess_share", 1.0) >= SIGNIFICANT_SHARE)
    return big or frozenset(t["name"] for t in tops)


def default_id(device: str, seq: int) -> str:
    return f"{device}:{seq}"


class AlertTracker:
    """Alert state of every device; :meth:`update` turns scored windows into alert payloads."""

    def __init__(
        self,
        policy: AlertPolicy,
        instance: str,
        id_factory: Callable[[str, int], str] = default_id,
        clock: Callable[[], float] = time.time,
        seq_memory: int = 10_000,
    ) -> None:
        self.policy = policy
        self.instance = instance
        self.devices: dict[str, DeviceState] = {}
        # last seq of devices no longer tracked (LRU, at most seq_memory): seq stays monotonic when they return
        self.past_seq: OrderedDict[str, int] = OrderedDict()
        self.seq_memory = seq_memory
        self._id = id_factory
        self._clock = clock

    def update(
        self,
        device: str,
        scores: np.ndarray,
        channel_error: np.ndarray,
        t_start: np.ndarray,
        t_end: np.ndarray,
        threshold: float | np.ndarray,
        channels: Sequence[str],
        model_id: str,
        *,
        normal: np.ndarray | None = None,
        units: Mapping[str, str] | None = None,
        detail: Detail | None = None,
        excluded: Sequence[str] = (),
        ranges: Ranges | None = None,
    ) -> list[dict[str, Any]]:
        """Feed one device's windows in time order. ``scores``: (k,), ``channel_error``: (k, C), ``t_*``: (k,);
        ``threshold``: one for all, or each window's (k,) (a feedback raise for the windows like a false alarm).

        ``normal`` (C,): each channel's normal ``channel_error`` (excess shares; see
        :mod:`edge_runtime.pipeline.explain`); ``units``: channel -> unit; ``detail(i)``: the measured and
        expected window means (C,) of window ``i`` (then, optionally, the peak sample's; see ``Detail``), asked only
        for the windows that raise or update;
        ``excluded``: channels left out of these scores (sensor faults), named in the alerts; ``ranges(i)``: the
        channels of window ``i`` outside the range they are checked against (a raise or update's ``out_of_range``)."""
        st = self.devices.get(device)
        if st is None:
            st = self.devices[device] = DeviceState(seq=self.past_seq.pop(device, 0))
        pol = self.policy
        n = scores.shape[0]
        per_window = threshold if isinstance(threshold, np.ndarray) else None
        first = float(threshold) if per_window is None else float(per_window[0]) if n else 0.0
        out: list[dict[str, Any]] = []
        raised_after, events, run = hysteresis(scores, threshold, pol, Run(st.state == RAISED, st.above, st.below))
        base_ctx = _Context(first, pol.clear_ratio * first, channels, model_id, normal, units or {}, detail, ranges)
        ev = dict(events)
        for i in sorted(set(np.flatnonzero(raised_after).tolist()) | ev.keys()):
            kind = ev.get(i)
            s, t1 = float(scores[i]), float(t_end[i])
            ctx = base_ctx
            if per_window is not None:
                ti = float(per_window[i])
                ctx = replace(base_ctx, threshold=ti, clear_level=pol.clear_ratio * ti)
            if kind == RAISE:
                j = i - pol.raise_after + 1
                st.anomalous_since = float(t_end[j]) if j >= 0 else (st.run_since or t1)
                st.state, st.peak_score, st.peak_time = RAISED, s, t1
                out.append(self._payload(device, st, EV_RAISE, i, s, channel_error[i], t_start[i], t1, ctx))
            elif kind is not None:  # cleared
                st.state = CLEARED
                out.append(self._payload(device, st, EV_CLEAR, i, s, channel_error[i], t_start[i], t1, ctx))
            else:  # a window while raised
                if s > st.peak_score:
                    st.peak_score, st.peak_time = s, t1
                if pol.update_interval_s > 0 and s > ctx.threshold and t1 - st.published_t >= pol.update_interval_s:
                    key = self._key(channel_error[i], s, ctx)
                    if key != st.published_key:
                        out.append(self._payload(device, st, EV_UPDATE, i, s, channel_error[i], t_start[i], t1, ctx))
        if excluded:
            for a in out:
                a["excluded_channels"] = list(excluded)
        st.above, st.below = run.above, run.below
        if n:
            st.last = (float(scores[-1]), np.array(channel_error[-1]), float(t_start[-1]), float(t_end[-1]))
            if st.state != RAISED and run.above > 0 and n - run.above >= 0:
                st.run_since = float(t_end[n - run.above])
        return out

    def _key(self, ce: np.ndarray, score: float, ctx: _Context) -> tuple[frozenset[str], str]:
        tops = top_channels(ce, ctx.channels, self.policy.top_channels, ctx.normal)
        return _names(tops), severity(score, ctx.threshold, self.policy.critical_ratio)

    def _payload(
        self, device: str, st: DeviceState, event: str, i: int, score: float, ce: np.ndarray, t0: float,
        t1: float, ctx: _Context, reason: str = "",
    ) -> dict[str, Any]:
        st.seq += 1
        now = self._clock()
        alert_id = self._id(device, st.seq)
        if event == EV_RAISE:
            st.alert_id, st.since = alert_id, now
        elif event == EV_CLEAR:
            st.since = now
        pol = self.policy
        tops = top_channels(ce, ctx.channels, pol.top_channels, ctx.normal)
        sev = severity(score, ctx.threshold, pol.critical_ratio)
        doc: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "alert_id": alert_id,
            "raised_alert_id": st.alert_id or alert_id,
            "device": device,
            "state": CLEARED if event == EV_CLEAR else RAISED,
            "event": event,
            "seq": st.seq,
            "score": float(score),
            "threshold": float(ctx.threshold),
            "clear_level": float(ctx.clear_level),
            "window_start": float(t0),
            "window_end": float(t1),
            "top_channels": tops,
            "model_id": ctx.model_id,
            "instance": self.instance,
            "time": now,
            "time_iso": iso_utc(now),
            "window_start_iso": iso_utc(float(t0)),
            "window_end_iso": iso_utc(float(t1)),
        }
        if st.anomalous_since:
            doc["anomalous_since"] = st.anomalous_since
            doc["anomalous_since_iso"] = iso_utc(st.anomalous_since)
        if st.peak_score > 0:
            doc["peak_score"] = st.peak_score
            doc["peak_time"] = st.peak_time
        if event == EV_CLEAR:
            peak = st.peak_score or float(score)
            doc["severity"] = severity(peak, ctx.threshold, pol.critical_ratio)  # the alert's worst
            duration = max(0.0, float(t1) - st.anomalous_since) if st.anomalous_since else 0.0
            if st.anomalous_since:
                doc["duration_s"] = duration
            doc["summary"] = clear_summary(duration, peak, ctx.threshold, reason)
            st.anomalous_since, st.peak_score, st.peak_time, st.published_key = 0.0, 0.0, 0.0, None
        else:
            measured = ctx.detail(i) if ctx.detail is not None else None
            if measured is not None:
                tops = doc["top_channels"] = describe_channels(tops, ctx.channels, ctx.units, *measured)
            doc["severity"] = sev
            doc["summary"] = raise_summary(tops, sev)
            outside = ctx.ranges(i) if ctx.ranges is not None else []
            if outside:  # named apart: the model may see no error on a channel it reconstructs where it lies
                doc["out_of_range"] = outside
                doc["summary"] += f"; {range_summary(outside)}"
            st.published_t, st.published_key = float(t1), (_names(tops), sev)
        doc["score_ratio"] = round(float(score) / ctx.threshold, 4) if ctx.threshold > 0 else 0.0
        if reason:
            doc["reason"] = reason
        return doc

    def state_payload(self, device: str, reason: str = "") -> dict[str, Any]:
        """The retained ``alerts/{device}/state`` document: is this device in alarm now."""
        st = self.devices.get(device, DeviceState())
        return state_doc(device, st.state == RAISED, st.alert_id, st.seq, st.since, self.instance, reason,
                         (st.peak_score, st.peak_time, st.anomalous_since))

    def adopt(self, doc: Any, topic: str, state_topic: Callable[[str], str]) -> str | None:
        """Take over a retained state document of an earlier run (read back at connect on ``topic``;
        ``state_topic(device)`` is where this instance publishes it). A ``raised`` device of this instance is
        tracked as raised again, so its normal data clears it; from any state its ``seq`` carries on.
        Returns the device when it was adopted as raised; None when ``doc`` is another instance's (or for
        another topic), or this run already published a newer state. Raises :class:`StateError` when ``doc``
        claims to be this instance's but is malformed (wrong types, a ``seq`` that is not an integer
        0 <= seq < 2^53, an unknown state)."""
        if not isinstance(doc, dict):
            raise StateError(f"a JSON {type(doc).__name__}, not an object")
        instance = doc.get("instance")
        if not isinstance(instance, str):
            raise StateError("'instance' is not a string")
        if instance != self.instance:
            return None
        device, seq, state = doc.get("device"), doc.get("seq"), doc.get("state")
        if not isinstance(device, str) or not device:
            raise StateError("'device' is not a non-empty string")
        if seq is None:
            seq = 0
        if type(seq) is not int or not 0 <= seq < MAX_SEQ:
            raise StateError(f"'seq' is not an integer in [0, 2^53): {str(seq)[:40]}")
        if state not in (RAISED, CLEARED):
            raise StateError(f"'state' is not raised or cleared: {str(state)[:40]}")
        alert_id = doc.get("raised_alert_id")
        if alert_id is not None and not isinstance(alert_id, str):
            raise StateError("'raised_alert_id' is not a string")
        if topic != state_topic(device):
            return None
        known = self.devices.get(device)
        if known is not None and known.seq > 0:
            return None  # this run already published a newer state for it
        if state == CLEARED:
            if known is None:
                self.remember_seq(device, seq)
            else:  # seen in this run, no alert yet: carry on from the earlier run's seq
                known.seq = max(known.seq, seq)
            return None
        since, peak, peak_t = (_time(doc.get(k)) for k in ("since", "peak_score", "peak_time"))
        self.devices[device] = DeviceState(state=RAISED, seq=seq, alert_id=(alert_id or "")[:320],
                                           anomalous_since=_time(doc.get("anomalous_since")) or since,
                                           peak_score=peak, peak_time=peak_t if peak > 0 else 0.0)
        return device

    def remember_seq(self, device: str, seq: int) -> None:
        """Note the last ``seq`` of an untracked device (forgotten, or read back from a retained state)."""
        if seq > self.past_seq.get(device, 0):
            self.past_seq[device] = seq
        if device in self.past_seq:
            self.past_seq.move_to_end(device)
        while len(self.past_seq) > self.seq_memory:
            self.past_seq.popitem(last=False)

    def release(self, device: str) -> None:
        """Drop everything known about ``device`` without an alert: another worker of a NATS consumer group
        owns it now and carries its state on (read back from the group's KV bucket when it returns)."""
        self.devices.pop(device, None)
        self.past_seq.pop(device, None)

    def forget(
        self, device: str, reason: str, threshold: float, channels: Sequence[str], model_id: str,
    ) -> tuple[DeviceState | None, dict[str, Any] | None]:
        """Drop a device's state (evicted or expired; its seq is remembered). Returns the state and, for a
        raised device, its ``cleared`` alert with ``reason``; ``score``/``window_*``/``top_channels`` describe
        its last scored window (score 0, both window times = now, no channels when none was scored)."""
        st = self.devices.pop(device, None)
        if st is None:
            return None, None
        alert = None
        if st.state == RAISED:
            st.state, st.above, st.below = CLEARED, 0, 0
            if st.last is not None:
                s, ce, t0, t1 = st.last
            else:
                s, ce, t0, t1 = 0.0, np.zeros(len(channels), np.float32), self._clock(), self._clock()
            ctx = _Context(threshold, self.policy.clear_ratio * threshold, channels, model_id, None, {}, None)
            alert = self._payload(device, st, EV_CLEAR, -1, s, ce, t0, t1, ctx, reason)
            if st.last is None:
                alert["top_channels"] = []
        self.remember_seq(device, st.seq)
        return st, alert


def _time(v: Any) -> float:
    """A positive finite number of a retained document (a time, a score), else 0 (unknown)."""
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
    return float(v) if ok else 0.0


@dataclass(frozen=True)
class _Context:
    """What one :meth:`AlertTracker.update` call knows about the model and the windows."""

    threshold: float
    clear_level: float
    channels: Sequence[str]
    model_id: str
    normal: np.ndarray | None
    units: Mapping[str, str]
    detail: Detail | None
    ranges: Ranges | None = None
