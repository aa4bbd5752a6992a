"""``edgewatch alerts``: subscribe to alert topics and show them (table on a tty, JSON lines when piped).

One row per alert document. The retained per-device state documents (``alerts/{device}/state``) repeat what
the alerts say, so they are shown only with ``--states``, and then marked ``state`` in the first column; so are
the operating states (``alerts/{device}/operating``: running, stopped, settling, out_of_distribution), marked
``operating``. Sensor
faults (``health/{device}/alerts``: a channel missing, stuck or out of range, a device stale) are kept apart from
process alerts, and shown with ``--sensors``, marked ``sensor``.
Columns: ``stream time`` is the alert's ``window_end`` (the sensor clock; a state has none), ``received``
the watcher's own clock when the message arrived, both UTC. :class:`Subscription` (one client, its filters,
reconnect notices, a quiet close) is shared with the dashboard (``edge_runtime.integrations.dashboard``).
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from edge_runtime.clierror import EXIT_UNAVAILABLE
from edge_runtime.config import Config
from edge_runtime.pipeline.documents import CLEARED, RAISED
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
ALERT, STATE, SENSOR, OPERATING = "alert", "state", "sensor", "operating"
OOD_CELL = "ood"  # out_of_distribution, in the 8-character state cell (the row's summary spells it out)
# ANSI colours of the state cell on a terminal
COLOURS = {RAISED: "\x1b[31;1m", CLEARED: "\x1b[32m", "update": "\x1b[33m", OOD_CELL: "\x1b[31;1m"}
RESET = "\x1b[0m"


class WatchError(Exception):
    """The first connection to the broker failed (refused, unreachable, login or TLS rejected)."""

    exit_code = EXIT_UNAVAILABLE


HEADER = (f"{'kind':<9}  {'stream time (UTC)':<19}  {'received (UTC)':<19}  {'device':<20} {'gateway':<14} {'state':<8} "
          f"{'score':>9} {'thresh':>9} {'seq':>4}  summary (or top channels)")


def fmt_time(t: Any) -> str:
    """Epoch seconds as ``YYYY-mm-dd HH:MM:SS`` UTC; ``-`` when absent, ``?`` when not a time."""
    if t is None:
        return "-"
    try:
        return datetime.fromtimestamp(float(t), tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"


def _num(v: Any) -> str:
    try:
        return f"{float(v):.4g}"
    except (TypeError, ValueError):
        return "-"


def format_row(doc: dict[str, Any], kind: str, received: float, retained: bool = False, color: bool = False) -> str:
    """One alert (``kind`` "alert"), state ("state"), operating state ("operating") or sensor fault ("sensor")
    document as a table row under :data:`HEADER`."""
    state = str(doc.get("state", "?"))[:8]
    if kind == ALERT and doc.get("event") == "update":
        state = "update"  # schema 2: a raised alert whose top channels or severity changed
    elif kind == OPERATING and doc.get("state") == "out_of_distribution":
        state = OOD_CELL
    cell = f"{state:<8}"
    if color and state in COLOURS:
        cell = f"{COLOURS[state]}{cell}{RESET}"
    if kind == SENSOR:  # a sensor fault: which channel, what kind, the value it was seen at
        stream, score, thr = doc.get("since"), "-", "-"
        value = "" if doc.get("value") is None else f" at {_num(doc.get('value'))}"
        what = f"{doc.get('channel') or 'device'} {doc.get('kind', '?')}"  # a stale device has no channel
        why = doc.get("reason") or doc.get("detail")  # why it cleared; what a rejected device sends wrong
        tail = f"{what}: {why}" if why else f"{what}{value}"
    elif kind == OPERATING:  # since: the device time the state began at
        stream, score, thr = doc.get("since"), "-", "-"
        tail = f"{doc.get('state', '?')}" + (f": {doc['reason']}" if doc.get("reason") else "")
        tail = ("retained, " if retained else "") + tail.replace("\n", " ")[:200]
    elif kind == ALERT:
        stream, score, thr = doc.get("window_end"), _num(doc.get("score")), _num(doc.get("threshold"))
        tops = doc.get("top_channels")
        summary = doc.get("summary")
        if isinstance(summary, str) and summary:  # schema 2: the one line a person reads
            tail = summary.replace("\n", " ")[:200]
        else:
            tail = ", ".join(f"{t.get('name')} {_share(t.get('share'))}" for t in tops if isinstance(t, dict)) \
                if isinstance(tops, list) else ""
    else:
        stream, score, thr = None, "-", "-"
        tail = ("retained, " if retained else "") + f"since {fmt_time(doc.get('since'))} (daemon clock)"
    gateway = str(doc.get("instance") or "-")  # whole (a longer one shifts the row): `feedback --instance` takes it
    return (f"{kind:<9}  {fmt_time(stream):<19}  {fmt_time(received):<19}  {str(doc.get('device', '?'))[:20]:<20} "
            f"{gateway:<14} {cell} {score:>9} {thr:>9} {doc.get('seq', '')!s:>4}  {tail}")


def _share(v: Any) -> str:
    try:
        return f"{float(v):.0%}"
    except (TypeError, ValueError):
        return "?"


def json_line(topic: str, doc: dict[str, Any], kind: str, received: float, retained: bool) -> str:
    """One message as a JSON line: the document with ``topic``, ``row`` (alert, state, operating or sensor),
    ``kind`` (the same; a sensor fault's own ``kind``, missing ... rejected, in its place), ``received`` and
    ``retained`` first."""
    return json.dumps({"topic": topic, "row": kind, "kind": kind, "received": round(received, 3), "retained": retained,
                       **doc})


class Subscription:
    """One MQTT client subscribed to ``filters``; ``on_message(topic, payload, retained)`` in paho's thread.

    Disconnects after the first connect go to ``notify(line)`` and are retried with backoff; :meth:`close`
    ends it without a "lost the connection" notice. ``connected`` tells whether the link is up now.
    """

    def __init__(self, cfg: Config, filters: list[tuple[str, int]],
                 on_message: Callable[[str, bytes, bool], None], notify: Callable[[str], None],
                 client_prefix: str = "edgewatch-alerts") -> None:
        self.addr = parse_broker_url(cfg.broker)
        self.where = str(self.addr)
        self.filters = filters
        self.notify = notify
        self.connected = False
        self.ever_connected = False
        self.closing = False
        self.client = make_client(self.addr, client_options(cfg, f"{client_prefix}-{uuid.uuid4().hex[:8]}",
                                                            persistent=False))
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_message = lambda c, u, m: on_message(m.topic, bytes(m.payload), bool(m.retain))
        self._keepalive = cfg.keepalive_s

    def start(self) -> Subscription:
        """Connect (raises :class:`WatchError` with one line when the first connection fails) and run."""
        try:
            connect(self.addr, ClientOptions(), self._keepalive, CONNECT_TIMEOUT_S, client=self.client)
        except MqttConnectError as exc:
            err = WatchError(str(exc))
            err.exit_code = exc.exit_code  # 69, or 78 for a refused login
            raise err from None
        return self

    def close(self) -> None:
        self.closing = True
        self.client.disconnect()
        self.client.loop_stop()
        self.connected = False

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self.notify(f"broker {self.where} refused the connection: {reason_code}; retrying")
            return
        client.subscribe(self.filters)
        again = self.ever_connected
        self.connected = self.ever_connected = True
        if again:
            self.notify(f"reconnected to broker {self.where}")

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        was, self.connected = self.connected, False
        if was and not self.closing:
            self.notify(f"lost the connection to broker {self.where} ({reason_code}); reconnecting")

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        # paho calls this from inside its ``except OSError`` on a failed reconnect
        if not self.closing:
            self.notify(f"cannot connect to broker {self.where}: {describe_connect_error(sys.exc_info()[1])}; retrying")


def decode_doc(payload: bytes | bytearray) -> tuple[dict[str, Any] | None, str]:
    """A JSON object document, or None and why not (one short phrase)."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"not JSON ({str(exc)[:60]})"
    except RecursionError:  # e.g. 100,000 nested '[': it must not end paho's network thread
        return None, "not JSON (nested too deep)"
    if not isinstance(doc, dict):
        return None, f"a JSON {type(doc).__name__}, not an object"
    return doc, ""


class SkipLog:
    """Malformed messages: counted, one notice line per topic filter per ``every_s`` seconds."""

    def __init__(self, notify: Callable[[str], None], every_s: float = 10.0) -> None:
        self.notify = notify
        self.every_s = every_s
        self.count = 0
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def skip(self, topic: str, why: str) -> None:
        now = time.monotonic()
        with self._lock:
            self.count += 1
            key = topic.split("/", 1)[0]
            if now - self._last.get(key, -1e18) < self.every_s:
                return
            self._last[key] = now
            n = self.count
        self.notify(f"skipped a malformed message on {topic}: {why} ({n} skipped so far)")


def watch_alerts(
    cfg: Config,
    emit: Callable[[str, dict[str, Any], str, float, bool], None],
    include_state: bool = False,
    include_sensors: bool = False,
    count: int = 0,
    timeout: float = 0.0,
    notify: Callable[[str], None] | None = None,
) -> int:
    """Subscribe to ``cfg.alert_topic`` (with ``include_state`` the state and operating topics, with
    ``include_sensors`` the sensor-fault topic ``cfg.sensor_topic``); show each document.

    ``emit(topic, doc, kind, received, retained)`` is called once per shown document (``kind``: "alert",
    "state", "operating" or "sensor", ``received`` epoch s). Returns after ``count`` shown documents (0: no limit) or ``timeout``
    seconds (0: none) with the number shown. Malformed messages are skipped, counted and noted through
    ``notify(line)`` (default: a log warning), as are later disconnects (retried with backoff).
    Raises :class:`WatchError` when the first connection fails (refused, unreachable, bad login, TLS,
    no answer within 10 s).
    """
    notify = notify or log.warning
    inbox: queue.Queue[tuple[str, bytes, bool, float]] = queue.Queue()
    filters = [(cfg.alert_topic.replace("{device}", "+"), 1)]
    state_filter = cfg.state_topic.replace("{device}", "+")
    operating_filter = cfg.operating_topic.replace("{device}", "+")
    if include_state:
        filters += [(state_filter, 1), (operating_filter, 1)]
    sensor_filter = cfg.sensor_topic.replace("{device}", "+")
    if include_sensors:
        filters.append((sensor_filter, 1))
    sub = Subscription(cfg, filters, lambda t, p, r: inbox.put((t, p, r, time.time())), notify).start()
    skips = SkipLog(notify)
    kind_of = _kind_of(cfg.alert_topic, state_filter, sensor_filter if include_sensors else None,
                       operating_filter if include_state else None)
    try:
        return _consume(inbox, emit, count, timeout, kind_of, skips)
    finally:
        sub.close()
        if skips.count:
            notify(f"{skips.count} malformed message(s) skipped in all")


def _matches(topic: str, filt: str) -> bool:
    """Does ``topic`` match the one-level-wildcard filter ``filt``?"""
    parts, levels = topic.split("/"), filt.split("/")
    return len(parts) == len(levels) and all(lv in ("+", p) for p, lv in zip(parts, levels, strict=True))


def _kind_of(alert_template: str, state_filter: str, sensor_filter: str | None = None,
             operating_filter: str | None = None) -> Callable[[str], str]:
    """``topic -> "sensor" | "operating" | "state" | "alert"``: the sensor and operating filters' topics first,
    then the state filter's by the number of levels and its literal levels."""
    levels = state_filter.split("/")

    def kind(topic: str) -> str:
        if sensor_filter is not None and _matches(topic, sensor_filter):
            return SENSOR
        if operating_filter is not None and _matches(topic, operating_filter):
            return OPERATING
        parts = topic.split("/")
        if len(parts) == len(levels) and all(lv in ("+", p) for p, lv in zip(parts, levels, strict=True)) \
                and len(levels) != len(alert_template.split("/")):
            return STATE
        return ALERT

    return kind


def _consume(
    inbox: queue.Queue[tuple[str, bytes, bool, float]], emit: Callable[[str, dict[str, Any], str, float, bool], None],
    count: int, timeout: float, kind_of: Callable[[str], str], skips: SkipLog,
) -> int:
    """Emit JSON-object messages from ``inbox`` until ``count`` shown or ``timeout`` s; the number shown."""
    deadline = time.monotonic() + timeout if timeout else float("inf")
    shown = 0
    while not count or shown < count:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            topic, payload, retained, received = inbox.get(timeout=min(left, 0.5))
        except queue.Empty:
            continue
        if not payload:  # an empty retained message deletes a state: nothing to show
            continue
        doc, why = decode_doc(payload)
        if doc is None:
            skips.skip(topic, why)
            continue
        emit(topic, doc, kind_of(topic), received, retained)
        shown += 1
    return shown
