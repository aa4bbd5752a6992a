"""edgewatch's paho client: the read-buffered socket (pure), the shape of the paho internals it relies on,
and the client against a real Mosquitto."""

from __future__ import annotations

import collections
import inspect
import socket
import threading
import time
import uuid

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_runtime.service.paho_buffered import (
    READ_SIZE,
    BufferedClient,
    BufferedSocket,
    buffering_supported,
    unacknowledged,
)
from tests.edge_runtime.mqtt_helpers import Collector, wait_until


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_small_reads_come_from_one_buffered_recv(pair) -> None:
    a, b = pair
    calls: list[int] = []

    class Counting:
        def recv(self, n: int) -> bytes:
            calls.append(n)
            return b.recv(n)

    s = BufferedSocket(Counting())
    a.sendall(b"\x30\x05hello\x30\x03abc")
    time.sleep(0.05)
    assert s.recv(1) == b"\x30"
    assert s.pending() == 11
    assert s.recv(1) == b"\x05"
    assert s.recv(5) == b"hello"
    assert s.recv(1) == b"\x30" and s.recv(1) == b"\x03"
    assert s.recv(10) == b"abc"  # fewer than asked: what is buffered, as a socket returns what it has
    assert calls == [READ_SIZE]  # one system call for two packets
    assert s.pending() == 0


def test_empty_buffer_raises_like_the_socket_and_eof_is_empty(pair) -> None:
    a, b = pair
    s = BufferedSocket(b)
    with pytest.raises(BlockingIOError):
        s.recv(1)
    a.sendall(b"xy")
    time.sleep(0.05)
    assert s.recv(1) == b"x" and s.recv(1) == b"y"
    a.close()
    time.sleep(0.05)
    assert s.recv(1) == b""


def test_everything_else_goes_to_the_socket(pair) -> None:
    a, b = pair
    s = BufferedSocket(b)
    assert s.fileno() == b.fileno()
    assert s.send(b"ping") == 4
    assert a.recv(4) == b"ping"
    assert s.getsockname() == b.getsockname()  # through __getattr__
    s.close()
    assert b.fileno() == -1


def test_this_paho_has_what_the_client_builds_on() -> None:
    """Fails when an upgraded paho-mqtt drops the internals BufferedClient overrides (the daemon would fall back)."""
    assert buffering_supported()


# What paho_buffered.py touches of paho's private surface, as paho-mqtt 2.2 has it: (name, kind, default).
P = inspect.Parameter
PRIVATE_SIGNATURES = {
    "_create_socket": [("self", P.POSITIONAL_OR_KEYWORD, P.empty)],
    "_packet_queue": [("self", P.POSITIONAL_OR_KEYWORD, P.empty), ("command", P.POSITIONAL_OR_KEYWORD, P.empty),
                      ("packet", P.POSITIONAL_OR_KEYWORD, P.empty), ("mid", P.POSITIONAL_OR_KEYWORD, P.empty),
                      ("qos", P.POSITIONAL_OR_KEYWORD, P.empty), ("info", P.POSITIONAL_OR_KEYWORD, None)],
    "_call_socket_register_write": [("self", P.POSITIONAL_OR_KEYWORD, P.empty)],
    "loop_read": [("self", P.POSITIONAL_OR_KEYWORD, P.empty), ("max_packets", P.POSITIONAL_OR_KEYWORD, 1)],
    "loop_write": [("self", P.POSITIONAL_OR_KEYWORD, P.empty)],
}
PRIVATE_ATTRIBUTES = {  # attribute -> the types it may hold on a client that is not connected
    "_sock": (type(None),), "_thread": (type(None),), "_transport": (str,), "_out_packet": (collections.deque,),
    "_out_messages": (collections.OrderedDict, dict),
}
OUT_PACKET_KEYS = {"command", "mid", "qos", "pos", "to_process", "packet", "info"}


@pytest.mark.parametrize("name", sorted(PRIVATE_SIGNATURES))
def test_paho_private_methods_keep_their_signatures(name: str) -> None:
    """A paho release that renames, reorders or re-defaults what BufferedClient overrides fails here (widen the
    pin in pyproject only together with this table)."""
    sig = inspect.signature(getattr(paho.Client, name))
    assert [(p.name, p.kind, p.default) for p in sig.parameters.values()] == PRIVATE_SIGNATURES[name]


