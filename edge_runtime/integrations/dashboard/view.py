"""The fleet as the published documents describe it, for the dashboard. No sockets, no clock of its own.

:class:`FleetView` takes every received message (``ingest(topic, payload, retained, received)``): status and
stats per gateway (``edgewatch/{instance}/status|stats``), alerts and retained states per device
(``alerts/{device}``, ``alerts/{device}/state``) and, when the daemon publishes them (``alerts.publish_scores``),
window scores (``scores/{device}``); sensor health per device (the retained ``health/{device}`` document and
the sensor-fault alerts on ``health/{device}/alerts``). Every change bumps a version; :meth:`FleetView.delta` returns what changed
after a version the browser already has (``delta(0)``: everything), so a push carries only new points.

Score history: per device the last ``history_s`` seconds of stream time, at most one point per ``bucket_s``
(a bucket keeps its highest score, so a short peak is not lost), ``(t_end, score)`` pairs.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge_runtime.config import Config
from edge_runtime.pipeline.documents import CLEARED, RAISED
from edge_runtime.pipeline.topics import TopicError, TopicTemplate

LOG_LENGTH = 500  # alert log entries kept
ALERT_FIELDS = ("alert_id", "raised_alert_id", "device", "state", "seq", "score", "threshold", "clear_level",
                "window_start", "window_end", "top_channels", "model_id", "instance", "time",
                # schema 2 (edge_runtime/schemas/alert.schema.json): absent from version 1 alerts
                "event", "severity", "summary", "anomalous_since", "peak_score", "duration_s")
STATUS_FIELDS = ("state", "instance", "version", "model_id", "provider", "provider_reason", "channels", "window",
                 "threshold", "time", "reason")
STATS_FIELDS = ("messages", "windows_scored", "dropped_total", "drops", "publish_lost_total", "publish_lost",
                "devices_active", "queue_windows", "connected", "provider", "model_id", "inference_ms_p50", "inference_ms_p99", "uptime_s", "time",
                "alerts_raised", "alerts_cleared")
HEALTH_STATES = ("ok", "fault", "degraded", "stale")  # edge_runtime/schemas/health.schema.json
SENSOR_FIELDS = ("alert_id", "raised_alert_id", "channel", "kind", "state", "seq", "since", "at", "value",
                 "last_good_value", "last_good_time", "detected_at", "reason", "time")
SENSOR_KEEP = 20  # sensor alerts kept per device


def _template(t: str) -> TopicTemplate | None:
    """``edgewatch/{instance}/status`` and ``alerts/{device}`` alike: the one named level becomes the key."""
    try:
        return TopicTemplate(t.replace("{instance}", "{device}"))
    except TopicError:
        return None


@dataclass
class Topics:
    """Which topic is which document, from the daemon's configuration."""

    alert: str = "alerts/{device}"
    state: str = "alerts/{device}/state"
    score: str = "scores/{device}"
    status: str = "edgewatch/{instance}/status"
    stats: str = "edgewatch/{instance}/stats"
    sensor: str = "health/{device}/alerts"
    health: str = "health/{device}"

    @classmethod
    def from_config(cls, cfg: Config) -> Topics:
        return cls(cfg.alert_topic, cfg.state_topic, cfg.score_topic, cfg.status_topic, cfg.stats_topic,
                   cfg.sensor_topic, cfg.health_topic)

    def matchers(self) -> list[tuple[str, TopicTemplate]]:
        kinds = ("state", "alert", "score", "status", "stats", "sensor", "health")
        out = [(kind, _template(getattr(self, kind))) for kind in kinds]
        return [(k, m) for k, m in out if m is not None]

    def filters(self) -> list[str]:
        """The subscription filters, one per document kind (duplicates removed)."""
        return list(dict.fromkeys(m.filter for _, m in self.matchers()))


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return f if f == f and abs(f) != float("inf") else None


def _pick(doc: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: doc[k] for k in keys if k in doc}


@dataclass
class DeviceView:
    """One device: its state, latest score and a bounded score history."""

    name: str
    v: int = 0
    state: str = "unknown"  # raised / cleared (from alerts and states) or unknown
    score: float | None = None
    threshold: float | None = None
    last_window_end: float | None = None  # stream time
    last_seen: float | None = None  # receive time of the last document about it
    since: float | None = None
    instance: str = ""
    model_id: str = ""
    points: deque[list[float]] = field(default_factory=deque)  # [version, t_end, score]
    health: dict[str, Any] | None = None  # the last health document's fields (None: none seen)
    sensor_alerts: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=SENSOR_KEEP))

    def summary(self, since_v: int) -> dict[str, Any]:
        new = []
        for p in reversed(self.points):
            if p[0] <= since_v:
                break
            new.append([p[1], p[2]])
        new.reverse()
        # scored but never in an alert or state document: normal as far as the daemon has said
        state = "normal" if self.state == "unknown" and self.points else self.state
        return {"name": self.name, "state": state, "score": self.score, "threshold": self.threshold,
                "last_window_end": self.last_window_end, "last_seen": self.last_seen, "since": self.since,
                "instance": self.instance, "model_id": self.model_id, "points": new,
                "health": self.health, "sensor_alerts": list(self.sensor_alerts)}


