"""Home Assistant MQTT device discovery payloads, field by field, and against what the daemon really publishes."""

from __future__ import annotations

import json
import re

import pytest

from edge_runtime import __version__
from edge_runtime.integrations.homeassistant import (
    Discovery,
    DiscoverySettings,
    availability_topic,
    device_config,
    device_topic,
    encode,
    gateway_config,
    ha_id,
    stale_limit_s,
)

jinja2 = pytest.importorskip("jinja2")  # Home Assistant templates are Jinja2

ID = re.compile(r"^[a-zA-Z0-9_-]+$")
S = DiscoverySettings(instance="gw1", model_id="a19673aa145d9665e", sw_version="9.9.9", stale_s=120.0)


def render(template: str, doc: dict) -> str:
    """Render a value/availability template the way Home Assistant does (``value_json`` = parsed payload)."""
    return jinja2.Environment().from_string(template).render(value_json=doc, value=json.dumps(doc)).strip()


def components(device: str = "pump-1") -> dict[str, dict]:
    return device_config(device, S)[1]["components"]


def test_one_device_based_config_per_device() -> None:
    topic, p = device_config("pump-1", S)
    assert topic == "homeassistant/device/edgewatch_gw1_pump-1/config"
    assert device_topic("ha", "x") == "ha/device/x/config"
    assert set(p) == {"device", "origin", "components", "qos", "availability", "availability_mode"}
    assert p["origin"] == {"name": "edgewatch", "sw_version": "9.9.9", "support_url": p["origin"]["support_url"]}
    assert {k: c["platform"] for k, c in p["components"].items()} == {"anomaly": "binary_sensor",
                                                                        "anomaly_score": "sensor",
                                                                        "last_alert": "sensor",
                                                                        "operating_state": "sensor"}
    custom = DiscoverySettings(instance="gw1", prefix="custom")
    assert device_config("x", custom)[0].startswith("custom/device/")


@pytest.mark.parametrize("device", ["pump-1", "line.3:a@b", "x y/#+", "ünï", "_x", ""])
def test_object_and_unique_ids_use_only_allowed_characters(device: str) -> None:
    for topic, payload in [device_config(device, S), gateway_config(S)]:
        prefix, kind, obj, last = topic.split("/")
        assert (prefix, kind, last) == ("homeassistant", "device", "config")
        assert ID.match(obj), topic
        for c in payload["components"].values():
            assert ID.match(c["unique_id"])


def test_ids_are_injective_and_plain_ids_unchanged() -> None:
    assert ha_id("pump_1") == "pump_1" and ha_id("pump-1") == "pump-1"
    assert ha_id("pump.1") == "_pump_2e1" and ha_id("_x") == "__5fx"
    ids = ["pump.1", "pump_1", "pump:1", "pump@1", "pump 1", "_pump_2e1", "pump_2e1", "", "_"]
    assert len({ha_id(i) for i in ids}) == len(ids)


def test_anomaly_binary_sensor_fields() -> None:
    p = components()["anomaly"]
    assert p["name"] == "Anomaly"
    assert p["unique_id"] == "edgewatch_gw1_pump-1_anomaly"
    assert p["device_class"] == "problem"
    assert p["state_topic"] == "alerts/pump-1/state"
    assert p["value_template"] == "{{ value_json.state }}"
    assert (p["payload_on"], p["payload_off"]) == ("raised", "cleared")
    assert p["json_attributes_topic"] == "alerts/pump-1/state"  # retained: attributes survive a restart


def test_anomaly_score_sensor_fields() -> None:
    p = components()["anomaly_score"]
    assert p["name"] == "Anomaly score"
    assert p["unique_id"] == "edgewatch_gw1_pump-1_anomaly_score"
    assert p["state_topic"] == "scores/pump-1"
    assert p["state_class"] == "measurement"
    assert p["expire_after"] == 120  # no score for the staleness limit: unavailable
    assert "device_class" not in p and "unit_of_measurement" not in p  # a unitless score


