"""Home Assistant MQTT discovery payloads, field by field, and against what the daemon really publishes."""

from __future__ import annotations

import json
import re

import pytest

from edge_runtime import __version__
from edge_runtime.integrations.homeassistant import (
    Discovery,
    DiscoverySettings,
    config_topic,
    device_configs,
    encode,
    gateway_configs,
    ha_id,
)

jinja2 = pytest.importorskip("jinja2")  # Home Assistant templates are Jinja2

ID = re.compile(r"^[a-zA-Z0-9_-]+$")
S = DiscoverySettings(instance="gw1", model_id="a19673aa145d9665e", sw_version="9.9.9")


def render(template: str, doc: dict) -> str:
    """Render a value/availability template the way Home Assistant does (``value_json`` = parsed payload)."""
    return jinja2.Environment().from_string(template).render(value_json=doc, value=json.dumps(doc)).strip()


def by_component(device: str = "pump-1") -> dict[str, tuple[str, dict]]:
    return {t.split("/")[1]: (t, p) for t, p in device_configs(device, S)}


def test_topics_follow_prefix_component_node_object_config() -> None:
    cfg = by_component()
    assert cfg["binary_sensor"][0] == "homeassistant/binary_sensor/edgewatch_gw1/pump-1_anomaly/config"
    assert cfg["sensor"][0] == "homeassistant/sensor/edgewatch_gw1/pump-1_anomaly_score/config"
    assert config_topic("ha", "sensor", "n", "o") == "ha/sensor/n/o/config"
    custom = DiscoverySettings(instance="gw1", prefix="custom")
    assert all(t.startswith("custom/") for t, _ in device_configs("x", custom))


@pytest.mark.parametrize("device", ["pump-1", "line.3:a@b", "x y/#+", "ünï"])
def test_node_and_object_ids_use_only_allowed_characters(device: str) -> None:
    for topic, payload in [*device_configs(device, S), *gateway_configs(S)]:
        prefix, component, node, obj, last = topic.split("/")
        assert (prefix, last) == ("homeassistant", "config")
        assert component in ("binary_sensor", "sensor")
        assert ID.match(node) and ID.match(obj), topic
        assert ID.match(payload["unique_id"])


def test_anomaly_binary_sensor_fields() -> None:
    _, p = by_component()["binary_sensor"]
    assert p["name"] == "Anomaly"
    assert p["unique_id"] == "edgewatch_gw1_pump-1_anomaly"
    assert p["device_class"] == "problem"
    assert p["state_topic"] == "alerts/pump-1/state"
    assert p["value_template"] == "{{ value_json.state }}"
    assert (p["payload_on"], p["payload_off"]) == ("raised", "cleared")
    assert p["json_attributes_topic"] == "alerts/pump-1"
    assert p["qos"] == 1
    assert p["availability_topic"] == "edgewatch/gw1/status"
    assert p["availability_template"] == "{{ value_json.state }}"
    assert (p["payload_available"], p["payload_not_available"]) == ("online", "offline")
    assert p["origin"] == {"name": "edgewatch", "sw_version": "9.9.9"}


def test_anomaly_score_sensor_fields() -> None:
    _, p = by_component()["sensor"]
    assert p["name"] == "Anomaly score"
    assert p["unique_id"] == "edgewatch_gw1_pump-1_anomaly_score"
    assert p["state_topic"] == "scores/pump-1"
    assert p["state_class"] == "measurement"
    assert "device_class" not in p and "unit_of_measurement" not in p  # a unitless score
    assert p["availability_topic"] == "edgewatch/gw1/status"
    assert (p["payload_available"], p["payload_not_available"]) == ("online", "offline")


def test_device_block_groups_entities_under_the_daemon() -> None:
    cfg = by_component()
    block = cfg["binary_sensor"][1]["device"]
    assert cfg["sensor"][1]["device"] == block  # both entities on one Home Assistant device
    assert block == {
        "identifiers": ["edgewatch_gw1_pump-1"],
        "name": "pump-1",
        "manufacturer": "edgewatch",
        "model": "edgewatch anomaly monitor (model a19673aa145d)",
        "sw_version": "9.9.9",
        "via_device": "edgewatch_gw1",
    }
    (_, gw), = gateway_configs(S)
    assert gw["device"]["identifiers"] == [block["via_device"]]  # via_device names a device that exists
    assert "via_device" not in gw["device"]


def test_gateway_connectivity_sensor_reads_the_status_topic() -> None:
    (topic, p), = gateway_configs(S)
    assert topic == "homeassistant/binary_sensor/edgewatch_gw1/status/config"
    assert p["device_class"] == "connectivity"
    assert p["entity_category"] == "diagnostic"
    assert p["state_topic"] == "edgewatch/gw1/status"
    assert (p["payload_on"], p["payload_off"]) == ("online", "offline")
    assert "availability_topic" not in p  # it *is* the availability


