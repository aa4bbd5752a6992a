"""The MQTT connection: the broker URL, the one paho client factory, and the daemon's link.

:func:`parse_broker_url` and :func:`make_client` (options in :class:`ClientOptions`) are used by the daemon,
``edgewatch alerts``, simulate, replay, the demo, the lab and the tests; :func:`connect` adds a
synchronous connect with one clear error line. Credentials never go in the URL (``user:pass@`` is refused
everywhere). Every paho private access is in :mod:`edge_runtime.service.paho_buffered`.

The daemon's link (:class:`MqttLink`): persistent session, reconnect, TLS, auth, Last Will, publish.

paho-mqtt 2.x with the VERSION2 callback API; MQTT 3.1.1 or 5. Sensor topics are
subscribed with QoS 1 on a persistent session (a stable client id,
``clean_session``/``clean_start`` false, MQTT 5 session expiry), so the broker
queues sensor data across short disconnects. paho's network thread reconnects
with backoff and resends queued QoS 1 publishes; the outgoing queue is bounded
(``max_outgoing``); what it refuses the publisher
(:mod:`edge_runtime.service.publisher`) retries or counts. The password is never logged.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_runtime.clierror import EXIT_CONFIG, EXIT_UNAVAILABLE
from edge_runtime.config import Config, ConfigError
from edge_runtime.pipeline.documents import offline_doc, to_json
from edge_runtime.pipeline.stats import RateLimitedLog, Stats
from edge_runtime.service.paho_buffered import (
    BufferedClient,
    buffering_supported,
    network_thread_alive,
    unacknowledged,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class BrokerUrlError(ConfigError):
    """A broker URL that is not ``mqtt://host[:port]`` / ``mqtts://host[:port]``."""


class MqttConnectError(RuntimeError):
    """The first connection failed (refused, unreachable, bad login, TLS, no answer): one line saying why.
    Exit code: unavailable (retry later), or a configuration error when the broker refused the login."""

    exit_code = EXIT_UNAVAILABLE


LOGIN_REFUSED = (134, 135)  # CONNACK: bad user name or password, not authorized (paho maps 3.1.1's 4, 5 to them)


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://host[:port]`` or ``mqtts://host[:port]`` (a bare ``host[:port]`` is ``mqtt://``) -> address
    (default ports 1883 / 8883). ``user:password@`` is refused: credentials go in their own options."""
    try:
        parts = urlsplit(url if "://" in url else f"mqtt://{url}")
        port = parts.port
    except ValueError as exc:
        raise BrokerUrlError(f"broker URL {url!r}: {exc}") from None
    if parts.scheme not in ("mqtt", "mqtts"):
        raise BrokerUrlError(f"broker URL {url!r}: the scheme must be mqtt:// or mqtts://")
    if not parts.hostname:
        raise BrokerUrlError(f"broker URL {url!r}: no host (use mqtt://host:1883 or mqtts://host:8883)")
    if parts.username or parts.password:
        raise BrokerUrlError("broker URL: put credentials in the username / password-file options, not in the URL")
    tls = parts.scheme == "mqtts"
    return BrokerAddress(parts.hostname, port or (8883 if tls else 1883), tls)


def describe_connect_error(exc: BaseException | None) -> str:
    """One line on why a connection attempt failed, naming TLS problems as such."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: the broker's certificate is not trusted (certificate verify failed: {exc.verify_message}); check mqtt.ca_file"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or str(exc)
        return f"TLS handshake failed ({reason}); check mqtt.cert_file / key_file and their validity"
    if exc is None:
        return "connection failed"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused: is a broker listening there? (check the broker address and port)"
    return f"{type(exc).__name__}: {exc}"


class _PahoErrors:
    """Stands in for paho's logger: keeps the last error line, formats nothing else (hot path)."""

    def __init__(self) -> None:
        self.last = ""

    def log(self, level: int, fmt: str, *args: object) -> None:
        if level >= logging.ERROR:
            self.last = fmt % args


@dataclass(frozen=True)
class ClientOptions:
    """How to build a client: session, protocol, auth, TLS, backoff, queue bounds."""

    client_id: str = ""
    persistent: bool = False  # a persistent session (clean_session / clean_start false)
    protocol: str = "3.1.1"  # or "5"
    username: str = ""
    password: str | None = field(default=None, repr=False)
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 30.0
    max_queued: int = 0  # paho's outgoing queue bound; 0: unbounded
    max_inflight: int = 100
    buffered: bool = True  # edgewatch's read-buffered client (paho_buffered) where this paho supports it