def test_operating_state_sensor_tells_a_device_not_scored_from_a_normal_one() -> None:
    from edge_runtime.pipeline.documents import operating_doc

    c = components()["operating_state"]
    assert c["platform"] == "sensor" and c["device_class"] == "enum" and "out_of_distribution" in c["options"]
    assert c["state_topic"] == c["json_attributes_topic"] == "alerts/pump-1/operating"
    doc = operating_doc("pump-1", "out_of_distribution", 5.0, "5 of 8 channels outside the range", "gw1", "m", 6.0)
    assert render(c["value_template"], doc) == "out_of_distribution" and render(c["value_template"], doc) in c["options"]
    attrs = json.loads(render(c["json_attributes_template"], doc))
    assert attrs == {"reason": "5 of 8 channels outside the range", "since": 5.0, "scored": False}
    from dataclasses import replace
    assert "operating_state" not in device_config("pump-1", replace(S, operating_topic=""))[1]["components"]


def test_sensor_health_binary_sensor_names_the_faulty_channels() -> None:
    from dataclasses import replace

    from edge_runtime.pipeline.documents import health_doc

    assert "sensor_health" not in components()  # only with sensor health on
    p = device_config("pump-1", replace(S, health_topic="health/{device}"))[1]["components"]["sensor_health"]
    assert p["platform"] == "binary_sensor" and p["device_class"] == "problem" and p["name"] == "Sensor health"
    assert p["unique_id"] == "edgewatch_gw1_pump-1_sensor_health"
    assert p["state_topic"] == p["json_attributes_topic"] == "health/pump-1"
    ok = health_doc("pump-1", ["a", "b"], ["ok", "ok"], [], [], False, False, 1.0, "m", "gw1")
    bad = health_doc("pump-1", ["a", "b"], ["ok", "stuck"],
                     [{"channel": "b", "kind": "stuck", "since": 5.0, "last_good_value": 2.5}], ["b"], False, False,
                     1.0, "m", "gw1")
    stale = health_doc("pump-1", ["a", "b"], ["ok", "ok"], [{"channel": None, "kind": "stale", "since": 5.0,
                                                           "last_good_value": None}], [], False, True, 1.0, "m", "gw1")
    ood = health_doc("pump-1", ["a", "b"], ["out_of_range", "out_of_range"], [], [], False, False, 1.0, "m", "gw1",
                     out_of_distribution=True)  # an operating point far from training: no sensor is failing
    assert ood["state"] == "out_of_distribution"
    assert render(p["value_template"], ok) == render(p["value_template"], ood) == p["payload_off"]
    assert render(p["value_template"], bad) == render(p["value_template"], stale) == p["payload_on"]
    attrs = json.loads(render(p["json_attributes_template"], bad))
    assert attrs["channels"] == ["b"] and attrs["faults"][0]["kind"] == "stuck" and attrs["excluded"] == ["b"]
    assert json.loads(render(p["json_attributes_template"], stale))["channels"] == []


def test_availability_needs_the_daemon_and_the_device() -> None:
    p = device_config("pump-1", S)[1]
    assert p["availability_mode"] == "all"
    daemon, device = p["availability"]
    assert daemon["topic"] == "edgewatch/gw1/status" and daemon["value_template"] == "{{ value_json.state }}"
    assert device["topic"] == availability_topic("pump-1", S) == "edgewatch/gw1/status/pump-1"
    for a in (daemon, device):
        assert (a["payload_available"], a["payload_not_available"]) == ("online", "offline")


def test_device_block_groups_entities_under_the_daemon() -> None:
    block = device_config("pump-1", S)[1]["device"]
    assert block == {
        "identifiers": ["edgewatch_gw1_pump-1"],
        "name": "pump-1",
        "manufacturer": "edgewatch",
        "model": "edgewatch anomaly monitor (model a19673aa145d)",
        "sw_version": "9.9.9",
        "via_device": "edgewatch_gw1",
    }
    _, gw = gateway_config(S)
    assert gw["device"]["identifiers"] == [block["via_device"]]  # via_device names a device that exists
    assert "via_device" not in gw["device"]


def test_gateway_connectivity_sensor_reads_the_status_topic() -> None:
    topic, p = gateway_config(S)
    assert topic == "homeassistant/device/edgewatch_gw1/config"
    (c,) = p["components"].values()
    assert c["platform"] == "binary_sensor" and c["device_class"] == "connectivity"
    assert c["entity_category"] == "diagnostic"
    assert c["state_topic"] == "edgewatch/gw1/status"
    assert (c["payload_on"], c["payload_off"]) == ("online", "offline")
    assert "availability" not in p  # it *is* the availability


