"""The documents the daemon publishes besides alerts, one builder each, and the outbound message. Pure.

- state (``alerts/{device}/state``, retained): is this device in alarm now; ``edge_runtime/schemas/state.schema.json``
- status (``edgewatch/{instance}/status``, retained): ``online`` with the model it runs, or ``offline`` (also the
  Last Will) with a reason
- score (``edgewatch/{device}/score``, optional): one message per scored item, its windows' scores
- sensor alert (``health/{device}/alerts``): a channel's sensor fault raised or cleared;
  ``edge_runtime/schemas/sensor_alert.schema.json``
- health (``health/{device}``, retained): every channel's state, the excluded channels, degraded, stale;
  ``edge_runtime/schemas/health.schema.json``

The alert payload itself is built by :class:`edge_runtime.pipeline.alerts.AlertTracker`; the stats document by
:class:`edge_runtime.pipeline.stats.Stats`. Times are given (epoch s), never read here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import numpy.typing as npt

STATE_SCHEMA_VERSION = 1
RAISED = "raised"
CLEARED = "cleared"


def iso_utc(t: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds: ``2026-12-01T12:50:42.123Z`` (``""`` when out of range)."""
    try:
        return datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except (ValueError, OverflowError, OSError):
        return ""


def to_json(doc: object) -> str:
    """Strict JSON, as every published document must be (JavaScript's ``JSON.parse`` and the schemas refuse
    NaN and Infinity): raises ValueError on a non-finite number instead of writing one."""
    return json.dumps(doc, allow_nan=False)


@dataclass(frozen=True, slots=True)
class Outbound:
    """One MQTT message to publish."""

    topic: str
    payload: str
    qos: int = 1
    retain: bool = False
    bulk: bool = False  # lower priority (discovery, scores, stats): never takes an alert's place in the queue
    paced: bool = True  # a retained bulk message waits for the housekeeping tick (False: sent at once, as stats)
    reassert: bool = True  # retained: published again when the broker lost it (False: discovery, stats)


def state_doc(device: str, raised: bool, raised_alert_id: str, seq: int, since: float, instance: str,
              reason: str = "", peak: tuple[float, float, float] | None = None) -> dict[str, Any]:
    """The retained state document; ``raised_alert_id`` / ``since`` empty or 0 are ``null``; ``peak``
    (raised: ``(peak_score, peak_time, anomalous_since)``, 0 unknown) so a restart adopts the alert with them."""
    doc: dict[str, Any] = {
        "schema_version": STATE_SCHEMA_VERSION,
        "device": device,
        "state": RAISED if raised else CLEARED,
        "raised_alert_id": raised_alert_id or None,
        "seq": seq,
        "since": since or None,
        "instance": instance,
    }
    if raised and peak is not None:
        for key, v in zip(("peak_score", "peak_time", "anomalous_since"), peak, strict=True):
            if v:
                doc[key] = v
    if reason:
        doc["reason"] = reason
    return doc


def online_doc(instance: str, version: str, model_id: str, provider: str, provider_reason: str,
               channels: Sequence[str], window: int, threshold: float, now: float, owner: str = "") -> dict[str, Any]:
    """The retained ``online`` status: what this instance runs; ``owner`` (host:pid:run) tells two daemons
    that share an instance name apart."""
    doc: dict[str, Any] = {"state": "online", "instance": instance, "version": version, "model_id": model_id,
                           "provider": provider, "provider_reason": provider_reason, "channels": list(channels),
                           "window": window, "threshold": threshold, "time": now}
    if owner:
        doc["owner"] = owner
    return doc


def foreign_online(doc: Any, owner: str, since: float) -> str:
    """The owner of ``doc`` when it is an ``online`` status published at or after ``since`` (epoch s) by an
    owner other than ``owner`` (another daemon under the same instance name); else ''."""
    if not isinstance(doc, dict) or doc.get("state") != "online":
        return ""
    other, t = doc.get("owner"), doc.get("time")
    if not isinstance(other, str) or not other or other == owner:
        return ""
    if not isinstance(t, (int, float)) or isinstance(t, bool) or not t >= since:
        return ""
    return other[:200]


