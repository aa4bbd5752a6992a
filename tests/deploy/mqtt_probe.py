"""Small paho-mqtt 2.x helpers for the deploy tests: connect and report the outcome, collect messages."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt

TIMEOUT = 10.0  # upper bound for events that must happen; never a performance assertion


@dataclass
class Outcome:
    """How a connection attempt ended: ``connected`` only after a CONNACK with success."""

    connected: bool
    reason: str


def new_client(
    username: str | None = None, password: str | None = None, protocol: int = mqtt.MQTTv5
) -> mqtt.Client:
    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"test-{username}-{uuid.uuid4().hex[:8]}",
        protocol=protocol,
    )
    if username is not None:
        client.username_pw_set(username, password)
    return client


def try_connect(client: mqtt.Client, port: int, host: str = "127.0.0.1") -> Outcome:
    """Connect and drive the network loop in this thread until CONNACK or failure."""
    result: list[Outcome] = []

    def on_connect(c, userdata, flags, reason_code, properties) -> None:
        result.append(Outcome(not reason_code.is_failure, str(reason_code)))

    client.on_connect = on_connect
    try:
        client.connect(host, port, keepalive=30)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        return Outcome(False, f"{type(exc).__name__}: {exc}")
    waited = 0.0
    while not result and waited < TIMEOUT:
        try:
            rc = client.loop(timeout=0.1)
        except OSError as exc:  # e.g. the server's TLS alert for a refused client certificate
            return Outcome(False, f"{type(exc).__name__}: {exc}")
        waited += 0.1
        if rc != mqtt.MQTT_ERR_SUCCESS and not result:
            return Outcome(False, f"connection lost before CONNACK: {mqtt.error_string(rc)}")
    if not result:
        return Outcome(False, "no CONNACK")
    return result[0]


@dataclass
class Collector:
    """A connected client that records every message it receives; run by paho's thread."""

    client: mqtt.Client
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def on_message(self, c, userdata, msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.messages.append((msg.topic, msg.payload))
            self.cond.notify_all()

    def wait_for(self, topic: str, payload: bytes) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: (topic, payload) in self.messages, timeout=TIMEOUT)

    def topics(self) -> set[str]:
        with self.cond:
            return {t for t, _ in self.messages}


def subscribe(client: mqtt.Client, topic: str) -> list[int]:
    """Subscribe (QoS 1) and return the SUBACK reason code values; the client's loop must run."""
    done = threading.Event()
    codes: list[int] = []

    def on_subscribe(c, userdata, mid, reason_codes, properties) -> None:
        codes.extend(rc.value for rc in reason_codes)
        done.set()

    client.on_subscribe = on_subscribe
    client.subscribe(topic, qos=1)
    assert done.wait(TIMEOUT), f"no SUBACK for {topic}"
    return codes


def publish(client: mqtt.Client, topic: str, payload: bytes, retain: bool = False) -> None:
    """Publish at QoS 1 and wait for the broker's PUBACK (also sent when the ACL drops it)."""
    info = client.publish(topic, payload, qos=1, retain=retain)
    info.wait_for_publish(timeout=TIMEOUT)
    assert info.is_published(), f"no PUBACK for {topic}"