def test_templates_render_the_daemon_payloads() -> None:
    b, s = components()["anomaly"], components()["anomaly_score"]
    avail = device_config("pump-1", S)[1]["availability"][0]
    assert render(b["value_template"], {"device": "pump-1", "state": "raised", "seq": 3}) == b["payload_on"]
    assert render(b["value_template"], {"device": "pump-1", "state": "cleared", "seq": 4}) == b["payload_off"]
    assert render(s["value_template"], {"score": [0.01, 0.5], "threshold": 0.3}) == "0.5"
    last = components()["last_alert"]
    v1 = {"alert_id": "a1", "raised_alert_id": "a1", "state": "raised", "score": 2.0, "threshold": 1.0,
          "top_channels": [{"name": "Pressure", "share": 0.7}]}  # a schema 1 alert still renders
    assert render(last["value_template"], v1) == "raised"
    assert json.loads(render(last["json_attributes_template"], v1))["severity"] is None
    assert render(last["value_template"], {**v1, "summary": "x" * 300}) == "x" * 255
    assert render(avail["value_template"], {"state": "online", "version": "x"}) == "online"
    assert render(avail["value_template"], {"state": "offline", "reason": "x"}) == "offline"


def test_custom_topic_templates_are_followed() -> None:
    s = DiscoverySettings(instance="i", state_topic="plant/{device}/alarm", alert_topic="plant/{device}/alerts",
                          score_topic="plant/{device}/score", status_topic="plant/daemons/{instance}")
    p = device_config("d", s)[1]
    assert p["components"]["anomaly"]["state_topic"] == "plant/d/alarm"
    assert p["components"]["anomaly_score"]["state_topic"] == "plant/d/score"
    assert [a["topic"] for a in p["availability"]] == ["plant/daemons/i", "plant/daemons/i/d"]


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_discovery_announces_each_device_once_and_everything_on_connect() -> None:
    clock = Clock()
    d = Discovery(S, clock=clock)
    assert [t for t, _ in d.on_connect()] == ["homeassistant/device/edgewatch_gw1/config"]
    first = d.on_device("a")
    assert [(t, p[:1]) for t, p in first] == [("homeassistant/device/edgewatch_gw1_a/config", b"{"),
                                              ("edgewatch/gw1/status/a", b"o")]
    assert first[1][1] == b"online"
    assert d.on_device("a") == []
    assert len(d.on_connect()) == 3  # gateway, a's config, a's availability


def test_a_silent_device_becomes_unavailable_and_comes_back() -> None:
    clock = Clock()
    d = Discovery(S, clock=clock)
    d.on_device("a")
    d.on_device("b")
    clock.t += 60
    d.on_device("b")
    assert d.sweep() == []  # a: 60 s of 120
    clock.t += 61
    assert d.sweep() == [("edgewatch/gw1/status/a", b"offline")]
    assert d.sweep() == []  # said once
    assert ("edgewatch/gw1/status/a", b"offline") in d.on_connect()  # a reconnect repeats the truth
    back = d.on_device("a")
    assert back[1] == ("edgewatch/gw1/status/a", b"online") and back[0][0].endswith("edgewatch_gw1_a/config")


def test_a_device_an_earlier_run_left_online_is_said_offline_when_it_stays_quiet() -> None:
    clock = Clock()
    d = Discovery(S, clock=clock)
    assert d.on_earlier("old", b"online") == [] and d.on_earlier("gone", b"offline") == []
    assert d.on_earlier("back", b"online") == []
    clock.t += 60
    assert d.sweep() == []  # 60 s of 120
    back = d.on_device("back")  # it sends: announced as any new device (this run's model in its config)
    assert [t for t, _ in back] == ["homeassistant/device/edgewatch_gw1_back/config", "edgewatch/gw1/status/back"]
    clock.t += 61
    assert d.sweep() == [("edgewatch/gw1/status/old", b"offline")]  # never gone, never heard from: not online
    clock.t += 200
    assert d.sweep() == [("edgewatch/gw1/status/back", b"offline")]  # this run's device, quiet in its turn
    assert "old" not in d.last_seen and d.earlier == set()  # nothing more of it to follow
    assert d.on_earlier("back", b"online") == []  # (this run knows it: not an earlier run's)
    assert d.earlier == set()
    d.on_earlier("removed", b"online")
    d.remove("removed")
    assert d.earlier == set() and "removed" not in d.last_seen


