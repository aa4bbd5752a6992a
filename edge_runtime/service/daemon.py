"""Wires the daemon: MQTT -> :class:`Ingest` -> batching -> :class:`Scorer` -> :class:`Publisher` -> MQTT.

Threads: paho's network thread runs :class:`Ingest` (decode, window; never blocks on inference) and, with
``inference.batching = inline`` (the default), the scoring of what each read burst completed
(:class:`InlineScoring`); otherwise one inference thread scores (:class:`ThreadedScoring`). One
:class:`Housekeeping` thread publishes stats, expires idle devices and hot-reloads the model (SIGHUP or a
changed file). :meth:`Daemon.stop` stops input, scores what is queued, publishes pending alerts and the
offline status, then disconnects.
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from edge_runtime import __version__
from edge_runtime.config import Config, ConfigError
from edge_runtime.pipeline.alerts import AlertTracker
from edge_runtime.pipeline.documents import Outbound, foreign_online, offline_doc, online_doc, to_json
from edge_runtime.pipeline.evidence import EvidenceRecorder
from edge_runtime.pipeline.hysteresis import AlertPolicy
from edge_runtime.pipeline.stats import RateLimitedLog, Stats
from edge_runtime.pipeline.topics import format_topic
from edge_runtime.service.commands import Commands
from edge_runtime.service.evidence_requests import EvidenceRequests
from edge_runtime.service.evidence_store import Evidence, EvidenceStore
from edge_runtime.service.feedback_store import FeedbackStore
from edge_runtime.service.housekeeping import Housekeeping
from edge_runtime.service.ingest import Ingest, scoring_hop
from edge_runtime.service.model import EdgeModel, check_pin, load_model
from edge_runtime.service.mqtt import MqttLink
from edge_runtime.service.paho_buffered import buffering_supported
from edge_runtime.service.publisher import Publisher
from edge_runtime.service.scorer import InlineScoring, Scorer, ThreadedScoring
from edge_runtime.service.sources import Source

log = logging.getLogger(__name__)

LAST_SAMPLE_DEVICES = 100  # devices listed with their last sample time in the stats document


class Daemon:
    """The running service. ``start()`` returns once threads run; ``stop()`` shuts down cleanly."""

    def __init__(self, cfg: Config, model: EdgeModel | None = None) -> None:
        self.cfg = cfg
        self.nats = cfg.source == "nats"
        if self.nats:  # a consumer-group worker: its own status/stats name, the group's name in alerts/states
            from edge_runtime.integrations.nats.link import worker_name

            self.instance = worker_name(cfg)
        else:
            self.instance = cfg.instance_name
        self.owner = f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"  # in the online status
        self.started = time.time()
        self._alert_marks: deque[tuple[float, int]] = deque([(time.monotonic(), 0)])
        self.stats = Stats()
        model = model or load_model(cfg.path, cfg.provider, cfg.intra_op_threads, cfg.max_model_bytes)
        check_pin(model, cfg.pin)  # a model that breaks the pin does not start (the CLI: exit 65)
        configured = model
        if cfg.rollout:  # a model promoted before a restart serves again
            from edge_runtime.service.rollout import start_model

            model = start_model(cfg, model)
        self.ingest = Ingest(cfg, model, self.stats)
        self.tracker = AlertTracker(
            AlertPolicy(cfg.raise_after, cfg.clear_after, cfg.clear_ratio, cfg.top_channels, cfg.critical_ratio,
                        cfg.update_interval_s),
            cfg.group if self.nats else self.instance,
            seq_memory=cfg.max_devices,
        )
        self.scorer = Scorer(cfg, model, self.ingest, self.tracker, self.stats,
                             self._make_discovery(model) if cfg.homeassistant_discovery else None)
        # state, operating and health document of each device (the ingest's device cap may be lower still)
        self.publisher = Publisher(stats=self.stats, max_retry=cfg.max_outgoing, max_remembered=3 * cfg.max_devices,
                                   log_interval_s=cfg.log_interval_s)
        self._stop = threading.Event()
        self._stopped = threading.Event()
        inline = cfg.batching == "inline" and (self.nats or buffering_supported())
        if cfg.batching == "inline" and not inline:
            log.warning("inference.batching = inline needs paho-mqtt 2.x (edge_runtime/service/paho_buffered.py); "
                        "using opportunistic batching on an inference thread")
        self.batching: InlineScoring | ThreadedScoring = (
            InlineScoring(cfg, self.scorer, self.publisher) if inline
            else ThreadedScoring(cfg, self.scorer, self.publisher, self._stop))
        self.ingest.put, self.ingest.policy = self.batching.put, cfg.queue_policy
        self.ingest.settle = self.batching.settle  # back-pressure: wait for room outside the ingest lock
        self.ingest.on_forget = self._forget
        if self.scorer.discovery is not None:  # a device that only sends rejected data is announced too
            self.ingest.on_heard = self._heard
        self.ingest.on_state = self._state_changed
        self.ingest.send = self.publisher.send  # sensor alerts and health documents
        self.status_topic = format_topic(cfg.status_topic, instance=self.instance)
        filters = self.ingest.router.filters
        on_message: Callable[[str, bytes | bytearray], None] = self.ingest.handle
        if self.scorer.discovery is not None:  # Home Assistant's birth message: discovery again
            birth = self.scorer.discovery.settings.birth_topic
            filters, on_message = [*filters, birth], self._with_birth(birth, on_message)
        self.commands = self._make_commands() if cfg.commands else None
        if self.commands is not None:  # operator commands (feedback, recalibrate), each answered
            filters, on_message = [*filters, self.commands.topic], self.commands.route(on_message)
        self.rollout: Any = None  # edge_runtime.service.rollout.Rollout when fleet.rollout is on
        if cfg.rollout:  # manifests and commands; the chunks of a download are subscribed while it runs
            from edge_runtime.pipeline.manifest import Topics

            if self.nats:
                raise ConfigError("fleet.rollout: model rollout runs over MQTT; a NATS group worker gets its "
                                  "model from model.path")
            fleet = Topics(cfg.fleet_topic)
            filters, on_message = [*filters, fleet.manifests, fleet.commands], self._with_fleet(on_message)
        self.evidence = self._make_evidence() if cfg.evidence_dir else None
        self.scorer.evidence = self.evidence
        if self.evidence is not None and cfg.evidence_requests:  # an alert's evidence over MQTT, chunked
            requests = EvidenceRequests(cfg.evidence_request_topic, cfg.evidence_reply_topic, self.instance,
                                        self.evidence.store, self.stats, self.publisher.send, self.evidence.defer,
                                        cfg.log_interval_s)
            filters, on_message = [*filters, requests.topic], requests.route(on_message)
        self.sparkplug = self._make_sparkplug() if cfg.sparkplug_groups else None
        if self.sparkplug is not None:  # Sparkplug B input beside the JSON/CSV topics
            filters, on_message = [*filters, *self.sparkplug.filters], self.sparkplug.route(on_message)
        self.link: Source = self._make_nats_link() if self.nats else MqttLink(
            cfg, filters, on_message, self.status_topic, self._online_doc, self.stats,
            on_connected=self._on_connected, state_filter=self._retained_filters(),
            on_state=self._retained, after_read=self.batching.drain if inline else None,
            on_status=self._on_status)
        self.publisher.link = self.link
        if inline and isinstance(self.link, MqttLink) and isinstance(self.batching, InlineScoring):
            self.batching.reading = self.link.reading  # the sweep stands back while a burst is read
        self.housekeeping = Housekeeping(cfg, self.scorer, self.batching, self.publisher, self.stats_doc,
                                         self._status_message, self._stop,
                                         stats_topic=format_topic(cfg.stats_topic, instance=self.instance),
                                         link_alive=self.link.network_alive, on_fatal=self._fatal,
                                         link_up=self.link.connected.is_set,
                                         status_owed=getattr(self.link, "status_owed", None))
        if cfg.rollout:
            self.rollout = self._make_rollout(configured)
        self._rl = RateLimitedLog(log, 10.0)
        self.failure = ""  # why the daemon cannot go on (the CLI exits non-zero, so systemd restarts it)
        self._threads: list[threading.Thread] = []
        self._log_start()
        self.metrics = self._start_metrics() if cfg.metrics_port else None

    @property
    def model(self) -> EdgeModel:
        return self.scorer.model

    def _start_metrics(self) -> Any:
        from edge_runtime.integrations.metrics_http import MetricsUnavailable, start_metrics_server

        try:
            return start_metrics_server(self.stats_doc, self.cfg.metrics_port, self.cfg.metrics_addr, stats=self.stats)
        except MetricsUnavailable as exc:
            raise ConfigError(f"runtime.metrics_port: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"runtime.metrics_port: cannot listen on {self.cfg.metrics_addr}:"
                              f"{self.cfg.metrics_port}: {exc.strerror or exc}") from None

    def _retained_filters(self) -> list[str]:
        """What is read back of an earlier run at each connect: the alert states (raised alerts adopted) and,
        with Home Assistant discovery, the devices' availability (those left online are said offline if quiet)."""
        out = [format_topic(self.cfg.state_topic, device="+")]
        if self.scorer.discovery is not None:
            out.append(f"{self.scorer.discovery.settings.status}/+")
        return out

    def _retained(self, topic: str, payload: bytes | bytearray) -> None:
        """A retained document of an earlier run (network thread): an alert state, or a device's availability."""
        discovery = self.scorer.discovery
        if discovery is not None:
            prefix = f"{discovery.settings.status}/"
            if topic.startswith(prefix):
                self.publisher.send(self.scorer.discovery_event("on_earlier", topic[len(prefix):], bytes(payload)))
                return
        if self.scorer.adopt(topic, payload) is not None:  # raised by it: its state is this run's to keep
            self.publisher.remember(topic, payload)

    def _make_discovery(self, model: EdgeModel) -> Any:
        from edge_runtime.integrations.homeassistant import Discovery, DiscoverySettings, stale_limit_s

        cfg = self.cfg
        return Discovery(DiscoverySettings(
            instance=self.instance, prefix=cfg.homeassistant_prefix, state_topic=cfg.state_topic,
            alert_topic=cfg.alert_topic, score_topic=cfg.score_topic, status_topic=cfg.status_topic,
            model_id=model.model_id, health_topic=cfg.health_topic if cfg.sensor_checks else "",
            stale_s=stale_limit_s(model.metadata.sample_period_s, scoring_hop(cfg, model), cfg.device_idle_s),
            command_topic=cfg.command_topic if cfg.commands else "", operating_topic=cfg.operating_topic,
        ))

    def _make_commands(self) -> Commands:
        cfg = self.cfg
        return Commands(cfg.command_topic, cfg.reply_topic, self.instance, self.scorer, self.stats,
                        FeedbackStore(cfg.state_dir or None), self.publisher.send, cfg.log_interval_s)

    def _make_nats_link(self) -> Source:
        """input.source = nats: this daemon is one worker of a JetStream partitioned consumer group."""
        from edge_runtime.integrations.nats import NatsUnavailable
        from edge_runtime.integrations.nats.link import NatsLink

        cfg, m = self.cfg, self.model
        sp = m.metadata.sample_period_s
        rebuild_s = cfg.rebuild_s or (2.0 * m.window * sp if sp else 300.0)
        try:
            return NatsLink(cfg, self.ingest.handle, self.status_topic, self._online_doc, self.stats,
                            after_read=self.batching.drain, on_state=self.scorer.adopt, prime=self.ingest.prime,
                            release=self._release, device_of=self.ingest.device_of, instance=cfg.group,
                            on_connected=self._on_connected, rebuild_s=rebuild_s)
        except NatsUnavailable as exc:
            raise ConfigError(str(exc)) from None

    def _release(self, devices: list[str]) -> None:
        """Devices now owned by another worker of the group: forgotten without an alert."""
        self.ingest.release(devices)
        with self.scorer.tracker_lock:
            for d in devices:
                self.scorer.tracker.release(d)
                self.scorer.adopted.pop(d, None)

    def _make_evidence(self) -> Evidence:
        cfg = self.cfg
        store = EvidenceStore(cfg.evidence_dir, int(cfg.evidence_max_mb * (1 << 20)), cfg.evidence_max_age_s,
                              self.stats, RateLimitedLog(logging.getLogger("edge_runtime.evidence"), cfg.log_interval_s))
        recorder = EvidenceRecorder(cfg.evidence_margin_s, cfg.evidence_ring_samples, cfg.evidence_max_samples,
                                    cfg.evidence_max_expected)
        log.info("evidence: %s (%d alert(s) kept, %.2f of %.2f MiB)", cfg.evidence_dir, len(store.index),
                 store.total_bytes() / (1 << 20), cfg.evidence_max_mb)
        return Evidence(store, recorder, self.stats)

    def _make_sparkplug(self) -> Any:
        from edge_runtime.integrations.sparkplug.source import SparkplugSource, SparkplugUnavailable

        cfg = self.cfg
        try:
            return SparkplugSource(cfg.sparkplug_groups, lambda: self.model.metadata.channels, self.stats,
                                   self.ingest.handle_samples, self._device_offline, self.publisher.send,
                                   cfg.max_devices, cfg.max_device_id_len, cfg.max_payload_bytes, cfg.log_interval_s,
                                   cfg.max_future_s)
        except SparkplugUnavailable as exc:
            raise ConfigError(str(exc)) from None

    def _make_rollout(self, configured: EdgeModel) -> Any:
        from edge_runtime.service.rollout import Rollout
        from edge_runtime.service.signing import SigningError

        try:
            rollout = Rollout(self.cfg, self.scorer, self.publisher, self.stats, self.instance,
                              self.housekeeping.swap, self._status_message, self._subscribe, self._unsubscribe)
        except SigningError as exc:
            raise ConfigError(f"fleet.public_key_file: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"fleet.staging_dir: {self.cfg.staging_dir}: {exc.strerror or exc}") from None
        self.housekeeping.rollout_tick = rollout.tick
        rollout.resume(configured)
        return rollout

    def _with_fleet(self, handle: Callable[[str, bytes | bytearray], None]
                    ) -> Callable[[str, bytes | bytearray], None]:
        """``handle``, but topics under ``fleet.fleet_topic`` go to the rollout (network thread)."""
        root = self.cfg.fleet_topic + "/"

        def route(topic: str, payload: bytes | bytearray) -> None:
            if topic.startswith(root):
                if self.rollout is not None:
                    self.rollout.on_message(topic, payload)
            else:
                handle(topic, payload)
        return route

    def _subscribe(self, topic_filter: str) -> None:
        """Subscribe (QoS 1) now and on every reconnect (fleet rollout: MQTT only)."""
        link = self.link
        assert isinstance(link, MqttLink)
        if topic_filter not in link.filters:
            link.filters = [*link.filters, topic_filter]
        link.client.subscribe(topic_filter, 1)

    def _unsubscribe(self, topic_filter: str) -> None:
        link = self.link
        assert isinstance(link, MqttLink)
        link.filters = [f for f in link.filters if f != topic_filter]
        link.client.unsubscribe(topic_filter)

    def _device_offline(self, device: str) -> None:
        """A Sparkplug B DDEATH/NDEATH: forget the device now (a raised one is cleared, reason ``offline``)."""
        with self.ingest.lock:
            self.ingest.store.devices.pop(device, None)
        self._forget(device, "offline")

    def _with_birth(self, birth: str, handle: Callable[[str, bytes | bytearray], None]
                    ) -> Callable[[str, bytes | bytearray], None]:
        """``handle``, but Home Assistant's ``birth`` topic answered with the discovery configs (network thread)."""
        def route(topic: str, payload: bytes | bytearray) -> None:
            if topic == birth:
                self.publisher.send(self.scorer.discovery_event("on_birth", bytes(payload)))
            else:
                handle(topic, payload)
        return route

    def _on_connected(self) -> None:
        self.publisher.send(self.scorer.on_connect_messages())
        if isinstance(self.link, MqttLink) and self.link.reconnected:
            # the broker may have lost our retained documents (a restart without persistence) or restored an older
            # snapshot of them (a crash between its autosaves): each topic's newest again, paced
            n = self.publisher.reassert()
            if n:
                log.info("reconnected: %d retained state, operating and health documents published again", n)

    def _on_status(self, payload: bytes | bytearray) -> None:
        """Our status topic read back (network thread): another daemon's ``online`` means a name clash.
        Warned about loudly (ERROR, ``instance_conflicts``), not refused: a fleet cloned from one image would
        otherwise go dark at once; give each gateway its own ``runtime.instance``."""
        try:
            doc = json.loads(payload)
        except (ValueError, RecursionError):
            return
        other = foreign_online(doc, self.owner, self.started)
        if other:
            self.stats.incr("instance_conflicts")
            self._rl.log(logging.ERROR, "instance_conflict", "another edgewatch (%s) runs with the same instance name "
                         "%r on this broker: the two take each other's MQTT session and split the data; give each "
                         "gateway its own runtime.instance (this one is %s)", other, self.instance, self.owner)

    def _fatal(self, why: str) -> None:
        log.critical("%s: stopping (exit code 70, a service manager restarts it)", why)
        self.failure = why
        self._stop.set()

    def _state_changed(self, device: str, state: str, since: float, reason: str) -> None:
        """A device's operating state changed (network thread): publish its retained operating document."""
        self.publisher.send(self.scorer.state_changed(device, state, since, reason))

    def _heard(self, device: str) -> None:
        """A message of a device whose ``rejected`` alert is raised (network thread): its Home Assistant device
        announced when new (its Sensor health entity says why it is not scored), kept available."""
        self.publisher.send(self.scorer.discovery_event("on_rejected", device))

    def _forget(self, device: str, reason: str) -> None:
        self.publisher.send(self.scorer.forget(device, reason))
        self.publisher.forget_remembered(self.scorer.device_topics(device))

    # -- lifecycle ----------------------------------------------------------------------
    def _log_start(self) -> None:
        m = self.model
        log.info("model %s (%s): W=%d C=%d hop=%d threshold=%.6g; provider %s (%s)", m.model_id, m.path,
                 m.window, m.n_channels, scoring_hop(self.cfg, m), self.scorer.threshold, m.provider, m.provider_reason)

    def start(self) -> Daemon:
        self.link.start()
        self._threads = self.batching.start()
        if self.evidence is not None:
            self._threads += self.evidence.start()
        t = threading.Thread(target=self.housekeeping.run, name="edgewatch-housekeeping", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def request_stop(self) -> None:
        """Signal-safe: ask :meth:`wait` to return."""
        self._stop.set()

    def request_reload(self) -> None:
        """Signal-safe: reload the model file on the housekeeping thread."""
        self.housekeeping.reload_requested.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._stop.wait(timeout)

    def reload(self, why: str) -> bool:
        """Load, validate and swap in the model file; on any error keep the old model. True if swapped."""
        return self.housekeeping.reload(why)

    def expire_idle(self, now: float) -> list[str]:
        return self.housekeeping.expire_idle(now)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop input, score what is queued, publish pending alerts and offline status, disconnect."""
        if self._stopped.is_set():
            return
        log.info("stopping: %d window(s) pending", len(self.batching))
        self.link.paused = True  # new sensor messages stay unacknowledged: redelivered after a restart
        self.ingest.accepting = False
        self._stop.set()
        deadline = time.monotonic() + timeout
        self.link.detach_after_read()  # inline: a burst being scored finishes; the rest is scored here
        self.batching.stop(deadline - time.monotonic())
        if self.evidence is not None:  # open alerts' evidence written (reason stopped), the writer ended
            self.evidence.stop(max(0.5, deadline - time.monotonic() - 1.0))
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        while len(self.publisher) and time.monotonic() < deadline - 0.5:  # held alerts/states, paced discovery
            if not self.publisher.pace():
                time.sleep(0.02)
        self.housekeeping.publish_stats()
        self.scorer.thresholds.save()
        self.link.close(offline_doc(self.instance, "stopped", time.time()),
                        timeout=max(0.5, deadline - time.monotonic()))
        if self.metrics is not None:
            self.metrics.close()
        self._stopped.set()
        log.info("stopped")

    # -- documents ----------------------------------------------------------------------
    def _online_doc(self) -> dict[str, Any]:
        m = self.model
        doc = online_doc(self.instance, __version__, m.model_id, m.provider, m.provider_reason,
                         m.metadata.channels, m.window, self.scorer.threshold, time.time(), self.owner)
        doc["started"] = round(self.started, 3)  # the status is published again at every connect: "time" moves
        hk = getattr(self, "housekeeping", None)  # None while the link is being built
        if hk is not None and hk.last_refused is not None:
            doc["last_refused"] = hk.last_refused
        if getattr(self, "rollout", None) is not None:
            doc["models"] = self.rollout.models()  # live, shadow, previous, phase
        return doc

    def _status_message(self) -> Outbound:
        # not reasserted: the link publishes a fresh one at every connect
        return Outbound(self.status_topic, to_json(self._online_doc()), qos=1, retain=True, reassert=False)

    def _state_counts(self) -> dict[str, int]:
        """Devices per operating state (gauges): stopped, settling (the model's states), out_of_distribution."""
        gate = self.ingest.states
        out = gate.counts() if gate is not None else {}
        health = self.ingest.health
        if self.cfg.ood_windows > 0 or health is not None:
            by_score = {k for k, d in list(self.scorer.distribution.devices.items()) if d.ood}
            by_range = health.out_of_distribution(self.ingest.store) if health is not None else set()
            out["devices_out_of_distribution"] = len(by_score | by_range)
        return out

    def stats_doc(self) -> dict[str, Any]:
        now, mono = time.time(), time.monotonic()
        with self.ingest.lock:  # the most recently seen devices, newest first
            seen = heapq.nlargest(LAST_SAMPLE_DEVICES, ((r.last_seen, d) for d, r in self.ingest.store.devices.items()))
        return self.stats.snapshot(
            instance=self.instance, devices_active=len(self.ingest.store), queue_windows=len(self.batching),
            provider=self.model.provider, model_id=self.model.model_id, connected=self.link.connected.is_set() and self.link.network_alive(),
            alerts_raised_1h=self._alerts_last_hour(mono),
            last_sample={d: round(now - (mono - t), 3) for t, d in seen}, time=now, **self.scorer.thresholds.counts(),
            **self._state_counts(), device_thresholds=self.scorer.thresholds.snapshot(now),
            device_thresholds_feedback=self.scorer.thresholds.feedback_snapshot(now),
        )

    def _alerts_last_hour(self, mono: float) -> int:
        """Alerts raised in the last hour (since start when younger), from counter marks taken per stats call."""
        marks, n = self._alert_marks, self.stats.counts["alerts_raised"]
        marks.append((mono, n))
        while len(marks) > 1 and marks[1][0] <= mono - 3600.0:
            marks.popleft()
        return n - (marks[0][1] if marks[0][0] <= mono - 3600.0 else 0)
