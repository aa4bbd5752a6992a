"""Home Assistant MQTT discovery payloads for the devices a daemon monitors. Pure.

Follows Home Assistant's single-component discovery conventions
(https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery):

- topic ``<discovery_prefix>/<component>/<node_id>/<object_id>/config``, ids from ``[a-zA-Z0-9_-]``;
- payloads are JSON objects, published **retained** (so Home Assistant finds them after a restart);
  an empty retained payload on the same topic removes the entity.

Per monitored device (one Home Assistant *device*, linked ``via_device`` to the daemon):

- ``binary_sensor`` "Anomaly", ``device_class: problem``, fed by the retained
  ``alerts/{device}/state`` document (``value_json.state``: ``raised`` = on, ``cleared`` = off),
  attributes from the last alert on ``alerts/{device}``;
- ``sensor`` "Anomaly score", ``state_class: measurement``, fed by ``scores/{device}``
  (the latest of ``value_json.score``; the daemon publishes scores when discovery is on).

Both are *unavailable* while the daemon's retained status ``edgewatch/{instance}/status`` says
``offline`` (``value_json.state``). The daemon itself appears as a device with a ``connectivity``
binary sensor on that status topic.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from edge_runtime import __version__
from edge_runtime.pipeline.topics import format_topic

DEFAULT_PREFIX = "homeassistant"
MANUFACTURER = "edgewatch"
PAYLOAD_AVAILABLE = "online"  # the daemon's status document: {"state": "online", ...}
PAYLOAD_NOT_AVAILABLE = "offline"  # ... and {"state": "offline", ...} (clean stop and Last Will)
STATE_ON = "raised"
STATE_OFF = "cleared"
_BAD = re.compile(r"[^a-zA-Z0-9_-]")


def ha_id(raw: str) -> str:
    """An id made of ``[a-zA-Z0-9_-]`` only, as discovery topic levels and unique ids need."""
    out = _BAD.sub("_", raw)
    return out or "_"


@dataclass(frozen=True)
class DiscoverySettings:
    """What the discovery payloads point at: the daemon's topic templates and identity."""

    instance: str
    prefix: str = DEFAULT_PREFIX
    state_topic: str = "alerts/{device}/state"
    alert_topic: str = "alerts/{device}"
    score_topic: str = "scores/{device}"
    status_topic: str = "edgewatch/{instance}/status"
    model_id: str = ""
    sw_version: str = __version__

    @property
    def node_id(self) -> str:
        return ha_id(f"edgewatch_{self.instance}")

    @property
    def status(self) -> str:
        return format_topic(self.status_topic, instance=self.instance)

    @property
    def gateway_identifier(self) -> str:
        return f"edgewatch_{ha_id(self.instance)}"


def config_topic(prefix: str, component: str, node_id: str, object_id: str) -> str:
    """``<prefix>/<component>/<node_id>/<object_id>/config``."""
    return f"{prefix}/{component}/{node_id}/{object_id}/config"


def _origin(s: DiscoverySettings) -> dict[str, str]:
    return {"name": "edgewatch", "sw_version": s.sw_version}


def _availability(s: DiscoverySettings) -> dict[str, str]:
    return {
        "availability_topic": s.status,
        "availability_template": "{{ value_json.state }}",
        "payload_available": PAYLOAD_AVAILABLE,
        "payload_not_available": PAYLOAD_NOT_AVAILABLE,
    }


def device_block(device: str, s: DiscoverySettings) -> dict[str, Any]:
    """The ``device`` mapping of a monitored device (grouped under the daemon by ``via_device``)."""
    model = "edgewatch anomaly monitor" + (f" (model {s.model_id[:12]})" if s.model_id else "")
    return {
        "identifiers": [f"{s.gateway_identifier}_{ha_id(device)}"],
        "name": device,
        "manufacturer": MANUFACTURER,
        "model": model,
        "sw_version": s.sw_version,
        "via_device": s.gateway_identifier,
    }