def test_a_forgotten_device_is_unavailable_not_deleted_and_removal_is_explicit() -> None:
    d = Discovery(S, clock=Clock())
    d.on_device("a")
    assert d.forget("a") == [("edgewatch/gw1/status/a", b"offline")]  # the config (and HA's entities) stay
    assert d.forget("a") == []
    assert d.remove("a") == [("homeassistant/device/edgewatch_gw1_a/config", b""), ("edgewatch/gw1/status/a", b"")]
    assert len(d.on_device("a")) == 2


def test_a_device_that_only_sends_rejected_data_is_announced_and_kept_available() -> None:
    clock = Clock()
    d = Discovery(S, clock=clock)
    first = d.on_rejected("bad")
    assert first == d._device_msgs("bad") and first[1] == ("edgewatch/gw1/status/bad", b"online")
    assert d.on_rejected("bad") == [] and d.unscored == {"bad"}  # announced once
    for _ in range(3):  # it keeps sending (rejected): not stale
        clock.t += 60
        d.on_rejected("bad")
        assert d.sweep() == []
    assert d.on_device("bad") == first  # its first scored window: the config again (running follows it)
    assert d.on_device("bad") == [] and d.on_rejected("bad") == [] and d.unscored == set()
    d.on_rejected("gone")
    assert d.forget("gone") == [("edgewatch/gw1/status/gone", b"offline")] and d.unscored == set()
    clock.t += 121
    d._next_sweep = float("-inf")
    assert d.sweep() == [("edgewatch/gw1/status/bad", b"offline")]
    assert d.on_rejected("bad") == first  # stale, then sending again: available again


def test_birth_message_resends_unless_just_sent() -> None:
    clock = Clock()
    d = Discovery(S, clock=clock)
    d.on_device("a")
    d.on_connect()
    assert d.on_birth(b"online") == []  # right after a connect's full send (a retained birth message)
    clock.t += 10
    assert d.on_birth(b"offline") == []
    again = d.on_birth(b"online")
    assert [t for t, _ in again] == ["homeassistant/device/edgewatch_gw1/config",
                                     "homeassistant/device/edgewatch_gw1_a/config", "edgewatch/gw1/status/a"]


def test_staleness_limit() -> None:
    assert stale_limit_s(0.1, 16, 3600) == 60.0  # 10 hops of 1.6 s: the 60 s floor
    assert stale_limit_s(1.0, 32, 3600) == 320.0
    assert stale_limit_s(None, 16, 3600) == 600.0
    assert stale_limit_s(None, 16, 300) == 300.0  # never past device_idle_s
    assert stale_limit_s(None, 16, 0) == 600.0


def test_encoded_payloads_are_json_objects() -> None:
    for _, p in [device_config("x", S), gateway_config(S)]:
        assert isinstance(json.loads(encode(p)), dict)


def test_defaults() -> None:
    s = DiscoverySettings(instance="h")
    assert s.prefix == "homeassistant" and s.sw_version == __version__ and s.birth_topic == "homeassistant/status"


# -- against the real daemon and a real Mosquitto -------------------------------------------------