class FleetView:
    """Gateways, devices, open alerts and the alert log, versioned; thread-safe (one lock)."""

    def __init__(self, topics: Topics | None = None, history_s: float = 300.0, bucket_s: float = 0.5,
                 max_devices: int = 2_000, on_skip: Callable[[str, str], None] | None = None) -> None:
        self.topics = topics or Topics()
        self._matchers = self.topics.matchers()
        self.history_s = history_s
        self.bucket_s = bucket_s
        self.max_devices = max_devices
        self.on_skip = on_skip
        self.version = 0
        self.devices: dict[str, DeviceView] = {}
        self.gateways: dict[str, dict[str, Any]] = {}
        self.gateway_v: dict[str, int] = {}
        self.open_alerts: dict[str, dict[str, Any]] = {}
        self.log: deque[tuple[int, dict[str, Any]]] = deque(maxlen=LOG_LENGTH)
        self.open_v = 0
        self.skipped = 0
        self.scores_seen = 0
        self.broker: dict[str, Any] = {"connected": False, "where": "", "note": "", "since": None}
        self.broker_v = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    # ---- input ----
    def ingest(self, topic: str, payload: bytes, retained: bool, received: float) -> None:
        """One MQTT message; malformed ones are counted (``skipped``) and passed to ``on_skip(topic, why)``."""
        kind, key = self._classify(topic)
        if kind is None or key is None:
            return
        if not payload:  # a deleted retained message
            return
        try:
            doc = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            return self._skip(topic, "not JSON")
        if not isinstance(doc, dict):
            return self._skip(topic, "not a JSON object")
        with self._changed:
            self.version += 1
            why = getattr(self, f"_on_{kind}")(key, doc, retained, received)
            if why:
                self.skipped += 1
            else:
                self._changed.notify_all()
        if why and self.on_skip:
            self.on_skip(topic, why)

    def set_broker(self, connected: bool, where: str, note: str, now: float) -> None:
        """The dashboard's own MQTT link: up or down, and the last notice."""
        with self._changed:
            self.version += 1
            was = self.broker.get("connected")
            self.broker = {"connected": connected, "where": where, "note": note,
                           "since": now if was != connected else self.broker.get("since")}
            self.broker_v = self.version
            self._changed.notify_all()

    def _skip(self, topic: str, why: str) -> None:
        with self._lock:
            self.skipped += 1
        if self.on_skip:
            self.on_skip(topic, why)

    def _classify(self, topic: str) -> tuple[str | None, str | None]:
        for kind, m in self._matchers:
            key = m.device(topic)
            if key is not None:
                return kind, key
        return None, None

    def _device(self, name: str) -> DeviceView | None:
        dev = self.devices.get(name)
        if dev is None:
            if len(self.devices) >= self.max_devices:
                return None
            dev = self.devices[name] = DeviceView(name)
        dev.v = self.version
        return dev

    def _on_alert(self, key: str, doc: dict[str, Any], retained: bool, received: float) -> str:
        state = doc.get("state")
        if state not in (RAISED, CLEARED) or not isinstance(doc.get("device", key), str):
            return "an alert without state raised/cleared"
        dev = self._device(key)
        if dev is None:
            return "too many devices"
        entry = {**_pick(doc, ALERT_FIELDS), "device": key, "received": received}
        dev.state, dev.since, dev.last_seen = state, _num(doc.get("time")), received
        dev.instance = str(doc.get("instance", dev.instance))
        dev.model_id = str(doc.get("model_id", dev.model_id))
        thr = _num(doc.get("threshold"))
        if thr is not None:
            dev.threshold = thr
        self.log.append((self.version, entry))
        if state == RAISED:
            self.open_alerts[key] = entry
        else:
            self.open_alerts.pop(key, None)
        self.open_v = self.version
        return ""

    def _on_state(self, key: str, doc: dict[str, Any], retained: bool, received: float) -> str:
        state = doc.get("state")
        if state not in (RAISED, CLEARED):
            return "a state without state raised/cleared"
        dev = self._device(key)
        if dev is None:
            return "too many devices"
        dev.state = state
        dev.since = _num(doc.get("since")) or dev.since
        dev.instance = str(doc.get("instance", dev.instance))
        if state == RAISED and key not in self.open_alerts:
            # known from the retained state only (raised before the dashboard started): no score, no channels
            self.open_alerts[key] = {"device": key, "state": RAISED, "alert_id": doc.get("raised_alert_id"),
                                     "time": dev.since, "instance": dev.instance, "received": received,
                                     "from_state": True}
        elif state == CLEARED:
            self.open_alerts.pop(key, None)
        self.open_v = self.version
        return ""

    def _on_score(self, key: str, doc: dict[str, Any], retained: bool, received: float) -> str:
        t_end, score = doc.get("window_end"), doc.get("score")
        if not isinstance(t_end, list) or not isinstance(score, list) or len(t_end) != len(score):
            return "a score document without equal-length window_end and score lists"
        pairs = [(a, b) for a, b in ((_num(t), _num(s)) for t, s in zip(t_end, score, strict=True))
                 if a is not None and b is not None]
        dev = self._device(key)
        if dev is None:
            return "too many devices"
        self.scores_seen += 1
        dev.last_seen = received
        thr = _num(doc.get("threshold"))
        if thr is not None:
            dev.threshold = thr
        dev.model_id = str(doc.get("model_id", dev.model_id))
        pts = dev.points
        for t, s in pairs:
            if pts and t < pts[-1][1]:
                continue  # out of order (a replay restarting): keep the history monotonic
            if pts and t - pts[-1][1] < self.bucket_s:  # same bucket: keep its start time and its peak
                last = pts[-1]
                last[0] = self.version
                last[2] = max(last[2], s)
            else:
                pts.append([self.version, t, s])
            dev.score, dev.last_window_end = s, t
        while pts and dev.last_window_end is not None and pts[0][1] < dev.last_window_end - self.history_s:
            pts.popleft()
        return ""

    def _on_health(self, key: str, doc: dict[str, Any], retained: bool, received: float) -> str:
        chans, faults, excluded = doc.get("channels"), doc.get("faults"), doc.get("excluded", [])
        if (doc.get("state") not in HEALTH_STATES or not isinstance(chans, list) or not isinstance(faults, list)
                or not isinstance(excluded, list)
                or not all(isinstance(c, dict) and isinstance(c.get("name"), str) and isinstance(c.get("state"), str)
                           for c in chans)
                or not all(isinstance(f, dict) and isinstance(f.get("kind"), str) for f in faults)):
            return "a health document without state ok/fault/degraded/stale, channels (name, state) and faults"
        dev = self._device(key)
        if dev is None:
            return "too many devices"
        dev.health = {"state": doc["state"], "channels": [{"name": c["name"], "state": c["state"]} for c in chans],
                      "faults": [{k: f.get(k) for k in ("channel", "kind", "since", "last_good_value")} for f in faults],
                      "excluded": [str(x) for x in excluded], "degraded": doc.get("degraded") is True,
                      "stale": doc.get("stale") is True, "time": _num(doc.get("time")), "received": received,
                      "retained": retained}
        dev.last_seen = received
        dev.instance = str(doc.get("instance", dev.instance))
        return ""

    def _on_sensor(self, key: str, doc: dict[str, Any], retained: bool, received: float) -> str:
        if doc.get("state") not in (RAISED, CLEARED) or not isinstance(doc.get("kind"), str):
            return "a sensor alert without state raised/cleared and a kind"
        dev = self._device(key)
        if dev is None:
            return "too many devices"
        dev.sensor_alerts.append({**_pick(doc, SENSOR_FIELDS), "received": received})
        dev.last_seen = received
        return ""

    def _on_status(self, key: str, doc: dict[str, Any], retained: bool, received: float) -> str:
        if doc.get("state") not in ("online", "offline"):
            return "a status without state online/offline"
        gw = self.gateways.setdefault(key, {"instance": key})
        gw["status"] = {**_pick(doc, STATUS_FIELDS), "received": received, "retained": retained}
        self.gateway_v[key] = self.version
        return ""

    def _on_stats(self, key: str, doc: dict[str, Any], retained: bool, received: float) -> str:
        gw = self.gateways.setdefault(key, {"instance": key})
        if retained and isinstance(doc.get("time"), (int, float)):  # the last one kept by the broker: its own age
            received = min(received, float(doc["time"]))
        gw["stats"] = {**_pick(doc, STATS_FIELDS), "received": received}
        self.gateway_v[key] = self.version
        return ""

    # ---- output ----
    def delta(self, since_v: int, now: float) -> dict[str, Any]:
        """What changed after version ``since_v`` (0: everything), JSON-ready; ``now``: the server's clock."""
        with self._lock:
            return {
                "version": self.version, "now": now, "full": since_v == 0,
                "devices": [d.summary(since_v) for d in self.devices.values() if d.v > since_v],
                "gateways": [g for k, g in self.gateways.items() if self.gateway_v.get(k, 0) > since_v],
                "open_alerts": list(self.open_alerts.values()) if self.open_v > since_v or since_v == 0 else None,
                "log": [e for v, e in self.log if v > since_v],
                "broker": self.broker if self.broker_v > since_v or since_v == 0 else None,
                "skipped": self.skipped, "scores_seen": self.scores_seen, "history_s": self.history_s,
            }

    def wait_change(self, since_v: int, timeout: float) -> bool:
        """Block until the version passes ``since_v`` or ``timeout`` s pass; whether it did."""
        with self._changed:
            return self._changed.wait_for(lambda: self.version > since_v, timeout)
