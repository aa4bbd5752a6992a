"""paho-mqtt with fewer system calls per received message: a read-buffered socket and no self-wake-ups.

A profile of a bare paho-mqtt 2.2 QoS 1 subscriber (benchmarks/PROFILE.md) spends most of its time in
system calls, about seven per message: ``select``; three or four small ``recv`` calls (the command
byte, each byte of the remaining length, then the body); the PUBACK ``send``; and a one-byte write to
its own wake-up socket pair (plus the ``recv`` that drains it), made because the PUBACK is queued as
if from another thread although the network thread itself queues it.

:class:`BufferedClient` is ``paho.mqtt.client.Client`` with three changes, none in the protocol:

- :class:`BufferedSocket` wraps the connected socket, reads up to 64 KiB at a time and serves paho's
  small reads from that buffer; paho's hook for TLS, ``pending()``, tells its loop about buffered bytes.
- ``loop_read`` goes on while bytes are buffered (at most MAX_BURST more calls), so a burst of messages costs one
  ``select`` and one ``recv``; their PUBACKs (and whatever ``after_read`` published) are written right
  after, not after the next read burst as paho's loop would.
- ``_packet_queue`` skips the wake-up byte when called on the network thread: that thread is not
  waiting in ``select``, and its next loop iteration writes what is queued.

It also offers ``after_read``: a callable run on the network thread after each burst of packets
(the daemon's ``inline`` batching, chosen in :mod:`edge_runtime.service.daemon`, scores there the windows
the burst completed).

It relies on paho-mqtt 2.x internals (``_create_socket``, ``_packet_queue``, ``_call_socket_register_write``,
``_sock``, ``_out_packet``, ``_thread``, ``_transport``) and :func:`unacknowledged` reads ``_out_messages``:
this file is the only place that touches paho's private surface. pyproject pins paho-mqtt to the minor
versions this is tested with, and tests/edge_runtime/service/test_paho_buffered.py fails when that surface
changes shape (names, signatures, attribute types); where :func:`buffering_supported` is False the
daemon uses paho's plain client.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

log = logging.getLogger(__name__)

READ_SIZE = 65536
MAX_BURST = 256  # extra paho loop_read calls (a packet each, typically) per burst, so pings and writes get their turn


class BufferedSocket:
    """``recv`` served from a 64 KiB read-ahead buffer; everything else goes to the wrapped socket."""

    __slots__ = ("_sock", "_buf", "_pos")

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, bufsize: int) -> bytes:
        """Up to ``bufsize`` bytes: from the buffer, else one ``recv`` of up to 64 KiB.

        Raises what the socket raises (``BlockingIOError``, ``ssl.SSLWantReadError``, ...) when nothing
        is buffered and nothing can be read; returns ``b""`` at end of stream, as a socket does.
        """
        pos = self._pos
        buf = self._buf
        if pos >= len(buf):
            buf = self._sock.recv(READ_SIZE if bufsize < READ_SIZE else bufsize)
            if not buf:
                return buf
            self._buf = buf
            pos = 0
        end = pos + bufsize
        self._pos = end
        if pos == 0 and end >= len(buf):
            return buf
        return buf[pos:end]

    def pending(self) -> int:
        """Bytes readable without the network: this buffer plus the TLS layer's own."""
        own = len(self._buf) - self._pos
        inner = getattr(self._sock, "pending", None)
        return (own if own > 0 else 0) + (inner() if inner is not None else 0)

    def fileno(self) -> int:
        return self._sock.fileno()

    def send(self, data: Any, *flags: int) -> int:
        return self._sock.send(data, *flags)

    def close(self) -> None:
        self._buf = b""
        self._pos = 0
        self._sock.close()

    def __getattr__(self, name: str) -> Any:  # setblocking, setsockopt, getpeername, ...
        return getattr(self._sock, name)


def set_nodelay(sock: Any) -> None:
    """TCP_NODELAY on a TCP socket (TLS or plain): small packets (an alert, a PUBACK) leave at once.

    With Nagle's algorithm on (paho's default), a small write waits while an earlier one is unacknowledged,
    and the broker delays its ACK by up to 40 ms: alerts arrived ~40 ms late (benchmarks/PROFILE.md).
    """
    try:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass


def unacknowledged(client: paho.Client) -> int:
    """QoS 1/2 messages ``client`` sent that the broker has not acknowledged yet (paho has no public count)."""
    return len(client._out_messages)


def network_thread_alive(client: paho.Client) -> bool:
    """Is ``client``'s network thread (``loop_start``) still running? paho has no public way to ask."""
    thread = client._thread
    return thread is not None and thread.is_alive()


def buffering_supported() -> bool:
    """Does this paho-mqtt have the internals :class:`BufferedClient` builds on (paho-mqtt 2.x)?"""
    c = paho.Client
    return all(callable(getattr(c, m, None)) for m in ("_create_socket", "_packet_queue", "loop_read",
                                                         "_call_socket_register_write"))


class BufferedClient(paho.Client):
    """paho's client with a read-buffered connection (TCP, TLS, unix; not websockets) and no self-wake-ups."""

    after_read: Callable[[], None] | None = None  # run on the network thread after each read burst
    reading = False  # a read burst is in progress (the inline sweep stands back meanwhile)

    def _create_socket(self) -> Any:  # paho-mqtt 2.x
        sock = super()._create_socket()
        if getattr(self, "_transport", "tcp") == "websockets":
            return sock
        set_nodelay(sock)
        return BufferedSocket(sock)

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """paho's ``loop_read``, repeated while bytes are buffered (at most MAX_BURST more calls), then the
        ``after_read`` hook, then the queued writes."""
        self.reading = True
        try:
            rc = super().loop_read(max_packets)
            for _ in range(MAX_BURST):
                sock = self._sock
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or type(sock) is not BufferedSocket or sock.pending() <= 0:
                    break
                rc = super().loop_read(max_packets)
        finally:
            self.reading = False
        hook = self.after_read
        if hook is not None:
            try:
                hook()
            except Exception:  # never let the hook end paho's network thread (no more reads or reconnects)
                log.exception("error in the after-read hook")
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._out_packet and self._sock is not None:
            rc = self.loop_write()  # PUBACKs and what the hook published leave now, not after the next read burst
        return rc

    def _packet_queue(self, command: int, packet: bytes | bytearray, mid: int, qos: int,
                      info: paho.MQTTMessageInfo | None = None) -> MQTTErrorCode:
        """paho 2.x's ``_packet_queue``, without the wake-up byte when the network thread queues."""
        if self._thread is None or threading.current_thread() is not self._thread:
            return super()._packet_queue(command, packet, mid, qos, info)
        self._out_packet.append({"command": command, "mid": mid, "qos": qos, "pos": 0,
                                 "to_process": len(packet), "packet": packet, "info": info})
        self._call_socket_register_write()
        return MQTTErrorCode.MQTT_ERR_SUCCESS