def test_daemon_publishes_discovery_that_renders_its_own_payloads(mosquitto, demo_model_path) -> None:
    import numpy as np

    from edge_runtime.tools.synthetic import Anomaly, inject, normal_series
    from tests.edge_runtime.mqtt_helpers import Collector, Publisher, running_daemon, wait_until

    col = Collector(mosquitto.port, ["homeassistant/#", "scores/#", "alerts/#", "edgewatch/#", "health/#"])
    pub = Publisher(mosquitto.port)

    def docs(topic: str) -> list[dict]:
        return [json.loads(p) for t, p, _ in list(col.messages) if t == topic and p]

    def raw(topic: str) -> list[bytes]:
        return [p for t, p, _ in list(col.messages) if t == topic]

    gw_topic = "homeassistant/device/edgewatch_gw1/config"
    dev_topic = "homeassistant/device/edgewatch_gw1_pump-1/config"
    try:
        with running_daemon(mosquitto.url, demo_model_path, homeassistant_discovery=True, instance="gw1",
                            commands=True) as d:
            wait_until(lambda: docs(gw_topic), 10, "gateway config")
            x = normal_series(400, 4, seed=0)
            x = inject(x, Anomaly("level_shift", 200, 400, (0, 1)))
            ts = 1_700_000_000.0 + np.arange(400) * 0.1
            for lo in range(0, 400, 50):
                pub.send("sensors/pump-1/data", json.dumps({"ts": ts[lo:lo + 50].tolist(),
                                                            "values": x[lo:lo + 50].tolist()}))
            pub.flush()
            wait_until(lambda: docs(dev_topic), 10, "device config")
            wait_until(lambda: docs("alerts/pump-1/state"), 20, "a raised state")
            cfg = docs(dev_topic)[-1]
            binary, score = cfg["components"]["anomaly"], cfg["components"]["anomaly_score"]
            state = docs("alerts/pump-1/state")[-1]
            assert render(binary["value_template"], state) == binary["payload_on"]
            assert isinstance(state, dict)  # json_attributes_topic: a JSON object is the attributes
            # commands on: the threshold sensor reads the real state; the feedback select's command is accepted
            thr, select = cfg["components"]["threshold"], cfg["components"]["alert_feedback"]
            assert float(render(thr["value_template"], state)) == pytest.approx(state["threshold"])
            assert json.loads(render(thr["json_attributes_template"], state))["false_alarm_channels"] == []
            command = jinja2.Environment().from_string(select["command_template"]).render(value="ack")
            pub.send(select["command_topic"], command)
            pub.flush()
            wait_until(lambda: docs("edgewatch/gw1/reply"), 10, "the reply to Home Assistant's feedback")
            reply = docs("edgewatch/gw1/reply")[-1]
            assert reply["status"] == "accepted" and reply["verdict"] == "ack" and reply["device"] == "pump-1"
            # the alert itself (schema 2): the summary line as the state, what to act on as attributes
            last = cfg["components"]["last_alert"]
            wait_until(lambda: docs("alerts/pump-1"), 10, "the alert")
            alert = docs(last["state_topic"])[-1]
            assert render(last["value_template"], alert) == alert["summary"][:255] and alert["summary"]
            attrs = json.loads(render(last["json_attributes_template"], alert))
            assert attrs["alert_id"] == alert["raised_alert_id"] and attrs["severity"] == alert["severity"]
            assert attrs["top_channels"][0]["name"] == alert["top_channels"][0]["name"]
            assert "expected" in attrs["top_channels"][0] and attrs["anomalous_since"].endswith("Z")
            scores = docs("scores/pump-1")
            assert scores, "discovery turns score publishing on"
            assert float(render(score["value_template"], scores[-1])) == pytest.approx(scores[-1]["score"][-1])
            health = cfg["components"]["sensor_health"]  # sensor health is on by default
            hdoc = docs("health/pump-1")[-1]
            assert render(health["value_template"], hdoc) in (health["payload_on"], health["payload_off"])
            assert json.loads(render(health["json_attributes_template"], hdoc))["state"] == hdoc["state"]
            # a model without operating states: its first window says running, so the entity is not Unknown
            operating = cfg["components"]["operating_state"]
            wait_until(lambda: docs("alerts/pump-1/operating"), 10, "the operating state")
            assert render(operating["value_template"], docs("alerts/pump-1/operating")[0]) == "running"
            daemon_av, device_av = cfg["availability"]
            online = docs("edgewatch/gw1/status")[-1]
            assert render(daemon_av["value_template"], online) == daemon_av["payload_available"]
            assert raw(device_av["topic"])[-1] == device_av["payload_available"].encode()
            assert d.scorer.discovery is not None and d.scorer.discovery.devices == {"pump-1"}
            # Home Assistant restarts: its birth message brings every config again
            n = len(raw(dev_topic))
            d.scorer.discovery._last_full = float("-inf")  # past the debounce of the connect's own send
            pub.send("homeassistant/status", b"online")
            pub.flush()
            wait_until(lambda: len(raw(dev_topic)) > n, 10, "discovery re-sent on homeassistant/status online")
            # the device goes silent past the staleness limit: unavailable, the config stays
            d.scorer.discovery.last_seen["pump-1"] -= 10_000
            d.scorer.discovery._next_sweep = float("-inf")
            wait_until(lambda: raw(device_av["topic"])[-1] == b"offline", 5, "stale device unavailable")
            assert raw(dev_topic)[-1] != b""
        wait_until(lambda: docs("edgewatch/gw1/status")[-1]["state"] != "online", 10, "offline status")
        offline = docs("edgewatch/gw1/status")[-1]
        assert render(daemon_av["value_template"], offline) == daemon_av["payload_not_available"]
        # configs are retained: a subscriber arriving later (Home Assistant after a restart) gets them
        late = Collector(mosquitto.port, ["homeassistant/#", "alerts/+/state"])
        try:
            wait_until(lambda: len(late.messages) >= 3, 10, "retained configs and state")
            assert all(retain for _, _, retain in late.messages)
            assert {t for t, _, _ in late.messages} >= {gw_topic, dev_topic, "alerts/pump-1/state"}
        finally:
            late.close()
    finally:
        pub.close()
        col.close()