def offline_doc(instance: str, reason: str, now: float | None = None) -> dict[str, Any]:
    """The retained ``offline`` status; the Last Will (sent by the broker later) has no ``time``."""
    doc: dict[str, Any] = {"state": "offline", "instance": instance, "reason": reason}
    if now is not None:
        doc["time"] = now
    return doc


def score_doc(device: str, model_id: str, threshold: float, t_start: npt.NDArray[np.float64],
              t_end: npt.NDArray[np.float64], score: npt.NDArray[np.floating[Any]]) -> dict[str, Any]:
    """Scores of one device's k windows: ``t_start``/``t_end``/``score`` (k,)."""
    return {"device": device, "model_id": model_id, "threshold": threshold,
            "window_start": t_start.tolist(), "window_end": t_end.tolist(), "score": score.tolist()}


OPERATING_SCHEMA_VERSION = 1


def operating_doc(device: str, state: str, since: float, reason: str, instance: str, model_id: str,
                  now: float) -> dict[str, Any]:
    """A device's operating state (``operating.schema.json``): ``state`` one of
    :data:`edge_runtime.pipeline.states.STATES`, ``since`` the device time (epoch s) it began, ``reason`` why."""
    return {"schema_version": OPERATING_SCHEMA_VERSION, "device": device, "state": state, "since": since,
            "reason": reason, "scored": state == "running", "instance": instance, "model_id": model_id, "time": now}
SENSOR_SCHEMA_VERSION = 1
HEALTH_SCHEMA_VERSION = 1


def _num_or_none(v: float) -> float | None:
    return None if v != v else float(v)  # NaN: unknown


def sensor_alert_doc(device: str, channel: str | None, kind: str, state: str, alert_id: str, raised_alert_id: str,
                     seq: int, since: float, at: float, value: float, last_good: float, last_good_time: float,
                     now: float, model_id: str, instance: str, reason: str = "", detail: str = "") -> dict[str, Any]:
    """A sensor-fault alert: ``channel`` (None: the whole device, ``stale`` or ``rejected``) in fault ``kind``
    since ``since`` was ``raised`` or ``cleared`` at the sample stamped ``at``; NaN numbers are ``null``;
    ``detail``: what is wrong, in words (a ``rejected`` raise)."""
    doc: dict[str, Any] = {
        "schema_version": SENSOR_SCHEMA_VERSION, "alert_id": alert_id, "raised_alert_id": raised_alert_id,
        "device": device, "channel": channel, "kind": kind, "state": state, "seq": seq,
        "since": _num_or_none(since), "at": _num_or_none(at), "value": _num_or_none(value), "last_good_value": _num_or_none(last_good),
        "last_good_time": _num_or_none(last_good_time), "model_id": model_id, "instance": instance, "time": now,
    }
    if reason:
        doc["reason"] = reason
    if detail:
        doc["detail"] = detail
    return doc


def health_doc(device: str, channels: Sequence[str], states: Sequence[str], faults: list[dict[str, Any]],
               excluded: Sequence[str], degraded: bool, stale: bool, now: float, model_id: str,
               instance: str, out_of_distribution: bool = False) -> dict[str, Any]:
    """The retained per-device health document: ``states`` (C,) each channel's state now, ``faults`` the
    raised sensor alerts (channel, kind, since, last_good_value), ``excluded`` the channels left out of the score,
    ``out_of_distribution`` most channels out of range at once (an operating point far from training)."""
    overall = ("stale" if stale else "out_of_distribution" if out_of_distribution else "degraded" if degraded
               else "fault" if faults else "ok")
    return {
        "schema_version": HEALTH_SCHEMA_VERSION, "device": device, "state": overall,
        "channels": [{"name": c, "state": st} for c, st in zip(channels, states, strict=True)],
        "faults": faults, "excluded": list(excluded), "degraded": degraded, "stale": stale,
        "out_of_distribution": out_of_distribution,
        "model_id": model_id, "instance": instance, "time": now,
    }
