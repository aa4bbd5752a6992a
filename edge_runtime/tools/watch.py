"""``edgewatch alerts``: subscribe to alert topics and show them (table on a tty, JSON lines when piped)."""

from __future__ import annotations

import json
import logging
import queue
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from edge_runtime.config import Config
from edge_runtime.service.mqtt import (
    ClientOptions,
    MqttConnectError,
    client_options,
    connect,
    describe_connect_error,
    make_client,
    parse_broker_url,
)

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0


class WatchError(Exception):
    """The first connection to the broker failed (refused, unreachable, login or TLS rejected)."""

HEADER = f"{'time (UTC)':<19}  {'device':<20} {'state':<8} {'score':>10} {'thresh':>10} {'seq':>4}  top channels"


def _fmt_time(t: Any) -> str:
    try:
        return datetime.fromtimestamp(float(t), tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"


def format_row(doc: dict[str, Any]) -> str:
    """One alert (or retained state) document as a table row."""
    top = ", ".join(f"{t.get('name')} {float(t.get('share', 0)):.0%}" for t in doc.get("top_channels", []) if isinstance(t, dict))
    score = doc.get("score")
    thr = doc.get("threshold")
    return (
        f"{_fmt_time(doc.get('window_end', doc.get('since', doc.get('time')))):<19}  "
        f"{str(doc.get('device', '?'))[:20]:<20} {str(doc.get('state', '?'))[:8]:<8} "
        f"{score if score is None else f'{float(score):.4g}'!s:>10} {thr if thr is None else f'{float(thr):.4g}'!s:>10} "
        f"{doc.get('seq', '')!s:>4}  {top}"
    )


class _Connection:
    """The watcher's subscriptions and reconnect notices (paho's network thread; ``notify(line)`` returns)."""

    def __init__(self, where: str, filters: list[tuple[str, int]], notify: Callable[[str], None]) -> None:
        self.where = where
        self.filters = filters
        self.notify = notify
        self.connected = False
        self.ever_connected = False

    def on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self.notify(f"broker {self.where} refused the connection: {reason_code}; retrying")
            return
        client.subscribe(self.filters)
        if self.ever_connected:
            self.notify(f"reconnected to broker {self.where}")
        self.connected = self.ever_connected = True

    def on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if self.connected:
            self.connected = False
            self.notify(f"lost the connection to broker {self.where} ({reason_code}); reconnecting")

    def on_connect_fail(self, client: Any, userdata: Any) -> None:
        # paho calls this from inside its ``except OSError`` on a failed reconnect
        self.notify(f"cannot connect to broker {self.where}: {describe_connect_error(sys.exc_info()[1])}; retrying")


def watch_alerts(
    cfg: Config,
    emit: Callable[[str, dict[str, Any]], None],
    include_state: bool = True,
    count: int = 0,
    timeout: float = 0.0,
    notify: Callable[[str], None] | None = None,
) -> int:
    """Subscribe to ``cfg.alert_topic`` (and the state topic); call ``emit(topic, doc)`` per message.

    Returns after ``count`` alert messages (0: forever) or ``timeout`` seconds (0: none); the number seen.
    Raises :class:`WatchError` when the first connection fails (refused, unreachable, bad login, TLS,
    no answer within 10 s); later disconnects go to ``notify(line)`` (default: a log warning) and
    are retried with backoff.
    """
    inbox: queue.Queue[tuple[str, bytes | bytearray]] = queue.Queue()
    addr = parse_broker_url(cfg.broker)
    client = make_client(addr, client_options(cfg, f"edgewatch-alerts-{uuid.uuid4().hex[:8]}", persistent=False))
    filters = [(cfg.alert_topic.replace("{device}", "+"), 1)]
    if include_state:
        filters.append((cfg.state_topic.replace("{device}", "+"), 1))
    conn = _Connection(str(addr), filters, notify or log.warning)
    client.on_connect = conn.on_connect
    client.on_disconnect = conn.on_disconnect
    client.on_connect_fail = conn.on_connect_fail
    client.on_message = lambda c, u, m: inbox.put((m.topic, m.payload))
    try:
        connect(addr, ClientOptions(), cfg.keepalive_s, CONNECT_TIMEOUT_S, client=client)
    except MqttConnectError as exc:
        raise WatchError(str(exc)) from None
    try:
        return _consume(inbox, emit, count, timeout)
    finally:
        client.disconnect()
        client.loop_stop()


def _consume(
    inbox: queue.Queue[tuple[str, bytes | bytearray]], emit: Callable[[str, dict[str, Any]], None], count: int, timeout: float
) -> int:
    """Emit JSON-object messages from ``inbox`` until ``count`` alerts or ``timeout`` s; the alerts seen."""
    deadline = time.monotonic() + timeout if timeout else float("inf")
    seen = 0
    while not count or seen < count:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            topic, payload = inbox.get(timeout=min(left, 0.5))
        except queue.Empty:
            continue
        try:
            doc = json.loads(payload)
        except ValueError:
            continue
        if not isinstance(doc, dict):
            continue
        emit(topic, doc)
        if "alert_id" in doc:
            seen += 1
    return seen