def test_a_device_whose_messages_are_all_rejected_gets_its_discovery_config(mosquitto, demo_model_path) -> None:
    """A device that only ever sends rejected data (the wrong channel count) is announced when its ``rejected``
    sensor alert is raised: Home Assistant shows its Sensor health on, naming the fault. One bad message each from
    many unknown ids announces nothing, and the rejected devices announced stay within ``input.max_devices``: those
    let go are unavailable. Once the device sends data that decodes it is scored as any other."""
    import numpy as np

    from edge_runtime.service.sensor_health import REJECTED_AFTER
    from edge_runtime.tools.synthetic import normal_series
    from tests.edge_runtime.mqtt_helpers import Collector, Publisher, running_daemon, wait_until

    col = Collector(mosquitto.port, ["homeassistant/#", "edgewatch/#", "health/#", "alerts/#"])
    pub = Publisher(mosquitto.port)

    def docs(topic: str) -> list[dict]:
        return [json.loads(p) for t, p, _ in list(col.messages) if t == topic and p]

    def raw(topic: str) -> list[bytes]:
        return [p for t, p, _ in list(col.messages) if t == topic]

    def configs() -> set[str]:
        return {t for t, p, _ in list(col.messages) if t.startswith("homeassistant/device/edgewatch_gw1_") and p}

    bad = [json.dumps({"ts": 1_700_000_000.0 + i, "values": [1.0, 2.0]}) for i in range(REJECTED_AFTER)]
    try:
        with running_daemon(mosquitto.url, demo_model_path, homeassistant_discovery=True, instance="gw1",
                            max_devices=3, log_interval_s=3600.0) as d:
            for i in range(50):  # one bad message each: not a device the daemon knows (REJECTED_AFTER in a row)
                pub.send(f"sensors/junk-{i}/data", b"{not json")
            for m in bad:
                pub.send("sensors/bad-1/data", m)
            pub.flush()
            dev_topic = "homeassistant/device/edgewatch_gw1_bad-1/config"
            wait_until(lambda: docs(dev_topic), 10, "the rejected device's discovery config")
            assert configs() == {dev_topic}  # none for the ids with one bad message each
            cfg = docs(dev_topic)[-1]
            health = cfg["components"]["sensor_health"]
            wait_until(lambda: docs(health["state_topic"]), 10, "its retained health document")
            hdoc = docs(health["state_topic"])[-1]
            assert render(health["value_template"], hdoc) == health["payload_on"]
            attrs = json.loads(render(health["json_attributes_template"], hdoc))
            assert [f["kind"] for f in attrs["faults"]] == ["rejected"] and attrs["state"] == "fault"
            device_av = cfg["availability"][1]["topic"]
            wait_until(lambda: raw(device_av) and raw(device_av)[-1] == b"online", 10, "the device available")
            assert d.stats.drops["wrong_channels"] == REJECTED_AFTER and d.stats.sensor_faults == {"rejected": 1}
            # rejected devices beyond max_devices: the oldest let go, unavailable; what discovery holds stays bounded
            for k in range(2, 8):
                for m in bad:
                    pub.send(f"sensors/bad-{k}/data", m)
            pub.flush()
            wait_until(lambda: len(configs()) == 7, 10, "each rejected device announced")
            wait_until(lambda: raw(device_av)[-1] == b"offline", 10, "bad-1 let go: unavailable")
            assert d.scorer.discovery is not None and len(d.scorer.discovery.devices) <= 3
            assert raw(dev_topic)[-1] != b""  # the config (and Home Assistant's entities) stay
            # bad-7 is fixed: it is scored, and its operating state says running (the entity is not Unknown)
            x = normal_series(400, 4, seed=0)
            ts = 1_700_000_100.0 + np.arange(400) * 0.1
            for lo in range(0, 400, 50):
                pub.send("sensors/bad-7/data", json.dumps({"ts": ts[lo:lo + 50].tolist(),
                                                           "values": x[lo:lo + 50].tolist()}))
            pub.flush()
            wait_until(lambda: docs("alerts/bad-7/operating"), 20, "bad-7's operating state")
            assert docs("alerts/bad-7/operating")[-1]["state"] == "running"
            fixed = docs("homeassistant/device/edgewatch_gw1_bad-7/config")[-1]["components"]["sensor_health"]
            assert render(fixed["value_template"], docs("health/bad-7")[-1]) == fixed["payload_off"]
            assert d.scorer.discovery.unscored.isdisjoint({"bad-7"})
    finally:
        pub.close()
        col.close()


