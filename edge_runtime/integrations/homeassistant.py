"""Home Assistant MQTT device discovery for the devices a daemon monitors. Pure (the clock is given).

Follows Home Assistant's device-based discovery (https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery):
one retained JSON config per device on ``<prefix>/device/<object_id>/config`` with ``device`` (``dev``),
``origin`` (``o``, required there) and its entities under ``components`` (``cmps``, each with its platform
``p``); an empty retained payload on that topic removes the device and its entities.

Per monitored device (one Home Assistant *device*, linked ``via_device`` to the daemon's own):

- ``binary_sensor`` "Anomaly", ``device_class: problem``, fed by the retained ``alerts/{device}/state``
  document (``value_json.state``: ``raised`` = on, ``cleared`` = off); its attributes are that same retained
  document (``since``, ``raised_alert_id``, ``seq``, ``reason``), so they survive a Home Assistant restart;
- ``sensor`` "Anomaly score", ``state_class: measurement``, fed by ``scores/{device}`` (the latest of
  ``value_json.score``), with ``expire_after`` = the staleness limit: no score for that long -> unavailable;
- with ``runtime.commands`` on, a ``select`` "Alert feedback" (false_alarm / confirmed / ack: a verdict on the
  device's latest alert, sent to the daemon's command topic; give Home Assistant's MQTT account write access
  to it in the broker's ACL) and a ``sensor`` "Threshold" (the device's own threshold, from its state).
- with sensor health on (``health_topic`` set), ``binary_sensor`` "Sensor health", ``device_class: problem``,
  fed by the retained ``health/{device}`` document: on while any channel has a raised sensor fault, the device
  is degraded or stale; its attributes name the faulty channels (``channels``), each fault (``faults``: channel,
  kind, since, last good value), the channels left out of the score (``excluded``) and the overall ``state``.
- ``sensor`` "Operating state" (``device_class: enum``: running, stopped, settling, out_of_distribution), fed by
  the retained ``alerts/{device}/operating`` document, its ``reason``, ``since`` and ``scored`` as attributes:
  a device that is not scored (stopped, or far from training) is told apart from one that is normal.

A device is announced when its first window is scored, or, with sensor health on, when its ``rejected`` sensor
alert is raised (its last messages all dropped: bad JSON, the wrong channels): Home Assistant then shows it with
*Sensor health* on, its attributes naming the fault (kind ``rejected``) and the decoder's reason, and the
entities fed by scoring *Unknown* until a message decodes. Such devices are bounded as the daemon bounds its
rejected devices (``input.max_devices``); one let go there is marked ``offline`` like a forgotten device.

Availability (``availability_mode: all``): the daemon's retained status ``edgewatch/{instance}/status``
(``value_json.state`` online/offline) *and* the device's own retained availability
``<status topic>/<device>`` (``online``/``offline``). The daemon marks a device ``offline`` when it has sent
nothing for the staleness limit (:meth:`Discovery.sweep`) or is forgotten (idle past ``device_idle_s``,
evicted, reset by a reload): Home Assistant shows it *unavailable*, never a stale "no problem", and keeps the
user's names, areas and automations. A device is deleted only on an explicit request
(``edgewatch homeassistant remove``); ``edgewatch homeassistant cleanup`` removes orphaned retained configs.
Discovery is sent again when Home Assistant announces itself online on ``<prefix>/status``.

Ids (topic levels, ``unique_id``) use ``[a-zA-Z0-9_-]`` and are injective (:func:`ha_id`): ``pump.1`` and
``pump_1`` are two devices, and removing one leaves the other.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge_runtime import __version__
from edge_runtime.pipeline.states import STATES as OPERATING_STATES
from edge_runtime.pipeline.topics import format_topic

DEFAULT_PREFIX = "homeassistant"
MANUFACTURER = "edgewatch"
ORIGIN_URL = "https://github.com/edgewatch/edgewatch"
PAYLOAD_AVAILABLE = "online"  # the daemon's status document: {"state": "online", ...}; a device's availability
PAYLOAD_NOT_AVAILABLE = "offline"  # ... and {"state": "offline", ...} (clean stop and Last Will)
STATE_ON = "raised"
STATE_OFF = "cleared"
HA_ONLINE = b"online"  # Home Assistant's birth message on <prefix>/status
RESEND_DEBOUNCE_S = 5.0  # a birth message this soon after a full send (e.g. retained, at connect) is not answered
_PLAIN = re.compile(r"[a-zA-Z0-9-][a-zA-Z0-9_-]*")
_LITERAL = re.compile(r"[a-zA-Z0-9-]")


def ha_id(raw: str) -> str:
    """An injective id made of ``[a-zA-Z0-9_-]``, as discovery topic levels and unique ids need.

    An id already made of those characters (and not starting with ``_``) is kept as it is; any other gets a
    leading ``_`` and every character outside ``[a-zA-Z0-9-]`` (``_`` included) as ``_`` + two hex digits per
    UTF-8 byte: ``pump.1`` -> ``_pump_2e1``, ``pump_1`` -> ``pump_1``, ``_x`` -> ``__5fx``. The two forms
    cannot meet (only the second starts with ``_``) and the escape is prefix-free, so distinct ids stay distinct.
    """
    if _PLAIN.fullmatch(raw):
        return raw
    out = ["_"]
    for ch in raw:
        if _LITERAL.fullmatch(ch):
            out.append(ch)
        else:
            out.extend(f"_{b:02x}" for b in ch.encode("utf-8", "surrogatepass"))
    return "".join(out)


@dataclass(frozen=True)
class DiscoverySettings:
    """What the discovery payloads point at: the daemon's topic templates and identity.

    ``stale_s``: a device silent this long is unavailable (its score sensor's ``expire_after`` too)."""

    instance: str
    prefix: str = DEFAULT_PREFIX
    state_topic: str = "alerts/{device}/state"
    alert_topic: str = "alerts/{device}"
    score_topic: str = "scores/{device}"
    status_topic: str = "edgewatch/{instance}/status"
    model_id: str = ""
    health_topic: str = ""  # the retained health document (sensor health on); empty: no Sensor health entity
    sw_version: str = __version__
    stale_s: float = 600.0
    command_topic: str = ""  # runtime.commands on: a feedback select and a threshold sensor per device
    operating_topic: str = "alerts/{device}/operating"  # the retained operating state (empty: no entity)

    @property
    def status(self) -> str:
        return format_topic(self.status_topic, instance=self.instance)

    @property
    def gateway_identifier(self) -> str:
        return f"edgewatch_{ha_id(self.instance)}"

    @property
    def birth_topic(self) -> str:
        """Home Assistant's own status topic (``online`` when it starts)."""
        return f"{self.prefix}/status"


def device_topic(prefix: str, object_id: str) -> str:
    """``<prefix>/device/<object_id>/config``."""
    return f"{prefix}/device/{object_id}/config"


def device_object_id(device: str, s: DiscoverySettings) -> str:
    return f"{s.gateway_identifier}_{ha_id(device)}"


def availability_topic(device: str, s: DiscoverySettings) -> str:
    """The device's retained ``online``/``offline`` availability, published by the daemon."""
    return f"{s.status}/{device}"


def _origin(s: DiscoverySettings) -> dict[str, str]:
    return {"name": "edgewatch", "sw_version": s.sw_version, "support_url": ORIGIN_URL}


def _daemon_availability(s: DiscoverySettings) -> dict[str, str]:
    return {"topic": s.status, "value_template": "{{ value_json.state }}",
            "payload_available": PAYLOAD_AVAILABLE, "payload_not_available": PAYLOAD_NOT_AVAILABLE}


def device_block(device: str, s: DiscoverySettings) -> dict[str, Any]:
    """The ``device`` mapping of a monitored device (grouped under the daemon by ``via_device``)."""
    model = "edgewatch anomaly monitor" + (f" (model {s.model_id[:12]})" if s.model_id else "")
    return {
        "identifiers": [device_object_id(device, s)],
        "name": device,
        "manufacturer": MANUFACTURER,
        "model": model,
        "sw_version": s.sw_version,
        "via_device": s.gateway_identifier,
    }


# Home Assistant keeps at most 255 characters of a state; the attributes carry what a person acts on
LAST_ALERT_TEMPLATE = "{{ (value_json.summary | default(value_json.state))[:255] }}"
LAST_ALERT_ATTRIBUTES = ("{{ {'alert_id': value_json.raised_alert_id | default(value_json.alert_id), "
                         "'event': value_json.event | default(value_json.state), "
                         "'severity': value_json.severity | default(none), 'score': value_json.score, "
                         "'threshold': value_json.threshold, "
                         "'anomalous_since': value_json.anomalous_since_iso | default(none), "
                         "'top_channels': value_json.top_channels, "
                         "'out_of_range': value_json.out_of_range | default([])} | tojson }}")


def device_config(device: str, s: DiscoverySettings) -> tuple[str, dict[str, Any]]:
    """``(topic, payload)`` of one monitored device: both entities in one device-based config (retained)."""
    base = device_object_id(device, s)
    state = format_topic(s.state_topic, device=device)
    components = {
        "anomaly": {
            "platform": "binary_sensor",
            "name": "Anomaly",
            "unique_id": f"{base}_anomaly",
            "device_class": "problem",
            "state_topic": state,
            "value_template": "{{ value_json.state }}",
            "payload_on": STATE_ON,
            "payload_off": STATE_OFF,
            "json_attributes_topic": state,  # retained: the attributes are back after a Home Assistant restart
        },
        "anomaly_score": {
            "platform": "sensor",
            "name": "Anomaly score",
            "unique_id": f"{base}_anomaly_score",
            "state_topic": format_topic(s.score_topic, device=device),
            "value_template": "{{ value_json.score | last }}",  # the daemon sends a list: the latest window's
            "state_class": "measurement",
            "suggested_display_precision": 4,
            "icon": "mdi:chart-bell-curve",
            "expire_after": max(1, round(s.stale_s)),
        },
        "last_alert": {  # alert schema 2: the summary line (schema 1 alerts: their state); not retained
            "platform": "sensor",
            "name": "Last alert",
            "unique_id": f"{base}_last_alert",
            "state_topic": format_topic(s.alert_topic, device=device),
            "value_template": LAST_ALERT_TEMPLATE,
            "json_attributes_topic": format_topic(s.alert_topic, device=device),
            "json_attributes_template": LAST_ALERT_ATTRIBUTES,
            "icon": "mdi:alert-circle-outline",
        },
    }
    if s.operating_topic:  # running, stopped, settling or out_of_distribution: is the device scored at all?
        operating = format_topic(s.operating_topic, device=device)
        components["operating_state"] = {
            "platform": "sensor",
            "name": "Operating state",
            "unique_id": f"{base}_operating_state",
            "device_class": "enum",
            "options": list(OPERATING_STATES),
            "state_topic": operating,
            "value_template": "{{ value_json.state }}",
            "json_attributes_topic": operating,  # retained: reason, since, scored
            "json_attributes_template": "{{ {'reason': value_json.reason, 'since': value_json.since, "
                                        "'scored': value_json.scored} | tojson }}",
            "icon": "mdi:state-machine",
        }
    if s.command_topic:
        components.update(feedback_components(device, base, state, s))
    if s.health_topic:
        components["sensor_health"] = sensor_health_component(device, s)
    payload = {
        "device": device_block(device, s),
        "origin": _origin(s),
        "components": components,
        "qos": 1,
        "availability": [
            _daemon_availability(s),
            {"topic": availability_topic(device, s), "payload_available": PAYLOAD_AVAILABLE,
             "payload_not_available": PAYLOAD_NOT_AVAILABLE},
        ],
        "availability_mode": "all",
    }
    return device_topic(s.prefix, base), payload


FEEDBACK_OPTIONS = ["false_alarm", "confirmed", "ack"]


THRESHOLD_ATTRIBUTES = ("{{ {'threshold_feedback': value_json.threshold_feedback | default(none), "
                        "'false_alarm_channels': (value_json.feedback | default({})).raises | default([]) "
                        "| selectattr('channels', 'defined') | map(attribute='channels') | list} | tojson }}")


def feedback_components(device: str, base: str, state_topic: str, s: DiscoverySettings) -> dict[str, Any]:
    """With commands on: a ``select`` "Alert feedback" that sends a verdict on the device's latest alert to
    the daemon's command topic (the reply goes to its reply topic), and a ``sensor`` "Threshold" with the
    device's own threshold from its retained state (warm-up calibration; a feedback raise for every window),
    its attributes the threshold of windows like a false alarm and those false alarms' channels."""
    command = ('{"command": "feedback", "device": ' + json.dumps(device)
               + ', "verdict": "{{ value }}", "source": "homeassistant"}')
    return {
        "alert_feedback": {
            "platform": "select",
            "name": "Alert feedback",
            "unique_id": f"{base}_alert_feedback",
            "command_topic": format_topic(s.command_topic, instance=s.instance),
            "command_template": command,
            "options": FEEDBACK_OPTIONS,
            "optimistic": True,
            "icon": "mdi:message-alert",
            "entity_category": "config",
        },
        "threshold": {
            "platform": "sensor",
            "name": "Threshold",
            "unique_id": f"{base}_threshold",
            "state_topic": state_topic,
            "value_template": "{{ value_json.threshold }}",
            "json_attributes_topic": state_topic,
            "json_attributes_template": THRESHOLD_ATTRIBUTES,
            "state_class": "measurement",
            "suggested_display_precision": 4,
            "icon": "mdi:tune-variant",
            "entity_category": "diagnostic",
        },
    }


HEALTH_ATTRIBUTES = ("{{ {'channels': value_json.faults | map(attribute='channel') | select | list, "
                     "'faults': value_json.faults, 'excluded': value_json.excluded, 'state': value_json.state} "
                     "| tojson }}")


def sensor_health_component(device: str, s: DiscoverySettings) -> dict[str, Any]:
    """The "Sensor health" problem binary sensor: on while ``health/{device}`` has a fault raised, is degraded or
    stale; off otherwise (``ok``, and ``out_of_distribution``: an operating point, not failing sensors)."""
    topic = format_topic(s.health_topic, device=device)
    return {
        "platform": "binary_sensor",
        "name": "Sensor health",
        "unique_id": f"{device_object_id(device, s)}_sensor_health",
        "device_class": "problem",
        "state_topic": topic,
        "value_template": "{{ 'ON' if value_json.faults or value_json.degraded or value_json.stale else 'OFF' }}",
        "payload_on": "ON",
        "payload_off": "OFF",
        "json_attributes_topic": topic,  # retained, like the anomaly state
        "json_attributes_template": HEALTH_ATTRIBUTES,
        "icon": "mdi:thermometer-alert",
    }


def gateway_config(s: DiscoverySettings) -> tuple[str, dict[str, Any]]:
    """``(topic, payload)`` of the daemon's own device: a connectivity sensor on its status topic."""
    block = {
        "identifiers": [s.gateway_identifier],
        "name": f"edgewatch {s.instance}",
        "manufacturer": MANUFACTURER,
        "model": "edgewatch edge daemon",
        "sw_version": s.sw_version,
    }
    status = {
        "platform": "binary_sensor",
        "name": "Status",
        "unique_id": f"{s.gateway_identifier}_status",
        "device_class": "connectivity",
        "entity_category": "diagnostic",
        "state_topic": s.status,
        "value_template": "{{ value_json.state }}",
        "payload_on": PAYLOAD_AVAILABLE,
        "payload_off": PAYLOAD_NOT_AVAILABLE,
    }
    payload = {"device": block, "origin": _origin(s), "components": {"status": status}, "qos": 1}
    return device_topic(s.prefix, s.gateway_identifier), payload


def encode(payload: dict[str, Any]) -> bytes:
    """Compact JSON bytes of a discovery payload."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


@dataclass
class Discovery:
    """Which discovery messages are due, as ``(topic, payload)`` to publish retained.

    :meth:`on_device` (every scored item): a new or stale device's config and ``online``; :meth:`on_rejected`
    (every message of a device whose ``rejected`` sensor alert is raised: it sends, nothing it sends decodes) the
    same, so a device never scored has its entities too, its *Sensor health* on and saying why;
    :meth:`sweep`: ``offline`` for devices silent past ``stale_s``; :meth:`forget`: ``offline`` (the config
    stays: Home Assistant keeps the entities); :meth:`remove`: the explicit deletion; :meth:`on_connect` and
    :meth:`on_birth` (Home Assistant came online): everything again.
    """

    settings: DiscoverySettings
    clock: Callable[[], float] = time.monotonic
    devices: set[str] = field(default_factory=set)
    last_seen: dict[str, float] = field(default_factory=dict)  # device -> when its last window was scored (or rejected)
    stale: set[str] = field(default_factory=set)
    unscored: set[str] = field(default_factory=set)  # announced by on_rejected, no window scored yet
    earlier: set[str] = field(default_factory=set)  # said online by an earlier run, not heard from in this one
    _last_full: float = float("-inf")
    _next_sweep: float = float("-inf")

    def _device_msgs(self, device: str) -> list[tuple[str, bytes]]:
        topic, payload = device_config(device, self.settings)
        return [(topic, encode(payload)), (availability_topic(device, self.settings), PAYLOAD_AVAILABLE.encode())]

    def on_connect(self, now: float | None = None) -> list[tuple[str, bytes]]:
        self._last_full = self.clock() if now is None else now
        topic, payload = gateway_config(self.settings)
        msgs = [(topic, encode(payload))]
        for d in sorted(self.devices):
            msgs += self._device_msgs(d)[:1]
            online = d not in self.stale
            msgs.append((availability_topic(d, self.settings), (PAYLOAD_AVAILABLE if online else PAYLOAD_NOT_AVAILABLE).encode()))
        return msgs

    def on_birth(self, payload: bytes, now: float | None = None) -> list[tuple[str, bytes]]:
        """Home Assistant's ``<prefix>/status``: on ``online`` (not just after a full send) everything again."""
        now = self.clock() if now is None else now
        if bytes(payload).strip() != HA_ONLINE or now - self._last_full < RESEND_DEBOUNCE_S:
            return []
        return self.on_connect(now)

    def on_device(self, device: str, now: float | None = None) -> list[tuple[str, bytes]]:
        """A window of ``device`` was scored: its config and ``online`` when it is new, stale or was announced
        unscored (the config again: the daemon's first scored window follows it with the operating state)."""
        return self._seen(device, now, scored=True)

    def on_rejected(self, device: str, now: float | None = None) -> list[tuple[str, bytes]]:
        """A message of ``device`` whose ``rejected`` sensor alert is raised (the daemon's cap on those bounds how
        many): announced like a scored one when new or stale (its retained health document holds the fault), and
        kept available while it sends."""
        return self._seen(device, now, scored=False)

    def on_earlier(self, device: str, payload: bytes, now: float | None = None) -> list[tuple[str, bytes]]:
        """A retained availability of this instance read back at connect: a device an earlier run left ``online``
        (a crash, a kill) and that this run has not heard from is said ``offline`` by :meth:`sweep` after
        ``stale_s``, unless it sends (then it is announced as any new device). Nothing to send now."""
        if bytes(payload).strip() != PAYLOAD_AVAILABLE.encode() or device in self.last_seen or not device:
            return []
        self.last_seen[device] = self.clock() if now is None else now
        self.earlier.add(device)
        return []

    def _seen(self, device: str, now: float | None, scored: bool) -> list[tuple[str, bytes]]:
        self.earlier.discard(device)
        self.last_seen[device] = self.clock() if now is None else now
        if device in self.devices and device not in self.stale and not (scored and device in self.unscored):
            return []
        if scored:
            self.unscored.discard(device)
        elif device not in self.devices:
            self.unscored.add(device)
        self.stale.discard(device)
        self.devices.add(device)
        return self._device_msgs(device)

    def sweep(self, now: float | None = None) -> list[tuple[str, bytes]]:
        """``offline`` for the devices silent past ``stale_s`` (scans at most every ``stale_s`` / 10)."""
        now = self.clock() if now is None else now
        if now < self._next_sweep:
            return []
        limit = self.settings.stale_s
        self._next_sweep = now + max(0.5, limit / 10)
        out = []
        for d, t in list(self.last_seen.items()):
            if d not in self.stale and now - t >= limit:
                out.append((availability_topic(d, self.settings), PAYLOAD_NOT_AVAILABLE.encode()))
                if d in self.earlier:  # an earlier run's device: nothing more of it to follow
                    self.earlier.discard(d)
                    del self.last_seen[d]
                else:
                    self.stale.add(d)
        return out

    def forget(self, device: str) -> list[tuple[str, bytes]]:
        """A device the daemon forgot (idle, evicted, reload): unavailable, its entities kept."""
        if device not in self.devices:
            return []
        self.devices.discard(device)
        self.last_seen.pop(device, None)
        self.stale.discard(device)
        self.unscored.discard(device)
        return [(availability_topic(device, self.settings), PAYLOAD_NOT_AVAILABLE.encode())]

    def remove(self, device: str) -> list[tuple[str, bytes]]:
        """The explicit deletion: empty retained config and availability (Home Assistant drops the device)."""
        self.earlier.discard(device)
        self.devices.discard(device)
        self.last_seen.pop(device, None)
        self.stale.discard(device)
        self.unscored.discard(device)
        return [(device_topic(self.settings.prefix, device_object_id(device, self.settings)), b""),
                (availability_topic(device, self.settings), b"")]


def stale_limit_s(sample_period_s: float | None, hop: int, device_idle_s: float) -> float:
    """The staleness limit: 10 hops of the model's sample period (at least 60 s; 600 s without a sample
    period), never past ``device_idle_s`` (when that is on)."""
    limit = max(60.0, 10.0 * hop * sample_period_s) if sample_period_s else 600.0
    return min(limit, device_idle_s) if device_idle_s > 0 else limit


def _legacy_node_id(instance: str) -> str:
    """The node id of edgewatch's earlier single-component configs (``<prefix>/<component>/<node>/<obj>/config``)."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", f"edgewatch_{instance}") or "_"


def _json_object(payload: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def orphaned_configs(retained: dict[str, bytes], s: DiscoverySettings, everything: bool = False) -> list[str]:
    """Retained discovery topics of this instance to clear, from a ``topic -> payload`` view of the broker:

    - configs in the earlier single-component layout (replaced by the device-based one);
    - device configs (``via_device`` this daemon) whose device availability is not ``online``
      (idle, evicted, or never heard of since), or all of them with ``everything``.
    The daemon's own device config is kept. Sorted."""
    legacy = _legacy_node_id(s.instance)
    out: list[str] = []
    for topic, payload in retained.items():
        parts = topic.split("/")
        if not payload or parts[0] != s.prefix or parts[-1] != "config":
            continue
        doc = _json_object(payload)
        if doc is None:
            continue
        origin = doc.get("origin") or doc.get("o") or {}
        if not isinstance(origin, dict) or origin.get("name") != "edgewatch":
            continue
        if len(parts) == 5 and parts[1] != "device" and parts[2] == legacy:
            out.append(topic)
            continue
        if len(parts) != 4 or parts[1] != "device":
            continue
        block = doc.get("device") or {}
        if not isinstance(block, dict) or block.get("via_device") != s.gateway_identifier:
            continue  # another instance's device, or this daemon's own
        avail = [str(a.get("topic")) for a in doc.get("availability") or [] if isinstance(a, dict)]
        online = any(retained.get(t) == PAYLOAD_AVAILABLE.encode() for t in avail[1:])
        if everything or not online:
            out.append(topic)
    return sorted(out)


def availability_of(config_payload: bytes) -> list[str]:
    """The per-device availability topics a device config names (cleared with it)."""
    doc = _json_object(config_payload) or {}
    return [a["topic"] for a in (doc.get("availability") or [])[1:] if isinstance(a, dict) and "topic" in a]