def device_configs(device: str, s: DiscoverySettings) -> list[tuple[str, dict[str, Any]]]:
    """``(topic, payload)`` of the two entities of one monitored device (publish retained)."""
    dev = ha_id(device)
    base = f"{s.gateway_identifier}_{dev}"
    block = device_block(device, s)
    binary = {
        "name": "Anomaly",
        "unique_id": f"{base}_anomaly",
        "device_class": "problem",
        "state_topic": format_topic(s.state_topic, device=device),
        "value_template": "{{ value_json.state }}",
        "payload_on": STATE_ON,
        "payload_off": STATE_OFF,
        "json_attributes_topic": format_topic(s.alert_topic, device=device),
        "qos": 1,
        **_availability(s),
        "device": block,
        "origin": _origin(s),
    }
    score = {
        "name": "Anomaly score",
        "unique_id": f"{base}_anomaly_score",
        "state_topic": format_topic(s.score_topic, device=device),
        "value_template": "{{ value_json.score | last }}",  # the daemon sends a list: the latest window's
        "state_class": "measurement",
        "suggested_display_precision": 4,
        "icon": "mdi:chart-bell-curve",
        **_availability(s),
        "device": block,
        "origin": _origin(s),
    }
    return [
        (config_topic(s.prefix, "binary_sensor", s.node_id, f"{dev}_anomaly"), binary),
        (config_topic(s.prefix, "sensor", s.node_id, f"{dev}_anomaly_score"), score),
    ]


def gateway_configs(s: DiscoverySettings) -> list[tuple[str, dict[str, Any]]]:
    """``(topic, payload)`` of the daemon's own device: a connectivity sensor on its status topic."""
    block = {
        "identifiers": [s.gateway_identifier],
        "name": f"edgewatch {s.instance}",
        "manufacturer": MANUFACTURER,
        "model": "edgewatch edge daemon",
        "sw_version": s.sw_version,
    }
    status = {
        "name": "Status",
        "unique_id": f"{s.gateway_identifier}_status",
        "device_class": "connectivity",
        "entity_category": "diagnostic",
        "state_topic": s.status,
        "value_template": "{{ value_json.state }}",
        "payload_on": PAYLOAD_AVAILABLE,
        "payload_off": PAYLOAD_NOT_AVAILABLE,
        "device": block,
        "origin": _origin(s),
    }
    return [(config_topic(s.prefix, "binary_sensor", s.node_id, "status"), status)]


def removal_topics(device: str, s: DiscoverySettings) -> list[str]:
    """Config topics to clear (empty retained payload) when a device is forgotten."""
    return [t for t, _ in device_configs(device, s)]


def encode(payload: dict[str, Any]) -> bytes:
    """Compact JSON bytes of a discovery payload."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


class Discovery:
    """Which discovery messages are due: the gateway's once per connection, each device's once.

    :meth:`on_connect` returns everything again (retained messages may have been cleared);
    :meth:`on_device` returns a new device's messages the first time it is seen.
    """

    def __init__(self, settings: DiscoverySettings) -> None:
        self.settings = settings
        self.devices: set[str] = set()

    def on_connect(self) -> list[tuple[str, bytes]]:
        msgs = gateway_configs(self.settings)
        for d in sorted(self.devices):
            msgs += device_configs(d, self.settings)
        return [(t, encode(p)) for t, p in msgs]

    def on_device(self, device: str) -> list[tuple[str, bytes]]:
        if device in self.devices:
            return []
        self.devices.add(device)
        return [(t, encode(p)) for t, p in device_configs(device, self.settings)]

    def forget(self, device: str) -> list[tuple[str, bytes]]:
        """Empty retained payloads that remove a forgotten device's entities."""
        if device not in self.devices:
            return []
        self.devices.discard(device)
        return [(t, b"") for t in removal_topics(device, self.settings)]
