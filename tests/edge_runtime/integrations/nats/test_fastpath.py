"""The pull inboxes' fast path: headers parsed from raw bytes, deliveries taken from nats-py's parser."""

from __future__ import annotations

import asyncio

import nats
import pytest

from edge_runtime.integrations.nats import fastpath
from edge_runtime.tools.localnats import NatsServer


@pytest.mark.parametrize(("raw", "want"), [
    (b"NATS/1.0 408 Request Timeout\r\n\r\n", ("408", "")),
    (b"NATS/1.0 423 Nats-Pin-Id mismatch\r\n\r\n", ("423", "")),  # the description is not the header
    (b"NATS/1.0\r\nNats-Pin-Id: ab12\r\n\r\n", ("", "ab12")),
    (b"NATS/1.0 409 Leadership Change\r\nNats-Pin-Id:x9\r\n\r\n", ("409", "x9")),
    (b"NATS/1.0\r\nOther: 1\r\n\r\n", ("", "")),
    (None, ("", "")),
])
def test_parse_headers_finds_status_and_pin(raw: bytes | None, want: tuple[str, str]) -> None:
    assert fastpath.parse_headers(raw) == want


def test_routed_inbox_gets_deliveries_and_the_others_stay_on_nats_py(nats_server: NatsServer) -> None:
    async def go() -> tuple[bool, list[tuple[str, str, bytes, str, str]], list[bytes]]:
        nc = await nats.connect(nats_server.url)
        got: list[tuple[str, str, bytes, str, str]] = []
        plain: list[bytes] = []

        async def never(msg: object) -> None:
            raise AssertionError("a routed message reached nats-py's callback")

        async def other(msg: nats.aio.msg.Msg) -> None:
            plain.append(msg.data)

        sub = await nc.subscribe("inbox.a", cb=never)
        await nc.subscribe("other", cb=other)
        routed = fastpath.route(nc, sub, lambda *a: got.append(a))
        await nc.publish("inbox.a", b"one", reply="r.1", headers={"Nats-Pin-Id": "p7"})
        await nc.publish("other", b"two")
        await nc.flush()
        await asyncio.sleep(0.2)
        fastpath.unroute(nc, sub)
        await nc.close()
        return routed, got, plain

    routed, got, plain = asyncio.run(go())
    assert routed, "this nats-py no longer allows the fast path (Client._process_msg moved): see fastpath.py"
    assert got == [("inbox.a", "r.1", b"one", "", "p7")]
    assert plain == [b"two"]