def client_options(cfg: Config, client_id: str, persistent: bool) -> ClientOptions:
    """The daemon's (and ``edgewatch alerts``') options from the ``[mqtt]`` configuration."""
    return ClientOptions(
        client_id=client_id, persistent=persistent, protocol=cfg.protocol, username=cfg.username,
        password=cfg.resolve_password() if cfg.username else None, ca_file=cfg.ca_file, cert_file=cfg.cert_file,
        key_file=cfg.key_file, reconnect_min_s=cfg.reconnect_min_s, reconnect_max_s=cfg.reconnect_max_s,
        max_queued=cfg.max_outgoing,
    )


def make_client(addr: BrokerAddress, opts: ClientOptions) -> paho.Client:
    """A configured (not yet connected) paho client: protocol, session, auth, TLS, backoff, queue bound."""
    v5 = opts.protocol == "5"
    client_class = BufferedClient if opts.buffered and buffering_supported() else paho.Client
    client = client_class(
        CallbackAPIVersion.VERSION2,
        client_id=opts.client_id,
        clean_session=None if v5 else not opts.persistent,
        protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
    )
    if opts.username:
        client.username_pw_set(opts.username, opts.password)
    if addr.tls or opts.ca_file:
        try:
            client.tls_set(
                ca_certs=opts.ca_file or None,
                certfile=opts.cert_file or None,
                keyfile=opts.key_file or None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"mqtt.ca_file/cert_file/key_file: cannot load TLS files: {exc}") from None
        client.tls_insecure_set(False)
    client.reconnect_delay_set(min_delay=max(1, round(opts.reconnect_min_s)), max_delay=max(1, round(opts.reconnect_max_s)))
    client.max_queued_messages_set(opts.max_queued)
    client.max_inflight_messages_set(opts.max_inflight)
    return client