def test_a_daemon_restarted_after_a_crash_says_the_quiet_devices_it_left_online_offline(mosquitto,
                                                                                       demo_model_path) -> None:
    """A killed daemon leaves its devices' retained availability online (its Last Will covers its own status
    only): the next run reads them back at connect and says offline those that stay quiet, so Home Assistant
    shows them unavailable and ``homeassistant cleanup`` takes them as orphaned."""
    from tests.edge_runtime.mqtt_helpers import Collector, Publisher, running_daemon, wait_until

    col = Collector(mosquitto.port, ["edgewatch/#"])
    pub = Publisher(mosquitto.port)
    try:
        pub.send("edgewatch/gw1/status/x1", b"online", retain=True)  # as the crashed run left them
        pub.send("edgewatch/gw1/status/x2", b"online", retain=True)
        pub.send("edgewatch/other/status/x3", b"online", retain=True)  # another gateway's: not this daemon's
        pub.flush()
        with running_daemon(mosquitto.url, demo_model_path, homeassistant_discovery=True, instance="gw1",
                            device_idle_s=2.0):
            def last(topic: str) -> bytes | None:
                got = [p for t, p, _ in list(col.messages) if t == topic]
                return got[-1] if got else None

            wait_until(lambda: last("edgewatch/gw1/status/x1") == last("edgewatch/gw1/status/x2") == b"offline",
                       15, "the earlier run's quiet devices offline")
        assert last("edgewatch/other/status/x3") == b"online"
    finally:
        for t in ("edgewatch/gw1/status/x1", "edgewatch/gw1/status/x2", "edgewatch/other/status/x3"):
            pub.send(t, b"", retain=True)
        pub.flush()
        pub.close()
        col.close()


def test_orphaned_configs_are_the_legacy_layout_and_devices_not_online() -> None:
    from edge_runtime.integrations.homeassistant import orphaned_configs

    def cfg(device: str, s: DiscoverySettings = S) -> tuple[str, bytes]:
        t, p = device_config(device, s)
        return t, encode(p)

    other = DiscoverySettings(instance="gw2")
    legacy = "homeassistant/binary_sensor/edgewatch_gw1/pump-1_anomaly/config"
    retained = dict([cfg("on"), cfg("off"), cfg("never"), cfg("x", other), (gateway_config(S)[0], encode(gateway_config(S)[1]))])
    retained[legacy] = json.dumps({"name": "Anomaly", "origin": {"name": "edgewatch"}}).encode()
    retained["homeassistant/sensor/someone_else/t/config"] = b'{"name": "t"}'
    retained[availability_topic("on", S)] = b"online"
    retained[availability_topic("off", S)] = b"offline"
    retained["homeassistant/device/broken/config"] = b"[[[not json"
    off, never = cfg("off")[0], cfg("never")[0]
    assert orphaned_configs(retained, S) == sorted([legacy, off, never])
    assert orphaned_configs(retained, S, everything=True) == sorted([legacy, off, never, cfg("on")[0]])


