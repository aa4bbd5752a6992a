"""Issue 20 (10): idle clients of ``/metrics`` cannot pile up threads (a thread each, no timeout, before)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.request

import pytest

from edge_runtime.integrations.metrics_http import MAX_CONNECTIONS, start_metrics_server
from edge_runtime.pipeline.stats import Stats

pytest.importorskip("prometheus_client")

IDLE_CLIENTS = 80  # past the systemd unit's TasksMax=64 with the daemon's own threads


def _idle_sockets(port: int, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /metrics HTTP/1.1\r\n")  # a request that never ends
        socks.append(s)
    return socks


def test_idle_clients_hold_at_most_max_connections_threads(figure) -> None:
    stats = Stats()
    server = start_metrics_server(stats.snapshot, 0)  # the daemon's defaults
    before = threading.active_count()
    socks = _idle_sockets(server.port, IDLE_CLIENTS)
    try:
        time.sleep(0.5)
        grown = threading.active_count() - before
        figure("metrics_idle_clients", clients=IDLE_CLIENTS, threads_added=grown, cap=MAX_CONNECTIONS,
               refused=server.refused)
        assert grown <= MAX_CONNECTIONS, f"{IDLE_CLIENTS} idle clients started {grown} threads"
        assert server.refused > 0  # the others were closed unserved (or still wait in the listen backlog)
    finally:
        for s in socks:
            s.close()
        server.close()


def test_idle_clients_time_out_and_scrapes_work_again() -> None:
    stats = Stats()
    server = start_metrics_server(stats.snapshot, 0, timeout_s=1.0)
    socks = _idle_sockets(server.port, MAX_CONNECTIONS)
    try:
        t0 = time.monotonic()
        for s in socks:  # the server closes each idle connection: recv sees the end (a hang raises timeout)
            s.settimeout(5)
            with contextlib.suppress(ConnectionResetError):
                assert s.recv(4096) in (b"",)
        assert time.monotonic() - t0 < 4
        time.sleep(0.2)  # the handler threads release their slots
        text = urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5).read().decode()
        assert "edgewatch_messages_total" in text
    finally:
        for s in socks:
            s.close()
        server.close()


def test_a_client_that_leaves_mid_answer_is_no_traceback(capsys) -> None:
    stats = Stats()
    server = start_metrics_server(stats.snapshot, 0)
    try:
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close
            s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            s.close()
        time.sleep(0.5)
        text = urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5).read().decode()
        assert "edgewatch_messages_total" in text
    finally:
        server.close()
    assert "Traceback" not in capsys.readouterr().err
