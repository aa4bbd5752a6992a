"""One request to a daemon over MQTT and its reply: subscribe to the reply topic, publish, wait. Shared by
``edgewatch feedback`` (a command) and ``edgewatch evidence fetch`` (an evidence file in chunks)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from typing import Any

from edge_runtime.clierror import EXIT_UNAVAILABLE
from edge_runtime.config import Config
from edge_runtime.service.mqtt import ClientOptions, client_options, connect, make_client, parse_broker_url


class NoReply(RuntimeError):
    """No subscription, or no (complete) reply in time; the message says which."""

    exit_code = EXIT_UNAVAILABLE


def request(cfg: Config, request_topic: str, doc: dict[str, Any], reply_topic: str,
            on_reply: Callable[[dict[str, Any]], bool], timeout: float = 10.0, client_prefix: str = "edgewatch-req",
            ) -> None:
    """Publish ``doc`` (JSON, QoS 1) on ``request_topic`` once subscribed to ``reply_topic``, then pass each JSON
    object arriving there to ``on_reply`` (paho's thread) until it returns True. :class:`NoReply` after
    ``timeout`` s (its message names the topic; the caller adds what to check)."""
    addr = parse_broker_url(cfg.broker)
    subscribed, done = threading.Event(), threading.Event()
    client = make_client(addr, client_options(cfg, f"{client_prefix}-{uuid.uuid4().hex[:8]}", persistent=False))

    def on_message(c: Any, u: Any, msg: Any) -> None:
        try:
            reply = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(reply, dict) and on_reply(reply):
            done.set()

    client.on_connect = lambda c, *a: c.subscribe(reply_topic, 1)
    client.on_subscribe = lambda *a: subscribed.set()
    client.on_message = on_message
    connect(addr, ClientOptions(), cfg.keepalive_s, min(10.0, timeout), client=client)
    try:
        if not subscribed.wait(timeout):
            raise NoReply(f"cannot subscribe to {reply_topic}")
        client.publish(request_topic, json.dumps(doc), qos=1)
        if not done.wait(timeout):
            raise NoReply(f"no reply on {reply_topic} within {timeout:g} s")
    finally:
        client.disconnect()
        client.loop_stop()
