"""Deliveries of the partitions' pull inboxes straight from nats-py's protocol parser (every nats-py private
access of the worker is in this file).

nats-py hands each message to a subscription through a header parser (a dict per message, for the pin id
every pinned delivery carries), a ``Msg`` object, a queue and a task that awaits the callback: about a
quarter of a worker's network thread on single-sample floods (py-spy, docs/PERFORMANCE.md). A puller's
inbox needs two header fields and the ack subject, so its messages are taken where the parser dispatches them
(``Client._process_msg(sid, subject, reply, data, headers)``) and given to a plain function. Every other
subscription goes the usual way. When the installed nats-py lacks that method (a release that moved it),
:func:`route` returns False and the puller keeps its ordinary callback: slower, same behaviour.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

Handler = Callable[[str, str, bytes, str, str], None]  # (subject, reply, data, status, pin id)

_ARGS = ["sid", "subject", "reply", "data", "headers"]
_PIN = b"Nats-Pin-Id:"


def parse_headers(raw: bytes | None) -> tuple[str, str]:
    """(status code, pin id) of a message's raw header block (``NATS/1.0 408 Request Timeout\\r\\n...``,
    ``NATS/1.0\\r\\nNats-Pin-Id: ab12\\r\\n\\r\\n``); empty strings for what it does not carry."""
    if not raw:
        return "", ""
    status = ""
    if raw[8:9] == b" ":  # an inline status after "NATS/1.0"
        code = raw[9:12]
        if code.isdigit():
            status = code.decode()
    pin = ""
    i = raw.find(_PIN)
    if i >= 0:
        j = raw.find(b"\r\n", i)
        pin = raw[i + len(_PIN): j if j >= 0 else len(raw)].strip().decode("ascii", "replace")
    return status, pin


def _hooked(nc: Any) -> dict[int, Handler] | None:
    """The sid -> handler table of ``nc``, installing the hook on first use (None: not possible here)."""
    routes: dict[int, Handler] | None = getattr(nc, "_edgewatch_routes", None)
    if routes is not None:
        return routes
    orig = getattr(nc, "_process_msg", None)
    if orig is None or not inspect.iscoroutinefunction(orig):
        return None
    try:
        if list(inspect.signature(orig).parameters) != _ARGS:
            return None
    except (TypeError, ValueError):
        return None
    routes = {}

    async def process_msg(sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        handler = routes.get(sid)
        if handler is None:
            await orig(sid, subject, reply, data, headers)
            return
        status, pin = parse_headers(headers)
        handler(subject.decode(), reply.decode(), data, status, pin)

    nc._process_msg = process_msg
    nc._edgewatch_routes = routes
    return routes


def route(nc: Any, sub: Any, handler: Handler) -> bool:
    """Deliver ``sub``'s messages to ``handler`` from the parser; False when this nats-py does not allow it."""
    sid = getattr(sub, "_id", None)
    routes = _hooked(nc)
    if routes is None or not isinstance(sid, int):
        return False
    routes[sid] = handler
    return True


def unroute(nc: Any, sub: Any) -> None:
    routes = getattr(nc, "_edgewatch_routes", None)
    if routes is not None:
        routes.pop(getattr(sub, "_id", None), None)