def test_paho_private_attributes_keep_their_types() -> None:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="shape")
    for attr, types in PRIVATE_ATTRIBUTES.items():
        assert isinstance(getattr(c, attr), types), (attr, type(getattr(c, attr)))
    assert unacknowledged(c) == 0


def test_paho_queues_packets_as_the_network_thread_shortcut_writes_them() -> None:
    """BufferedClient._packet_queue appends the same dict paho's own does (on the network thread, without the
    wake-up byte): paho's entry has exactly these keys, and ours are taken by paho's loop_write."""
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="shape")
    c._packet_queue(0x30, b"\x00\x01t", 0, 0, None)
    assert set(c._out_packet[-1]) == OUT_PACKET_KEYS
    b = BufferedClient(CallbackAPIVersion.VERSION2, client_id="shape")
    b._thread = threading.current_thread()  # as if called on its network thread
    b._packet_queue(0x30, b"\x00\x01t", 0, 0, None)
    assert set(b._out_packet[-1]) == OUT_PACKET_KEYS
    assert b._out_packet[-1]["to_process"] == 3 and b._out_packet[-1]["pos"] == 0


def _subscriber(port: int, client_id: str, got: list[bytes], threads: set[str], hooks: list[str]) -> BufferedClient:
    c = BufferedClient(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    ready = threading.Event()
    c.on_connect = lambda cl, *a: cl.subscribe("t/#", 1)
    c.on_subscribe = lambda *a: ready.set()

    def on_message(cl, userdata, msg) -> None:
        got.append(msg.payload)
        threads.add(threading.current_thread().name)
        if msg.payload == b"echo":  # publishing from the network thread: no wake-up byte, still sent
            cl.publish("echo/back", b"from-network-thread", qos=1)

    c.on_message = on_message
    c.after_read = lambda: hooks.append(threading.current_thread().name)
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert ready.wait(10)
    return c


def test_client_receives_acks_and_publishes_on_a_real_broker(mosquitto) -> None:
    cid = f"buffered-{uuid.uuid4().hex[:6]}"
    got: list[bytes] = []
    threads: set[str] = set()
    hooks: list[str] = []
    col = Collector(mosquitto.port, ["echo/#"])
    sub = _subscriber(mosquitto.port, cid, got, threads, hooks)
    sock = sub.socket()
    assert isinstance(sock, BufferedSocket)
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    pub = paho.Client(CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    n = 3000
    for i in range(n):
        pub.publish("t/x", f"m{i:05d}".encode(), qos=1)
    pub.publish("t/x", b"echo", qos=1).wait_for_publish(10)
    wait_until(lambda: len(got) == n + 1, 20, "all messages")
    assert got[:n] == [f"m{i:05d}".encode() for i in range(n)]  # complete and in order
    wait_until(lambda: any(t == "echo/back" for t, _, _ in col.messages), 5, "publish from the network thread")
    threading.Thread(target=lambda: sub.publish("echo/back", b"from-other-thread", qos=1), daemon=True).start()
    wait_until(lambda: sum(t == "echo/back" for t, _, _ in col.messages) == 2, 5, "publish from another thread")
    assert hooks and set(hooks) == threads  # after_read runs on the network thread, after reads
    sub.disconnect()
    sub.loop_stop()
    # every message was acknowledged: the persistent session has nothing to redeliver
    again: list[bytes] = []
    sub2 = _subscriber(mosquitto.port, cid, again, set(), [])
    time.sleep(1.0)
    assert again == []
    sub2.disconnect()
    sub2.loop_stop()
    pub.disconnect()
    pub.loop_stop()
    col.close()


def test_a_failing_after_read_hook_does_not_stop_the_network_thread(mosquitto, caplog) -> None:
    got: list[bytes] = []
    sub = _subscriber(mosquitto.port, f"hook-{uuid.uuid4().hex[:6]}", got, set(), [])

    def broken() -> None:
        raise RuntimeError("boom")

    sub.after_read = broken
    pub = paho.Client(CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    for i in range(50):
        pub.publish("t/x", f"m{i}".encode(), qos=1)
    wait_until(lambda: len(got) == 50, 10, "messages after hook failures")
    assert "error in the after-read hook" in caplog.text
    assert sub._thread is not None and sub._thread.is_alive()
    for c in (sub, pub):
        c.disconnect()
        c.loop_stop()
