"""The per-device raise/clear state machine with hysteresis, and the alert payload. Pure.

A device in ``normal`` raises after ``raise_after`` consecutive windows with
``score > threshold``; a ``raised`` device clears after ``clear_after``
consecutive windows with ``score < clear_ratio * threshold``. Any window in
between resets the run, so a single noisy window never pages anyone.
The payload is described by ``edge_runtime/schemas/alert.schema.json``.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_runtime.pipeline.documents import CLEARED, RAISED, state_doc
from edge_runtime.pipeline.hysteresis import RAISE, AlertPolicy, Run, hysteresis

SCHEMA_VERSION = 1
SCHEMA_ID = "https://edgewatch.dev/schemas/alert/1"

NORMAL = "normal"
MAX_SEQ = 2**53  # a retained seq at or above this is refused (JSON integers beyond it lose precision)


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


def top_channels(channel_error: np.ndarray, names: Sequence[str], k: int) -> list[dict[str, Any]]:
    """The ``k`` channels with the largest share of one window's error. ``channel_error``: (C,)."""
    ce = np.clip(np.asarray(channel_error, dtype=np.float64), 0.0, None)
    total = float(ce.sum())
    order = np.argsort(-ce, kind="stable")[:k]
    return [
        {"name": str(names[i]), "share": round(float(ce[i] / total), 4) if total > 0 else 0.0}
        for i in order
    ]


class AlertTracker:
    """Alert state of every device; :meth:`update` turns scored windows into alert payloads."""

    def __init__(
        self,
        policy: AlertPolicy,
        instance: str,
        id_factory: Callable[[], str] = lambda: uuid.uuid4().hex,
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
        threshold: float,
        channels: Sequence[str],
        model_id: str,
    ) -> list[dict[str, Any]]:
        """Feed one device's windows in time order. ``scores``: (k,), ``channel_error``: (k, C), ``t_*``: (k,)."""
        st = self.devices.get(device)
        if st is None:
            st = self.devices[device] = DeviceState(seq=self.past_seq.pop(device, 0))
        clear_level = self.policy.clear_ratio * threshold
        out: list[dict[str, Any]] = []
        _, events, run = hysteresis(scores, threshold, self.policy, Run(st.state == RAISED, st.above, st.below))
        for i, kind in events:
            st.state = RAISED if kind == RAISE else CLEARED
            out.append(self._payload(device, st, st.state, float(scores[i]), channel_error[i], t_start[i],
                                     t_end[i], threshold, clear_level, channels, model_id))
        st.above, st.below = run.above, run.below
        if scores.shape[0]:
            st.last = (float(scores[-1]), np.array(channel_error[-1]), float(t_start[-1]), float(t_end[-1]))
        return out

    def _payload(
        self, device: str, st: DeviceState, state: str, score: float, ce: np.ndarray, t0: float, t1: float,
        threshold: float, clear_level: float, channels: Sequence[str], model_id: str, reason: str = "",
    ) -> dict[str, Any]:
        st.seq += 1
        now = self._clock()
        st.since = now
        alert_id = self._id()
        raised_id = st.alert_id if state == CLEARED else alert_id
        if state == RAISED:
            st.alert_id = alert_id
        doc = {
            "schema_version": SCHEMA_VERSION,
            "alert_id": alert_id,
            "raised_alert_id": raised_id,
            "device": device,
            "state": state,
            "seq": st.seq,
            "score": float(score),
            "threshold": float(threshold),
            "clear_level": float(clear_level),
            "window_start": float(t0),
            "window_end": float(t1),
            "top_channels": top_channels(ce, channels, self.policy.top_channels),
            "model_id": model_id,
            "instance": self.instance,
            "time": now,
        }
        if reason:
            doc["reason"] = reason
        return doc

    def state_payload(self, device: str, reason: str = "") -> dict[str, Any]:
        """The retained ``alerts/{device}/state`` document: is this device in alarm now."""
        st = self.devices.get(device, DeviceState())
        return state_doc(device, st.state == RAISED, st.alert_id, st.seq, st.since, self.instance, reason)

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
        self.devices[device] = DeviceState(state=RAISED, seq=seq, alert_id=(alert_id or "")[:64])
        return device

    def remember_seq(self, device: str, seq: int) -> None:
        """Note the last ``seq`` of an untracked device (forgotten, or read back from a retained state)."""
        if seq > self.past_seq.get(device, 0):
            self.past_seq[device] = seq
        if device in self.past_seq:
            self.past_seq.move_to_end(device)
        while len(self.past_seq) > self.seq_memory:
            self.past_seq.popitem(last=False)

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
            alert = self._payload(device, st, CLEARED, s, ce, t0, t1, threshold,
                                  self.policy.clear_ratio * threshold, channels, model_id, reason)
            if st.last is None:
                alert["top_channels"] = []
        self.remember_seq(device, st.seq)
        return st, alert
