"""The daemon's Sparkplug B source: subscriptions, decode, samples into ingest, offline devices, rebirths.

Runs on paho's network thread, like :class:`~edge_runtime.service.ingest.Ingest` (``input.sparkplug_groups``
turns it on). Every refusal is counted under its reason in the stats' ``drops`` and logged at a bounded rate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from edge_runtime.pipeline.decode import Samples
from edge_runtime.pipeline.documents import Outbound
from edge_runtime.pipeline.stats import RateLimitedLog, Stats
from edge_runtime.pipeline.topics import sanitize_id

log = logging.getLogger(__name__)

Handler = Callable[[str, bytes | bytearray], None]


class SparkplugUnavailable(RuntimeError):
    """protobuf (the ``sparkplug`` extra) is not installed."""


class SparkplugSource:
    """Reads ``spBv1.0/{group}/...`` for ``groups``, metrics named as ``channels()`` (the current model's);
    ``push(device, samples)`` windows a device's samples,
    ``offline(device)`` forgets one, ``send(messages)`` publishes (the rebirth requests)."""

    def __init__(self, groups: list[str], channels: Callable[[], list[str]], stats: Stats,
                 push: Callable[[str, Samples], None], offline: Callable[[str], None],
                 send: Callable[[list[Outbound]], object], max_devices: int = 10_000,
                 max_device_id_len: int = 64, max_payload_bytes: int = 1 << 20, log_interval_s: float = 10.0,
                 max_future_s: float = 300.0) -> None:
        try:
            from edge_runtime.integrations.sparkplug.decoder import NAMESPACE, SparkplugDecoder
        except ImportError as exc:
            raise SparkplugUnavailable(
                f"input.sparkplug_groups is set but the Sparkplug B decoder cannot load ({exc}): "
                "pip install 'edgewatch[sparkplug]'") from None
        self.groups = list(groups)
        self.namespace = NAMESPACE + "/"
        self.channels = channels  # the current model's (a reload may change them)
        self._channels = channels()
        self.decoder = SparkplugDecoder(self._channels, max_devices, max_future_s=max_future_s)
        self.stats = stats
        self.push, self.offline, self.send = push, offline, send
        self.max_device_id_len = max_device_id_len
        self.max_payload_bytes = max_payload_bytes
        self.rl = RateLimitedLog(log, log_interval_s)

    @property
    def filters(self) -> list[str]:
        """Subscriptions: births, data and deaths of every node and device of each group (node data only for
        its ``seq``)."""
        out = []
        for g in self.groups:
            out += [f"{self.namespace}{g}/{k}/+/+" for k in ("DBIRTH", "DDATA", "DDEATH")]
            out += [f"{self.namespace}{g}/{k}/+" for k in ("NBIRTH", "NDEATH", "NDATA")]  # NDATA: its seq
        return out

    def route(self, handle: Handler) -> Handler:
        """``handle``, with Sparkplug topics taken here."""
        namespace = self.namespace

        def route(topic: str, payload: bytes | bytearray) -> None:
            if topic.startswith(namespace):
                self.handle(topic, payload)
            else:
                handle(topic, payload)
        return route

    def _id(self, raw: str) -> str:
        return sanitize_id(raw, self.max_device_id_len)

    def handle(self, topic: str, payload: bytes | bytearray) -> None:
        """One Sparkplug message (network thread)."""
        st = self.stats
        st.counts["messages"] += 1
        if len(payload) > self.max_payload_bytes:
            st.drop("oversize")
            self.rl.log(logging.WARNING, "oversize", "%s: %d bytes > max_payload_bytes", topic[:200], len(payload))
            return
        channels = self.channels()
        if channels is not self._channels:
            self._channels = channels
            self.decoder.set_channels(channels)
        for ev in self.decoder.handle(topic, bytes(payload), time.time()):
            if ev.kind == "data" and ev.samples is not None:
                self.push(self._id(ev.device), ev.samples)
            elif ev.kind == "offline":
                for dev in ev.devices:
                    log.info("Sparkplug device %s offline (%s)", dev, topic.split("/")[2])
                    self.offline(self._id(dev))
            elif ev.kind == "rebirth":
                log.info("asking for a Sparkplug rebirth on %s", ev.topic)
                self.send([Outbound(ev.topic, ev.payload, qos=0)])  # type: ignore[arg-type]  # bytes payload
            elif ev.kind == "seq_gap":
                st.incr("sparkplug_seq_gaps")
                self.rl.log(logging.WARNING, "sparkplug_seq_gap", "%s: asking for a rebirth", ev.detail)
            elif ev.kind == "drop":
                st.drop(ev.reason, ev.n)
                self.rl.log(logging.WARNING, ev.reason, "%s", ev.detail)