def test_templates_render_the_daemon_payloads() -> None:
    b = by_component()["binary_sensor"][1]
    s = by_component()["sensor"][1]
    assert render(b["value_template"], {"device": "pump-1", "state": "raised", "seq": 3}) == b["payload_on"]
    assert render(b["value_template"], {"device": "pump-1", "state": "cleared", "seq": 4}) == b["payload_off"]
    assert render(s["value_template"], {"score": [0.01, 0.5], "threshold": 0.3}) == "0.5"
    assert render(b["availability_template"], {"state": "online", "version": "x"}) == b["payload_available"]
    assert render(b["availability_template"], {"state": "offline", "reason": "x"}) == b["payload_not_available"]


def test_custom_topic_templates_are_followed() -> None:
    s = DiscoverySettings(instance="i", state_topic="plant/{device}/alarm", alert_topic="plant/{device}/alerts",
                          score_topic="plant/{device}/score", status_topic="plant/daemons/{instance}")
    cfg = {t.split("/")[1]: p for t, p in device_configs("d", s)}
    assert cfg["binary_sensor"]["state_topic"] == "plant/d/alarm"
    assert cfg["binary_sensor"]["json_attributes_topic"] == "plant/d/alerts"
    assert cfg["sensor"]["state_topic"] == "plant/d/score"
    assert cfg["sensor"]["availability_topic"] == "plant/daemons/i"


def test_discovery_announces_each_device_once_and_everything_on_connect() -> None:
    d = Discovery(S)
    assert [t for t, _ in d.on_connect()] == ["homeassistant/binary_sensor/edgewatch_gw1/status/config"]
    first = d.on_device("a")
    assert len(first) == 2 and all(json.loads(p)["device"]["name"] == "a" for _, p in first)
    assert d.on_device("a") == []
    assert len(d.on_connect()) == 3
    gone = d.forget("a")
    assert [p for _, p in gone] == [b"", b""]  # empty retained payload removes an entity
    assert d.on_device("a") == first


def test_encoded_payloads_are_json_objects() -> None:
    for _, p in [*device_configs("x", S), *gateway_configs(S)]:
        assert isinstance(json.loads(encode(p)), dict)


def test_defaults() -> None:
    s = DiscoverySettings(instance="h")
    assert s.prefix == "homeassistant" and s.sw_version == __version__
    assert ha_id("a/b+c") == "a_b_c"


# -- against the real daemon and a real Mosquitto -------------------------------------------------


def test_daemon_publishes_discovery_that_renders_its_own_payloads(mosquitto, demo_model_path) -> None:
    import numpy as np

    from edge_runtime.tools.synthetic import Anomaly, inject, normal_series
    from tests.edge_runtime.mqtt_helpers import Collector, Publisher, running_daemon, wait_until

    col = Collector(mosquitto.port, ["homeassistant/#", "scores/#", "alerts/#", "edgewatch/#"])
    pub = Publisher(mosquitto.port)

    def docs(topic: str) -> list[dict]:
        return [json.loads(p) for t, p, _ in list(col.messages) if t == topic and p]

    try:
        with running_daemon(mosquitto.url, demo_model_path, homeassistant_discovery=True, instance="gw1") as d:
            wait_until(lambda: docs("homeassistant/binary_sensor/edgewatch_gw1/status/config"), 10, "gateway config")
            x = normal_series(400, 4, seed=0)
            x = inject(x, Anomaly("level_shift", 200, 400, (0, 1)))
            ts = 1_700_000_000.0 + np.arange(400) * 0.1
            for lo in range(0, 400, 50):
                pub.send("sensors/pump-1/data", json.dumps({"ts": ts[lo:lo + 50].tolist(),
                                                            "values": x[lo:lo + 50].tolist()}))
            pub.flush()
            bs_topic = "homeassistant/binary_sensor/edgewatch_gw1/pump-1_anomaly/config"
            sn_topic = "homeassistant/sensor/edgewatch_gw1/pump-1_anomaly_score/config"
            wait_until(lambda: docs(bs_topic) and docs(sn_topic), 10, "device configs")
            wait_until(lambda: docs("alerts/pump-1/state"), 20, "a raised state")
            binary, score = docs(bs_topic)[-1], docs(sn_topic)[-1]
            assert binary["state_topic"] == "alerts/pump-1/state"
            assert render(binary["value_template"], docs("alerts/pump-1/state")[-1]) == binary["payload_on"]
            scores = docs("scores/pump-1")
            assert scores, "discovery turns score publishing on"
            assert float(render(score["value_template"], scores[-1])) == pytest.approx(scores[-1]["score"][-1])
            online = docs("edgewatch/gw1/status")[-1]
            assert render(binary["availability_template"], online) == binary["payload_available"]
            assert d.scorer.discovery is not None and d.scorer.discovery.devices == {"pump-1"}
        wait_until(lambda: docs("edgewatch/gw1/status")[-1]["state"] != "online", 10, "offline status")
        offline = docs("edgewatch/gw1/status")[-1]
        assert render(binary["availability_template"], offline) == binary["payload_not_available"]
        # configs are retained: a subscriber arriving later (Home Assistant after a restart) gets them
        late = Collector(mosquitto.port, ["homeassistant/#"])
        try:
            wait_until(lambda: len(late.messages) >= 3, 10, "retained configs")
            assert all(retain for _, _, retain in late.messages)
        finally:
            late.close()
    finally:
        pub.close()
        col.close()
