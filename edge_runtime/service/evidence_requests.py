"""An alert's evidence over MQTT (``alerts.evidence_requests``): a request on the request topic, the file in
chunks on the reply topic.

Request (QoS 1, JSON) on ``alerts.evidence_request_topic`` (``edgewatch/{instance}/evidence/request``):
``{"alert_id": "pump-1:7", "request_id": "r1"}`` (``request_id``: up to 64 of ``[A-Za-z0-9_.-]``; made up when
absent). Who may write it is the broker's business: grant it to operator accounts only in the ACL, as the
command topic (deploy/mosquitto/acl). Replies go to ``{evidence_reply_topic}/{request_id}``: one document per
chunk, ``{"request_id", "alert_id", "status": "ok", "chunk": i, "chunks": n, "bytes": total, "format": "npz",
"encoding": "base64", "data": ...}``, or one ``{"request_id", "alert_id", "status": "refused", "reason"}``
(edge_runtime/schemas/evidence_reply.schema.json). The chunks joined and base64-decoded are the ``.npz`` file
``edgewatch evidence`` reads (``edgewatch evidence fetch`` does it). Requests are answered on the evidence
writer's thread, never on the MQTT network thread.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from edge_runtime.pipeline.documents import Outbound, to_json
from edge_runtime.pipeline.stats import RateLimitedLog, Stats
from edge_runtime.pipeline.topics import format_topic
from edge_runtime.service.evidence_store import EvidenceError, EvidenceStore

log = logging.getLogger(__name__)

CHUNK_BYTES = 48 * 1024  # raw bytes per reply message (64 KiB of base64)
MAX_REQUEST_BYTES = 4096
_REQUEST_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class RequestError(ValueError):
    """A request that cannot be answered as asked (malformed)."""


def parse_request(payload: bytes | bytearray) -> tuple[str, str]:
    """``(alert_id, request_id)`` of a request; :class:`RequestError` naming what is wrong."""
    if len(payload) > MAX_REQUEST_BYTES:
        raise RequestError(f"more than {MAX_REQUEST_BYTES} bytes")
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):
        raise RequestError("not JSON") from None
    if not isinstance(doc, dict):
        raise RequestError("not a JSON object")
    alert_id = doc.get("alert_id")
    if not isinstance(alert_id, str) or not 0 < len(alert_id) <= 320:
        raise RequestError("'alert_id' is not a non-empty string (at most 320 characters)")
    request_id = doc.get("request_id", uuid.uuid4().hex)
    if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
        raise RequestError("'request_id' is not 1-64 characters of [A-Za-z0-9_.-]")
    return alert_id, request_id


def reply_messages(reply_topic: str, request_id: str, alert_id: str, data: bytes | None, reason: str = "",
                   chunk_bytes: int = CHUNK_BYTES) -> list[Outbound]:
    """The reply: ``data`` (an evidence file) in chunks, or one refusal with ``reason`` when ``data`` is None."""
    topic = f"{reply_topic}/{request_id}"
    head = {"request_id": request_id, "alert_id": alert_id}
    if data is None:
        return [Outbound(topic, to_json({**head, "status": "refused", "reason": reason}), qos=1)]
    n = max(1, math.ceil(len(data) / chunk_bytes))
    return [Outbound(topic, to_json({**head, "status": "ok", "chunk": i, "chunks": n, "bytes": len(data),
                                     "format": "npz", "encoding": "base64",
                                     "data": base64.b64encode(data[i * chunk_bytes:(i + 1) * chunk_bytes]).decode()}),
                     qos=1) for i in range(n)]


class EvidenceRequests:
    """Answers evidence requests for ``instance`` from ``store``; ``defer(fn)`` runs ``fn`` off the network thread
    (the evidence writer's queue), ``send`` publishes."""

    def __init__(self, request_topic: str, reply_topic: str, instance: str, store: EvidenceStore, stats: Stats,
                 send: Callable[[list[Outbound]], Any], defer: Callable[[Callable[[], None]], bool],
                 log_interval_s: float = 10.0) -> None:
        self.topic = format_topic(request_topic, instance=instance)
        self.reply_topic = format_topic(reply_topic, instance=instance)
        self.store = store
        self.stats = stats
        self.send = send
        self.defer = defer
        self._rl = RateLimitedLog(log, log_interval_s)

    def route(self, handle: Callable[[str, bytes | bytearray], None]) -> Callable[[str, bytes | bytearray], None]:
        """``handle``, with the request topic answered here (network thread: parsed, then deferred)."""
        topic = self.topic

        def routed(t: str, payload: bytes | bytearray) -> None:
            if t == topic:
                self.handle(bytes(payload))
            else:
                handle(t, payload)
        return routed

    def handle(self, payload: bytes) -> None:
        try:
            alert_id, request_id = parse_request(payload)
        except RequestError as exc:
            self.stats.incr("evidence_requests_refused")
            self._rl.log(logging.WARNING, "evidence_request", "evidence request refused: %s", exc)
            return  # no request id to reply to
        if not self.defer(lambda: self.answer(alert_id, request_id)):
            self._refuse(alert_id, request_id, "the evidence writer is busy: ask again")

    def answer(self, alert_id: str, request_id: str) -> None:
        """Read the file and send it (the evidence thread)."""
        t0 = time.perf_counter()
        try:
            data = self.store.read_bytes(alert_id)
        except EvidenceError as exc:
            self._refuse(alert_id, request_id, str(exc))
            return
        msgs = reply_messages(self.reply_topic, request_id, alert_id, data)
        self.send(msgs)
        self.stats.incr("evidence_requests_answered")
        log.info("evidence of %s sent in %d chunk(s) (%d bytes, %.0f ms)", alert_id, len(msgs), len(data),
                 1000 * (time.perf_counter() - t0))

    def _refuse(self, alert_id: str, request_id: str, reason: str) -> None:
        self.stats.incr("evidence_requests_refused")
        self._rl.log(logging.WARNING, "evidence_request", "evidence request for %s refused: %s", alert_id, reason)
        self.send(reply_messages(self.reply_topic, request_id, alert_id, None, reason))
