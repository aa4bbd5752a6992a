"""The deploy ACL's fleet rollout rules on the real broker: only the workstation account writes under fleet/;
gateways (the daemon's account) read manifests, chunks and commands. Proved with markers as in
test_mosquitto_acl.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.deploy.mqtt_probe import Collector, new_client, publish, subscribe, try_connect
from tests.deploy.prod_broker import kit_broker

USERS = {"edgewatch": "d-secret", "workstation": "w-secret", "pump1": "p-secret", "observer": "o-secret"}
FLEET = ["fleet/models/v2/manifest", "fleet/models/v2/chunks/0", "fleet/commands"]


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with kit_broker(tmp_path_factory.mktemp("acl-fleet"), USERS, "\n# test only\nuser observer\ntopic readwrite #\n") as p:
        yield p


def _client(port: int, user: str):
    c = new_client(user, USERS[user])
    assert try_connect(c, port).connected
    c.loop_start()
    return c


def test_only_the_workstation_writes_fleet_topics_and_gateways_read_them(port: int) -> None:
    obs, ws, gw, pump = (_client(port, u) for u in ("observer", "workstation", "edgewatch", "pump1"))
    seen, got = Collector(obs), Collector(gw)
    obs.on_message, gw.on_message = seen.on_message, got.on_message
    subscribe(obs, "#")
    subscribe(gw, "fleet/#")
    try:
        for topic in FLEET:  # a gateway or a sensor cannot announce a model or send a command
            publish(gw, topic, b"forged by a gateway")
            publish(pump, topic, b"forged by a sensor")
        publish(gw, "edgewatch/marker", b"m1")
        publish(pump, "sensors/pump1/data", b"m2")
        assert seen.wait_for("edgewatch/marker", b"m1") and seen.wait_for("sensors/pump1/data", b"m2")
        assert seen.topics().isdisjoint(FLEET)
        for topic in FLEET:
            publish(ws, topic, b"genuine")
        for topic in FLEET:
            assert got.wait_for(topic, b"genuine"), topic  # the gateway account reads them
    finally:
        for c in (obs, ws, gw, pump):
            c.disconnect()
            c.loop_stop()