def test_cleanup_and_remove_commands_on_a_real_broker(mosquitto, tmp_path) -> None:
    from click.testing import CliRunner

    from edge_runtime.cli import main
    from tests.edge_runtime.mqtt_helpers import Collector, Publisher, wait_until

    pub = Publisher(mosquitto.port)
    legacy = "homeassistant/binary_sensor/edgewatch_gw1/old_anomaly/config"
    live_t, live_p = device_config("live", S)
    idle_t, idle_p = device_config("idle", S)
    for t, p in [(legacy, json.dumps({"origin": {"name": "edgewatch"}}).encode()), (live_t, encode(live_p)),
                 (idle_t, encode(idle_p)), (availability_topic("live", S), b"online"),
                 (availability_topic("idle", S), b"offline")]:
        pub.client.publish(t, p, qos=1, retain=True).wait_for_publish(5)
    conf = tmp_path / "edgewatch.toml"
    conf.write_text('[runtime]\ninstance = "gw1"\n')
    col = Collector(mosquitto.port, ["homeassistant/#", "edgewatch/#"])

    def retained_now() -> dict[str, bytes]:
        late = Collector(mosquitto.port, ["homeassistant/#", "edgewatch/#"])
        try:
            import time
            time.sleep(0.5)
            return {t: p for t, p, r in late.messages if r}
        finally:
            late.close()

    try:
        args = ["--config", str(conf), "--broker", mosquitto.url]
        dry = CliRunner().invoke(main, ["homeassistant", "cleanup", "--dry-run", *args])
        assert dry.exit_code == 0, dry.output
        assert f"would remove {legacy}" in dry.output and f"would remove {idle_t}" in dry.output
        assert live_t not in dry.output
        assert set(retained_now()) >= {legacy, idle_t}  # a dry run changes nothing
        res = CliRunner().invoke(main, ["homeassistant", "cleanup", *args])
        assert res.exit_code == 0, res.output
        assert "2 orphaned config(s) removed" in res.output
        now = retained_now()
        assert legacy not in now and idle_t not in now and availability_topic("idle", S) not in now
        assert now[live_t] == encode(live_p)  # kept, and sent again for Home Assistant
        wait_until(lambda: sum(t == live_t for t, _, _ in col.messages) >= 2, 5, "the kept config re-sent")
        res = CliRunner().invoke(main, ["homeassistant", "remove", "live", *args])
        assert res.exit_code == 0, res.output
        now = retained_now()
        assert live_t not in now and availability_topic("live", S) not in now
    finally:
        col.close()
        pub.close()


def test_with_commands_a_feedback_select_sends_a_command_the_daemon_accepts() -> None:
    from edge_runtime.pipeline.feedback import parse_command
    from tests.edge_runtime.schema_check import errors, load

    s = DiscoverySettings(instance="gw1", command_topic="site/edgewatch/{instance}/command")
    cmps = device_config("line.3:a@b", s)[1]["components"]
    select, thr = cmps["alert_feedback"], cmps["threshold"]
    assert select["platform"] == "select" and select["command_topic"] == "site/edgewatch/gw1/command"
    for option in select["options"]:
        payload = jinja2.Environment().from_string(select["command_template"]).render(value=option)
        cmd = parse_command(payload)
        assert (cmd.command, cmd.device, cmd.verdict, cmd.source) == ("feedback", "line.3:a@b", option, "homeassistant")
        assert errors(json.loads(payload), load("command.schema.json")) == []
    state = {"schema_version": 1, "device": "line.3:a@b", "state": "cleared", "seq": 2, "instance": "gw1",
             "threshold": 1.68, "threshold_model": 1.0, "threshold_base": 1.0}
    assert float(render(thr["value_template"], state)) == 1.68 and thr["state_topic"] == "alerts/line.3:a@b/state"
    assert json.loads(render(thr["json_attributes_template"], state)) == {"threshold_feedback": None,
                                                                          "false_alarm_channels": []}
    raised = {**state, "threshold": 1.0, "threshold_feedback": 2.1, "feedback": {
        "factor": 2.1, "factor_now": 2.1, "since": 5.0, "false_alarms": 1, "raises": [
            {"factor": 2.1, "factor_now": 2.1, "since": 5.0, "false_alarms": 1, "signature": [1.0, 0.0, 0.0, 0.0],
             "channels": "Pressure high"}, {"factor": 1.2, "since": 1.0, "false_alarms": 1}]}}
    assert errors(raised, load("state.schema.json")) == []
    assert json.loads(render(thr["json_attributes_template"], raised)) == {"threshold_feedback": 2.1,
                                                                           "false_alarm_channels": ["Pressure high"]}
    assert "alert_feedback" not in components()  # commands off: no select