def connect(addr: BrokerAddress, opts: ClientOptions, keepalive: int = 30, timeout: float = 10.0,
            client: paho.Client | None = None) -> paho.Client:
    """:func:`make_client` (or ``client``, its callbacks set), connected, its network loop running.

    Raises :class:`MqttConnectError` (one line) when the broker is unreachable, refuses us, closes the
    connection before accepting it (e.g. a rejected client certificate) or does not answer within ``timeout``
    s. The client's own ``on_connect`` runs for an accepted connect (and every reconnect); its
    ``on_connect_fail`` / ``on_disconnect`` only once the first connect has settled.
    """
    client = client or make_client(addr, opts)
    settled = threading.Event()
    failure: list[str] = []
    refused_login: list[bool] = []  # the broker refused the account: a configuration error, not "retry later"
    # (typed Any: paho types these callbacks as a union over its callback API versions)
    user_connect: Any = client.on_connect
    user_fail: Any = client.on_connect_fail
    user_disconnect: Any = client.on_disconnect

    def fail(why: str) -> bool:
        if settled.is_set():
            return False
        failure.append(why)
        settled.set()
        return True

    def on_connect(c: paho.Client, u: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure and getattr(reason, "value", None) in LOGIN_REFUSED:
            refused_login.append(True)
        if reason.is_failure and (fail(f"broker {addr} refused the connection: {reason}") or user_connect is None):
            return
        if user_connect is not None:
            user_connect(c, u, flags, reason, props)
        settled.set()

    def on_connect_fail(c: paho.Client, u: Any) -> None:
        # paho calls this from inside its ``except OSError``: the exception tells TLS from network trouble
        if not fail(f"cannot connect to broker {addr}: {describe_connect_error(sys.exc_info()[1])}") and user_fail:
            user_fail(c, u)

    def on_disconnect(c: paho.Client, u: Any, flags: Any, reason: Any, props: Any) -> None:
        if not fail(f"broker {addr} closed the connection before accepting it ({reason})") and user_disconnect:
            user_disconnect(c, u, flags, reason, props)

    client.on_connect, client.on_connect_fail, client.on_disconnect = on_connect, on_connect_fail, on_disconnect
    try:
        client.connect(addr.host, addr.port, keepalive)  # the TCP (and TLS) part, synchronously
    except OSError as exc:
        raise MqttConnectError(f"cannot connect to broker {addr}: {describe_connect_error(exc)}") from None
    client.loop_start()
    if not settled.wait(timeout):
        fail(f"broker {addr} did not answer the connection within {timeout:.0f} s")
    if failure:
        client.disconnect()
        client.loop_stop()
        err = MqttConnectError(failure[0])
        if refused_login:
            err.exit_code = EXIT_CONFIG
        raise err
    return client


class MqttLink:
    """One connection that subscribes to ``filters`` and publishes alerts, state, status and stats.

    ``on_message(topic, payload)`` runs on paho's network thread and must not block.
    ``status_topic`` gets a retained ``online`` document on every connect and
    ``offline`` as the Last Will and on :meth:`close`. ``after_read`` (inline batching, the daemon's
    choice) runs on the network thread after each burst of received packets; it needs edgewatch's
    buffered client (:attr:`inline` says whether it got one).
    """

    def __init__(
        self,
        cfg: Config,
        filters: list[str],
        on_message: Callable[[str, bytes | bytearray], None],
        status_topic: str,
        online_doc: Callable[[], dict[str, Any]],
        stats: Stats,
        on_connected: Callable[[], None] | None = None,
        state_filter: str | Sequence[str] | None = None,
        on_state: Callable[[str, bytes | bytearray], None] | None = None,
        after_read: Callable[[], None] | None = None,
        on_status: Callable[[bytes | bytearray], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self._on_status = on_status  # our own status topic, read back (another daemon under our name?)
        self.filters = filters
        # Retained alert states of earlier runs: subscribed on connect, unsubscribed at SUBACK,
        # so only the retained copies (sent between the two) reach ``on_state``.
        self.state_filters = ([state_filter] if isinstance(state_filter, str) else list(state_filter or [])) \
            if on_state is not None else []
        self._on_state = on_state
        self._adopt_mid: int | None = None
        self._input_mid: int | None = None  # the subscription to the input filters (and our status topic)
        self._input_subs: list[str] = []
        self._adopting = False
        self._state_topics: dict[str, bool] = {}  # topic -> matches a state filter (see _is_state_topic)
        self.status_topic = status_topic
        self._online_doc = online_doc
        self.stats = stats
        self.addr = parse_broker_url(cfg.broker)
        self.connected = threading.Event()
        self._closing = False
        self._n_connects = 0
        self.reconnected = False  # the last connect was not the first
        self.status_owed = threading.Event()  # the online status at the last connect was refused (the queue full)
        self._rl = RateLimitedLog(log, cfg.log_interval_s)
        self._on_message = on_message
        self._bulk_limit = max(1, cfg.max_outgoing // 2)  # bulk traffic leaves half the queue to alerts and states
        self._on_connected = on_connected
        self.client = client = make_client(self.addr, client_options(cfg, cfg.mqtt_client_id, cfg.persistent_session))
        self.inline = after_read is not None and isinstance(client, BufferedClient)
        if after_read is not None and isinstance(client, BufferedClient):
            client.after_read = after_read
        self.client.manual_ack_set(True)
        self._paho_errors = _PahoErrors()
        self.client.logger = self._paho_errors  # type: ignore[assignment]  # duck-typed: paho only calls .log()
        self.paused = False  # set by the daemon when it stops taking input
        self.client.will_set(status_topic, to_json(offline_doc(cfg.instance_name, "connection lost")),
                             qos=1, retain=True)
        # Every callback behind one guard: paho re-raises a callback's exception on its network thread,
        # which ends that thread (no more reads, no reconnects). on_message carries its own (hot path).
        self.client.on_connect = self._guarded("connect", self._handle_connect)
        self.client.on_disconnect = self._guarded("disconnect", self._handle_disconnect)
        self.client.on_connect_fail = self._guarded("connect_fail", self._handle_connect_fail)
        self.client.on_message = self._handle_message
        self.client.on_subscribe = self._guarded("subscribe", self._handle_subscribe)
        self.client.on_unsubscribe = self._guarded("unsubscribe", self._handle_unsubscribe)

    def _guarded(self, name: str, fn: Callable[..., None]) -> Callable[..., None]:
        """``fn`` as a paho callback that never raises: an exception is counted (``internal_error``) and
        logged at a bounded rate, and paho's network thread carries on."""

        def guarded(*args: Any) -> None:
            try:
                fn(*args)
            except Exception as exc:
                self._callback_error(name, exc)

        return guarded

    def _callback_error(self, name: str, exc: BaseException) -> None:
        self.stats.drop("internal_error")
        self._rl.log(logging.ERROR, "internal_error", "error in the MQTT %s callback (%s: %s); carrying on",
                     name, type(exc).__name__, str(exc)[:200])
        log.debug("%s callback error", name, exc_info=True)

    def network_alive(self) -> bool:
        """False once paho's network thread has ended without :meth:`close` (the daemon then exits non-zero)."""
        return self._closing or network_thread_alive(self.client)

    def reading(self) -> bool:
        """True while the network thread reads a burst (its ``after_read`` scores what the burst completed)."""
        return isinstance(self.client, BufferedClient) and self.client.reading

    def detach_after_read(self) -> None:
        """No more ``after_read`` calls (the daemon takes over scoring while it stops)."""
        if isinstance(self.client, BufferedClient):
            self.client.after_read = None

    def start(self) -> None:
        """Connect in the background; paho's thread keeps reconnecting with backoff."""
        props = None
        kwargs: dict[str, Any] = {}
        if self.cfg.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.cfg.session_expiry_s if self.cfg.persistent_session else 0
            kwargs = {"clean_start": not self.cfg.persistent_session, "properties": props}
        log.info(
            "connecting to %s:%d (%s, MQTT %s, client id %s, %s session)",
            self.addr.host, self.addr.port, "TLS" if self.addr.tls else "plain", self.cfg.protocol,
            self.cfg.mqtt_client_id, "persistent" if self.cfg.persistent_session else "clean",
        )
        self.client.connect_async(self.addr.host, self.addr.port, self.cfg.keepalive_s, **kwargs)
        self.client.loop_start()

    def publish(self, topic: str, payload: str | bytes, qos: int = 1, retain: bool = False,
                bulk: bool = False) -> bool:
        """Queue one message; False when paho's bounded outgoing queue is full, for ``bulk`` (lower
        priority: discovery, scores, stats) already half full, or for QoS 0 while disconnected (paho queues
        only QoS 1). The caller (the publisher) retries or counts it lost; nothing is counted here."""
        if bulk and qos and unacknowledged(self.client) >= self._bulk_limit:
            return False
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE or (qos == 0 and info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN):
            return False
        self.stats.incr("published")
        return True

    def close(self, offline: dict[str, Any], timeout: float = 3.0) -> None:
        """Publish the retained ``offline`` status document, flush QoS 1 messages (bounded wait) and disconnect."""
        self._closing = True
        info = self.client.publish(self.status_topic, to_json(offline), qos=1, retain=True)
        deadline = time.monotonic() + timeout
        if self.connected.is_set() and network_thread_alive(self.client):
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout)
            while (self.client.want_write() or self._pending()) and time.monotonic() < deadline:
                time.sleep(0.02)
        self.client.disconnect()
        self.client.loop_stop()

    def _pending(self) -> int:
        return unacknowledged(self.client)

    # -- paho callbacks (network thread) -----------------------------------------------
    def _handle_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._rl.log(logging.ERROR, "connect_refused", "broker refused the connection: %s", reason_code)
            return
        self._n_connects += 1
        if self._n_connects > 1:
            self.stats.incr("reconnects")
        log.info("connected to %s:%d (session present: %s)", self.addr.host, self.addr.port, flags.session_present)
        self.reconnected = self._n_connects > 1
        self._input_subs = [*self.filters, *([self.status_topic] if self._on_status else [])]
        self._input_mid = client.subscribe([(f, 1) for f in self._input_subs])[1]
        if self.state_filters:
            self._adopting = True
            self._adopt_mid = client.subscribe([(f, 1) for f in self.state_filters])[1]
        if client.publish(self.status_topic, to_json(self._online_doc()), qos=1,
                          retain=True).rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            self.status_owed.set()  # the will said "connection lost": the housekeeping sends it through the publisher
            self._rl.log(logging.WARNING, "status_owed", "outgoing queue full (%d) at connect: the online status "
                         "waits for a retry", self.cfg.max_outgoing)
        # paho calls its logger twice per message (received PUBLISH, sent PUBACK); the error lines are only
        # needed to explain a failed connect, so the logger is off while connected (back on at disconnect).
        client.logger = None
        self.connected.set()
        if self._on_connected is not None:
            self._on_connected()

    def _handle_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        client.logger = self._paho_errors  # explains the next connect's failure
        was = self.connected.is_set()
        self.connected.clear()
        if was and not self._closing:
            log.warning("disconnected from broker (%s); reconnecting with backoff", reason_code)
        elif not self._closing:  # closed before CONNACK: e.g. the broker refused our client certificate
            why = self._paho_errors.last or str(reason_code)
            if "SSL" in why:
                why = f"TLS: {why}; check mqtt.cert_file / key_file and their validity"
            self._rl.log(logging.WARNING, "connect_failed", "connection to broker %s:%d closed before it was "
                         "accepted: %s; retrying with backoff", self.addr.host, self.addr.port, why)
        self._paho_errors.last = ""

    def _handle_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if mid == self._input_mid:
            refused = [f"{f} ({rc})" for f, rc in zip(self._input_subs, reason_codes, strict=False) if rc.is_failure]
            if refused:  # an ACL that denies it: nothing comes on it, which would look like quiet devices
                self.stats.incr("subscriptions_refused", len(refused))
                ours = any(r.startswith(f"{self.status_topic} (") for r in refused)
                self._rl.log(logging.ERROR, "subscription_refused", "the broker refused the subscription to %s "
                             "(ACL? the broker user needs read on it): nothing is received there%s",
                             ", ".join(refused), " (on our own status topic: another daemon under this instance "
                             "name is not noticed)" if ours else "")
            return
        if mid != self._adopt_mid:
            return
        for f, rc in zip(self.state_filters, reason_codes, strict=False):
            if rc.is_failure:
                log.warning("cannot read the retained documents of an earlier run on %s (%s; ACL?): %s", f, rc,
                            "devices left raised by it are not re-adopted" if f == self.state_filters[0] else
                            "devices it left online in Home Assistant stay so until they send")
        client.unsubscribe(self.state_filters)

    def _handle_unsubscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self._adopting = False

    def _handle_connect_fail(self, client, userdata) -> None:
        # paho calls this from inside its ``except OSError``: the exception tells TLS from network trouble
        why = describe_connect_error(sys.exc_info()[1])
        self._rl.log(logging.WARNING, "connect_failed", "cannot connect to broker %s:%d: %s; retrying with backoff",
                     self.addr.host, self.addr.port, why)

    def _is_state_topic(self, topic: str) -> bool:
        """Does ``topic`` match the retained-state filter? Cached per topic (bounded): paho's
        ``topic_matches_sub`` builds a matcher per call, and a backlog can arrive while adopting."""
        hit = self._state_topics.get(topic)
        if hit is None:
            if len(self._state_topics) >= 100_000:
                self._state_topics.clear()
            hit = self._state_topics[topic] = any(paho.topic_matches_sub(f, topic) for f in self.state_filters)
        return hit

    def _handle_message(self, client, userdata, msg: paho.MQTTMessage) -> None:
        # Acknowledged only once handled (manual ack): a message that arrives while we stop is
        # left unacknowledged, and the broker redelivers it to this client id's next session.
        # (The dispatch is inlined here: this runs once per message on paho's thread.)
        if self.paused:
            return
        try:
            try:
                topic = msg.topic
            except UnicodeDecodeError:
                self.stats.incr("messages")
                self.stats.drop("bad_topic")
                return
            if topic == self.status_topic:
                if self._on_status is not None:
                    self._on_status(msg.payload)
                return
            if self._adopting and self._is_state_topic(topic):
                if msg.retain and self._on_state is not None:
                    self._on_state(topic, msg.payload)
                return
            self._on_message(topic, msg.payload)
        except Exception as exc:  # the boundary guard of on_message: one message never ends paho's thread
            self._callback_error("message", exc)
        finally:
            if not self.paused:  # paused while handling (a stop): the message may have been refused as
                client.ack(msg.mid, msg.qos)  # "shutdown"; unacknowledged, the broker redelivers it
