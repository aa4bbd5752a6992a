"""The production Mosquitto ACL (deploy/mosquitto/acl) enforced by the real broker.

The broker runs deploy/mosquitto/mosquitto.conf (plain loopback listener, paths moved to tmp)
with the shipped ACL plus one test-only account: an ``observer`` that may read and write ``#``.
Mosquitto drops an unauthorised PUBLISH silently (it still acknowledges it), so "not delivered"
is proved with a marker: after the denied publish the same client publishes an allowed marker;
messages from one client are routed in order, so once the observer holds the marker, the denied
message would have arrived before it. Mosquitto 2.0 grants a SUBSCRIBE to any filter and applies
read rights per message at delivery, so read denial is proved the same way: the subscriber's own
QoS 1 round trip (its PUBACK is queued behind anything the broker would have routed to it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.deploy.mqtt_probe import Collector, new_client, publish, subscribe, try_connect
from tests.deploy.prod_broker import kit_broker, make_password_file

USERS = {
    "edgewatch": "daemon-secret",
    "pump1": "pump1-secret",
    "pump2": "pump2-secret",
    "observer": "observer-secret",
}


@pytest.fixture(scope="module")
def broker_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with kit_broker(tmp_path_factory.mktemp("acl-broker"), USERS, "\n# test only\nuser observer\ntopic readwrite #\n") as port:
        yield port


def connected(port: int, user: str, protocol: int = mqtt.MQTTv5) -> mqtt.Client:
    client = new_client(user, USERS[user], protocol)
    outcome = try_connect(client, port)
    assert outcome.connected, f"{user}: {outcome.reason}"
    client.loop_start()
    return client


@pytest.fixture
def observer(broker_port: int) -> Iterator[Collector]:
    client = new_client("observer", USERS["observer"])
    col = Collector(client)
    client.on_message = col.on_message
    assert try_connect(client, broker_port).connected
    client.loop_start()
    assert subscribe(client, "#") == [1]
    yield col
    client.disconnect()  # before loop_stop: wakes the network thread at once
    client.loop_stop()


@pytest.fixture
def clients(broker_port: int) -> Iterator[dict[str, mqtt.Client]]:
    made: dict[str, mqtt.Client] = {}
    yield made
    for c in made.values():
        c.disconnect()
        c.loop_stop()


def test_daemon_subscribes_to_sensors_and_receives(broker_port: int, clients: dict) -> None:
    daemon = clients["d"] = connected(broker_port, "edgewatch")
    col = Collector(daemon)
    daemon.on_message = col.on_message
    assert subscribe(daemon, "sensors/#") == [1]
    assert subscribe(daemon, "sensors/+/data") == [1]
    clients["p"] = pump = connected(broker_port, "pump1")
    publish(pump, "sensors/pump1/data", b'{"v": [1.0]}')
    assert col.wait_for("sensors/pump1/data", b'{"v": [1.0]}')


@pytest.mark.parametrize("topic", ["alerts/x", "alerts/x/state", "scores/x", "edgewatch/x/status"])
def test_daemon_publishes_to_its_own_trees(
    broker_port: int, clients: dict, observer: Collector, topic: str
) -> None:
    daemon = clients["d"] = connected(broker_port, "edgewatch")
    publish(daemon, topic, b"ok", retain=topic.endswith(("state", "status")))
    assert observer.wait_for(topic, b"ok")


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["v311", "v5"])
def test_daemon_cannot_publish_elsewhere(
    broker_port: int, clients: dict, observer: Collector, protocol: int
) -> None:
    daemon = clients["d"] = connected(broker_port, "edgewatch", protocol)
    denied = ["sensors/x", "sensors/pump1/data", "other/x", "homeassistant/sensor/x/config", "alert/x"]
    for topic in denied:
        publish(daemon, topic, b"forged")
    publish(daemon, "edgewatch/marker", b"after-denied")
    assert observer.wait_for("edgewatch/marker", b"after-denied")
    assert observer.topics().isdisjoint(denied)


def test_daemon_reads_nothing_but_sensors(broker_port: int, clients: dict, observer: Collector) -> None:
    daemon = clients["d"] = connected(broker_port, "edgewatch")
    col = Collector(daemon)
    daemon.on_message = col.on_message
    subscribe(daemon, "#")
    hidden = ["other/x", "alerts/pump1", "scores/pump1", "edgewatch/other/status", "homeassistant/x"]
    for topic in hidden:
        publish(observer.client, topic, b"not for the daemon")
    publish(observer.client, "sensors/pump1/data", b"visible")
    assert col.wait_for("sensors/pump1/data", b"visible")
    publish(daemon, "edgewatch/barrier", b"")  # round trip: anything routed to it arrived before
    # The one other thing it may read: its own retained per-device states (read back at start-up);
    # earlier tests in this module left some retained on this broker.
    own_state = re.compile(r"alerts/[^/]+/state")
    assert {t for t in col.topics() if not own_state.fullmatch(t)} == {"sensors/pump1/data"}


def test_sensor_publishes_only_its_own_topic(broker_port: int, clients: dict, observer: Collector) -> None:
    pump = clients["p"] = connected(broker_port, "pump1")
    publish(pump, "sensors/pump1/data", b"own")
    assert observer.wait_for("sensors/pump1/data", b"own")
    denied = [
        "sensors/pump2/data",
        "alerts/pump1",
        "alerts/pump1/state",
        "scores/pump1",
        "edgewatch/edge1/status",
        "sensors/pump1/data/extra",
        "sensors/pump1",
    ]
    for topic in denied:
        publish(pump, topic, b"forged")
    publish(pump, "sensors/pump1/data", b"marker")
    assert observer.wait_for("sensors/pump1/data", b"marker")
    assert observer.topics().isdisjoint(denied)


def test_sensor_reads_nothing(broker_port: int, clients: dict, observer: Collector) -> None:
    pump = clients["p"] = connected(broker_port, "pump1")
    col = Collector(pump)
    pump.on_message = col.on_message
    subscribe(pump, "#")
    for topic in ("sensors/pump2/data", "sensors/pump1/data", "alerts/pump2", "edgewatch/x/status"):
        publish(observer.client, topic, b"not for a sensor")
    publish(pump, "sensors/pump1/data", b"barrier")  # its PUBACK is queued behind any delivery
    assert col.messages == []


@pytest.mark.parametrize(
    ("user", "password"),
    [(None, None), ("edgewatch", "wrong"), ("pump1", "daemon-secret"), ("nobody", "x"), ("edgewatch", "")],
    ids=["anonymous", "wrong-password", "other-users-password", "unknown-user", "empty-password"],
)
@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["v311", "v5"])
def test_bad_credentials_are_refused(
    broker_port: int, user: str | None, password: str | None, protocol: int
) -> None:
    client = new_client(user, password, protocol)
    outcome = try_connect(client, broker_port)
    client.disconnect()
    assert not outcome.connected, outcome.reason
    assert "authori" in outcome.reason.lower() or "password" in outcome.reason.lower(), outcome.reason


def test_password_file_holds_only_hashes(tmp_path: Path) -> None:
    text = make_password_file(tmp_path / "passwd", {"pump1": "pump1-secret"}).read_text()
    assert "pump1-secret" not in text and text.startswith("pump1:$7$")
