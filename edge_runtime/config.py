"""Typed daemon configuration: defaults < TOML file < ``EDGEWATCH_*`` environment < command-line flags.

Every key is declared once, below, with its TOML section, default, description
and checks; the CLI flags, the environment variables, ``deploy/edgewatch.toml`` and
docs/CONFIGURATION.md's reference are generated from or tested against :func:`options`.
A TOML key ``[mqtt] keepalive_s`` is the flag ``--keepalive-s`` (unless ``flag`` says
otherwise) and the variable ``EDGEWATCH_MQTT_KEEPALIVE_S``. The file is ``--config``,
else ``$EDGEWATCH_CONFIG``, else :data:`DEFAULT_CONFIG_PATH` when it exists.
The MQTT password has no flag (command lines are visible to every local user):
use ``password_file``, the ``EDGEWATCH_MQTT_PASSWORD`` environment variable or the file.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from edge_runtime.clierror import EXIT_CONFIG
from edge_runtime.pipeline.pin import Pin
from edge_runtime.pipeline.topics import TopicError, TopicRouter, sanitize_id

PASSWORD_ENV = "EDGEWATCH_MQTT_PASSWORD"
CONFIG_ENV = "EDGEWATCH_CONFIG"  # the config file to read; set it empty to read none
DEFAULT_CONFIG_PATH = "/etc/edgewatch/edgewatch.toml"  # read when present and nothing else is named
SECTIONS = ("model", "mqtt", "input", "inference", "alerts", "health", "runtime", "topics", "nats", "fleet")


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the key."""

    exit_code = EXIT_CONFIG


def _opt(default: Any, section: str, help: str, *, flag: str | None = None, choices: tuple = (),
         minimum: float | None = None, secret: bool = False, no_flag: bool = False) -> Any:
    meta = {"section": section, "help": help, "flag": flag, "choices": choices, "minimum": minimum,
            "secret": secret, "no_flag": no_flag}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=meta)
    return field(default=default, metadata=meta, repr=not secret)


@dataclass
class Config:
    """Every daemon setting. See :func:`options` for the documented list."""

    # [model]
    path: str = _opt("", "model", "Path to the exported edgewatch ONNX model (required).", flag="model")
    provider: str = _opt("auto", "model", "Execution provider: auto (CUDA if it really loads, else CPU), cpu or cuda (error if unavailable).",
                         choices=("auto", "cpu", "cuda"))
    intra_op_threads: int = _opt(1, "model", "onnxruntime intra-op threads (spinning is off, so idle threads use no CPU).", minimum=1)
    max_model_bytes: int = _opt(256 << 20, "model", "Refuse model files larger than this many bytes.", minimum=1)
    watch_interval_s: float = _opt(2.0, "model", "Check the model file's mtime/size this often and hot-reload on change; 0 turns watching off (SIGHUP still reloads).", minimum=0)
    channels: list = _opt([], "model", "Pin: the channel names (in order) every model this gateway runs must have; a model at start, a reload or a rollout with other channels is refused (counted in pin_refused and reloads_refused, reported in the status document) and the old model keeps serving. Empty: any channels.", flag="pin-channel")
    window: int = _opt(0, "model", "Pin: the window W every model must have; 0: any.", flag="pin-window", minimum=0)
    family: str = _opt("", "model", "Pin: the model family every model must have (its metadata's architecture.type, e.g. conv1d_autoencoder); empty: any.", flag="pin-family")
    # [mqtt]
    broker: str = _opt("mqtt://127.0.0.1:1883", "mqtt", "Broker URL: mqtt://host[:1883] or mqtts://host[:8883] for TLS.")
    client_id: str = _opt("", "mqtt", "MQTT client id; empty means edgewatch-{instance}. Keep it stable: the persistent session is keyed by it.")
    protocol: str = _opt("3.1.1", "mqtt", "MQTT protocol version: 3.1.1 or 5.", choices=("3.1.1", "5"))
    keepalive_s: int = _opt(30, "mqtt", "MQTT keepalive in seconds.", minimum=5)
    persistent_session: bool = _opt(True, "mqtt", "Keep the broker session (clean_session/clean_start false) so QoS 1 sensor data is queued across disconnects.")
    session_expiry_s: int = _opt(86400, "mqtt", "MQTT 5 session expiry interval in seconds (how long the broker keeps the session while we are away).", minimum=0)
    username: str = _opt("", "mqtt", "MQTT username (empty: anonymous).")
    password: str = _opt("", "mqtt", f"MQTT password. Prefer password_file or the {PASSWORD_ENV} environment variable; never logged; no command-line flag.",
                         secret=True, no_flag=True)
    password_file: str = _opt("", "mqtt", "File whose first line is the MQTT password (wins over password and the environment).")
    ca_file: str = _opt("", "mqtt", "CA certificate (PEM) to verify the broker; empty with mqtts:// uses the system CAs. Verification is always on.")
    cert_file: str = _opt("", "mqtt", "Client certificate (PEM) for mutual TLS.")
    key_file: str = _opt("", "mqtt", "Client private key (PEM) for mutual TLS.")
    reconnect_min_s: float = _opt(1.0, "mqtt", "First reconnect delay; doubles up to reconnect_max_s.", minimum=0.1)
    reconnect_max_s: float = _opt(30.0, "mqtt", "Longest reconnect delay.", minimum=0.1)
    max_outgoing: int = _opt(10000, "mqtt", "Outgoing QoS 1 messages held while the broker is away or slow. Alerts and states refused beyond it wait in the daemon (publish_deferred) and are retried in order (publish_retried; up to as many again, then publish_lost critical_lost); discovery, scores and stats may fill only half of it (discovery is paced, given up only past 100,000 held); a score or stats message refused is lost (publish_lost).", minimum=1)
    # [input]
    source: str = _opt("mqtt", "input", "Where sensor messages come from: mqtt (the [mqtt] broker, the default) or nats (a JetStream partitioned consumer group, see [nats] and docs/NATS.md; needs edgewatch[nats]). NATS server URLs (nats://host:4222,nats://host2:4222) mean nats with those servers.")
    topics: list = _opt(["sensors/{device}/data"], "input", "Input topic templates; the {device} level names the device and becomes '+' in the subscription.", flag="topic")
    max_payload_bytes: int = _opt(1 << 20, "input", "Reject larger payloads before decoding (oversize).", minimum=16)
    max_samples_per_message: int = _opt(100_000, "input", "Reject messages with more samples (too_many_samples).", minimum=1)
    hop: int = _opt(0, "input", "Score a window every this many samples per device; 0 uses the model's default hop (its metadata). Capped at the model's window.", minimum=0)
    gap_s: float = _opt(0.0, "input", "A time gap larger than this restarts the device's window; 0 means 10 x the model's sample period, or 60 s when the model has none.", minimum=0)
    max_future_s: float = _opt(300.0, "input", "Refuse a message with a timestamp more than this many seconds after its arrival (future): one sample from a wrong clock must not make every later sample look out of order; 0 turns the check off.", minimum=0)
    clock_reset_after: int = _opt(20, "input", "A device whose timestamps stay behind its latest one for this many samples in a row (a clock that restarted, e.g. from 0 after a reboot) is reset: its window restarts on the new clock (clock_resets).", minimum=1)
    max_devices: int = _opt(10000, "input", "Most devices tracked at once; the least recently seen is evicted (devices_evicted).", minimum=1)
    device_memory_mb: float = _opt(256.0, "input", "Memory budget of the devices' window buffers (each costs about 2W x C x 4 + 2W x 8 bytes for a model of window W and C channels): caps the devices kept below max_devices when the model is large (logged at start; devices_evicted beyond it).", minimum=1)
    device_idle_s: float = _opt(3600.0, "input", "Forget a device after this long without data (devices_expired); 0 keeps devices forever.", minimum=0)
    max_device_id_len: int = _opt(64, "input", "Device ids are sanitised for topics and logs and cut to this length.", minimum=16)
    sparkplug_groups: list = _opt([], "input", "Sparkplug B groups to read as well (the DBIRTH, DDATA, DDEATH, NBIRTH, NDEATH and NDATA topics under spBv1.0/<group>/; metrics named as the model's channels; device id <group>:<node>:<device>, or <group>:<node> for a node's own metrics); empty: off. Needs edgewatch[sparkplug].", flag="sparkplug-group")
    warmup: str = _opt("", "input", "Calibration on site: a new device is scored but raises nothing until this warm-up on its own data is done: a number of samples (2000) or a duration in the device's time (90s, 30m, 2h, 1d); its threshold is then fitted to the model's false-alarm budget (state document, /metrics; kept in runtime.state_dir). A warm-up whose scores grow, or that would set the threshold beyond warmup_max_factor x the model's, is extended, then refused (the model's threshold is kept); stopped-machine windows are not learnt. With the sensor checks, the warm-up also learns the device's normal range (no range check until it ends; then the model's range widened to include the site's). Empty: off (the model's threshold).")
    warmup_offsets: bool = _opt(False, "input", "With a warm-up: its first half learns each channel's level offset against the model's training mean, subtracted from the device's samples before scoring (a machine at another operating point); the second half learns the threshold.")
    warmup_max_factor: float = _opt(10.0, "input", "A warm-up that would set a device's threshold above this many times the model's looks anomalous against the model: extended up to 3 times, then refused.", minimum=1)
    operating_states: bool = _opt(True, "input", "Apply the operating states the model learned (fit --state-column/--running or --running-when): a sample matching the stopped signature (or failing the running condition) is not windowed, so a stopped device is not scored and its window restarts when it runs again; the first settle_samples samples after a start are not scored either (samples_stopped, samples_settling). Each device's state is published on alerts.operating_topic. Off, or a model without states: every sample is scored.")
    # [inference]
    max_batch: int = _opt(64, "inference", "Most windows per session.run (micro-batch).", minimum=1)
    batching: str = _opt("inline", "inference", "How windows are formed into micro-batches and scored: inline (the MQTT network thread scores the windows each burst of messages completed, right after reading the burst: no hand-off between threads, the lowest latency; a slow model delays reading), opportunistic (an inference thread scores a window at once when idle; windows that arrive while it is busy form the next batch, up to max_batch) or fill (that thread waits up to max_wait_ms after the first window for max_batch).", choices=("inline", "opportunistic", "fill"))
    max_wait_ms: float = _opt(5.0, "inference", "With batching = fill: longest wait to fill a micro-batch after its first window arrives (opportunistic batching never waits).", minimum=0)
    queue_windows: int = _opt(4096, "inference", "Bound of the queue of windows waiting to be scored (between a read burst and its scoring, or between the MQTT thread and the inference thread), in windows.", minimum=1)
    queue_policy: str = _opt("drop_oldest", "inference", "What to drop when that queue is full (counted as queue_full).", choices=("drop_oldest", "drop_newest"))
    clip_z: float = _opt(1000.0, "inference", "Values further than this many training standard deviations from the model's training mean are clipped to that bound before scoring (windows_clipped), so a sensor pegged at an error value (float32-max) scores as far out instead of overflowing the model to NaN; 0 turns clipping off. A non-finite score is counted (windows_non_finite) and treated as anomalous either way.", minimum=0)
    # [alerts]
    raise_after: int = _opt(1, "alerts", "Raise after this many consecutive windows above the threshold (1, chosen leaving one fault kind out on SKAB: the threshold already holds the false-alarm budget; more delays every alert by that many hops).", minimum=1)
    clear_after: int = _opt(5, "alerts", "Clear after this many consecutive windows below clear_ratio x threshold.", minimum=1)
    clear_ratio: float = _opt(0.8, "alerts", "Clear level as a fraction of the threshold (hysteresis), in (0, 1].", minimum=0)
    threshold: float = _opt(0.0, "alerts", "Override the model's calibrated threshold; 0 uses the model's.", minimum=0)
    top_channels: int = _opt(3, "alerts", "Channels listed in an alert, by their share of the window's excess error (above each channel's normal error).", minimum=1)
    critical_ratio: float = _opt(2.0, "alerts", "An alert's severity is critical when its window's score is at least this many times the threshold, else warning.", minimum=1)
    update_interval_s: float = _opt(30.0, "alerts", "While raised, publish an update (event update) when the set of top channels or the severity changes, at most once per this many seconds of window time; 0: no updates.", minimum=0)
    evidence_dir: str = _opt("", "alerts", "Keep the evidence of every alert here (one .npz per alert: raw samples from evidence_margin_s before it to evidence_margin_s after its clear, its windows' per-channel errors, model id and threshold; edgewatch evidence list|show|export). Empty: off.")
    evidence_max_mb: float = _opt(4.0, "alerts", "The evidence folder's size limit in MiB: the oldest alerts' files are removed past it.", minimum=0.01)
    evidence_max_age_s: float = _opt(7 * 86400.0, "alerts", "Remove evidence older than this; 0: no age limit.", minimum=0)
    evidence_margin_s: float = _opt(60.0, "alerts", "Evidence keeps this many seconds (stream time) before an alert became anomalous and after its clear.", minimum=0)
    evidence_ring_samples: int = _opt(512, "alerts", "Raw samples (and windows) each device keeps in memory for the margin before a raise: bounds memory at about this x (C x 4 + 8) bytes per device.", minimum=1)
    evidence_max_samples: int = _opt(20000, "alerts", "Most raw samples one alert's evidence keeps (a longer alert keeps its first ones and counts the rest in samples_dropped).", minimum=1)
    evidence_max_expected: int = _opt(16, "alerts", "Most windows whose full reconstruction (the model's expected curve, W x C in the channels' units) one alert's evidence keeps: its raise and first updates (the rest counted in expected_dropped). 0: none.", minimum=0)
    evidence_requests: bool = _opt(False, "alerts", "Answer evidence requests on evidence_request_topic with the alert's file in chunks on evidence_reply_topic/<request_id> (needs evidence_dir). Grant the request topic to operator accounts only in the broker's ACL.")
    evidence_request_topic: str = _opt("edgewatch/{instance}/evidence/request", "alerts", "Topic this daemon takes evidence requests on ({\"alert_id\": ..., \"request_id\": ...}).")
    evidence_reply_topic: str = _opt("edgewatch/{instance}/evidence/reply", "alerts", "Evidence replies go to this topic + /<request_id>.")
    alert_topic: str = _opt("alerts/{device}", "alerts", "Topic for raise/clear alerts (QoS 1).")
    state_topic: str = _opt("alerts/{device}/state", "alerts", "Retained per-device state topic (in alarm or not).")
    publish_scores: bool = _opt(False, "alerts", "Also publish every window's score on score_topic (QoS 0).")
    score_topic: str = _opt("scores/{device}", "alerts", "Topic for per-window scores when publish_scores is on.")
    feedback_margin: float = _opt(0.05, "alerts", "A false-alarm verdict raises the device's threshold to the alert's peak score x (1 + this), so the same episode raises nothing again.", minimum=0)
    feedback_max_factor: float = _opt(3.0, "alerts", "Feedback never raises a device's threshold above this many times its base threshold (warm-up or model).", minimum=1)
    feedback_half_life_s: float = _opt(604800.0, "alerts", "A feedback raise decays back to the base threshold with this half-life in seconds (default 7 days); 0: it never decays.", minimum=0)
    feedback_similarity: float = _opt(0.8, "alerts", "A feedback raise applies only to windows like the false alarm: the cosine similarity of a window's excess-error profile (which channels, high or low) to the false alarm's is at least this; other windows keep the base threshold. 0: the raise applies to every window.", minimum=0)
    drift_window: int = _opt(500, "alerts", "Drift notices: every this many windows a device's 90 % score quantile is compared with its calibration's (warm-up, or the model's validation scores); 0 turns drift notices off. They never change a threshold.", minimum=0)
    drift_ratio: float = _opt(1.5, "alerts", "A drift: that ratio above this (or below its inverse) in drift_sustain checks in a row.", minimum=1)
    drift_sustain: int = _opt(3, "alerts", "Consecutive out-of-bounds checks before a drift notice.", minimum=1)
    drift_topic: str = _opt("alerts/{device}/drift", "alerts", "Topic of drift notices (QoS 1; the numbers and a suggestion).")
    operating_topic: str = _opt("alerts/{device}/operating", "alerts", "Retained per-device operating state document (running, stopped, settling, out_of_distribution), published when it changes.")
    ood_windows: int = _opt(0, "alerts", "Out-of-distribution check: the first this many windows of a device after it starts (or runs again after a stop) are held back from the alert logic; when every one scores above ood_factor x the threshold, the device is reported once as out_of_distribution on operating_topic and raises no process alerts (windows_out_of_distribution) until this many windows in a row score below the threshold. Otherwise the held windows are decided as usual (a device's first alert comes up to this many windows later). 0: off.", minimum=0)
    ood_factor: float = _opt(3.0, "alerts", "A window of a device's start is far out when it scores above this many times the threshold (ood_windows).", minimum=1)
    # [health]
    sensor_checks: bool = _opt(True, "health", "Per-channel sensor health: a missing value (null, NaN, an absent channel) keeps the rest of its sample and is carried forward up to fill_limit samples; each channel of each device is checked (missing, stuck, out_of_range; the device stale) against the limits stored in the model and channel_limits; a missing or stuck channel is left out of the process score (an out-of-range one too with range_excludes); sensor faults are alerted on sensor_topic. Off: a message with a missing value is refused, as before.")
    fill_limit: int = _opt(-1, "health", "Samples a missing value is carried forward before the channel counts as missing; -1: the model's (5 for a model without health limits).", minimum=-1)
    stale_after_s: float = _opt(0.0, "health", "A device that sends nothing for this long is stale (a sensor alert; with sensor_checks off no alert, but an evidence episode waiting for the margin after its clear is written then); 0: the model's (10 sample periods, or 60 s).", minimum=0)
    range_hold: int = _opt(3, "health", "A channel is out_of_range after this many samples in a row outside its range (with range_excludes, a shorter excursion, a process spike, stays in the process score); per channel: channel_limits.NAME.range_hold.", minimum=1)
    range_excludes: bool = _opt(False, "health", "Leave a channel that is out_of_range out of the process score, as a missing or stuck one is. Off by default: an out-of-range value is a real reading, and a process excursion beyond the few hundred training rows' range (a closing valve's flow, a rotor's vibration) is what the process score must see; its out_of_range sensor alert is raised either way. On: a failed sensor's gross value raises only its sensor alert, at the cost of hiding process excursions that large (SKAB, 27 files, one run: F1 0.839 -> 0.613, docs/EVALUATION.md). A value frozen out of range past its stuck limit is left out either way.")
    degraded_share: float = _opt(0.5, "health", "A device with more than this share of its scored channels left out (missing or stuck; out of range too with range_excludes) is degraded: not scored until enough are healthy again (windows_degraded), in (0, 1]. More than this share of all its channels out of range at once: before the device has run in range since it started, it is out_of_distribution (an operating point far from training: reported once on operating_topic, not scored, no out_of_range alerts); after, a process excursion (scored, so the process alert raises with its top channels; no out_of_range alerts; range_excursions).", minimum=0)
    sensor_raise_after: int = _opt(1, "health", "Raise a sensor alert after this many samples in a row in a fault state (the fault limits already hold the persistence).", minimum=1)
    sensor_clear_after: int = _opt(5, "health", "Clear it after this many healthy samples in a row.", minimum=1)
    channel_limits: dict = _opt({}, "health", "Per-channel overrides of the model's learned limits, a table per channel: [health.channel_limits.NAME] with min, max, margin (out_of_range outside [min - margin, max + margin]), flat_tol, max_flat_samples (stuck after that many flat samples in a row; 0: not checked), fill_limit and range_hold.", no_flag=True)
    sensor_topic: str = _opt("health/{device}/alerts", "health", "Topic for sensor-fault alerts (raise/clear per channel and fault kind, QoS 1). Kept apart from alerts/: a sensor fault is never a process anomaly, and consumers of alerts/# see only those.")
    health_topic: str = _opt("health/{device}", "health", "Retained per-device health document topic (every channel's state, the excluded channels, degraded, stale).")
    # [runtime]
    instance: str = _opt("", "runtime", "Name of this daemon in topics and payloads; empty means the host name.")
    status_topic: str = _opt("edgewatch/{instance}/status", "runtime", "Retained online/offline status topic (offline also as Last Will).")
    stats_topic: str = _opt("edgewatch/{instance}/stats", "runtime", "Topic for periodic stats.")
    stats_interval_s: float = _opt(60.0, "runtime", "Publish and log stats this often; 0 turns periodic stats off.", minimum=0)
    log_format: str = _opt("text", "runtime", "Log format: text (human) or json (one object per line).", choices=("text", "json"))
    log_level: str = _opt("INFO", "runtime", "Log level.", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    log_interval_s: float = _opt(10.0, "runtime", "Bad-input log lines: at most one per reason per this many seconds.", minimum=0)
    homeassistant_discovery: bool = _opt(False, "runtime", "Publish retained Home Assistant MQTT discovery configs: each device appears with an Anomaly binary sensor and an Anomaly score sensor (turns score publishing on).")
    homeassistant_prefix: str = _opt("homeassistant", "runtime", "Home Assistant's MQTT discovery prefix.")
    metrics_port: int = _opt(0, "runtime", "Serve the stats counters as Prometheus metrics on http://metrics_addr:metrics_port/metrics; 0 turns it off (needs edgewatch[metrics]).", minimum=0)
    metrics_addr: str = _opt("127.0.0.1", "runtime", "Address the Prometheus metrics endpoint listens on (0.0.0.0: every interface).")
    commands: bool = _opt(False, "runtime", "Take operator commands (alert feedback, recalibrate) on command_topic and reply on reply_topic. Only an operator account may write that topic: grant it in the broker's ACL (deploy/mosquitto/acl).")
    command_topic: str = _opt("edgewatch/{instance}/command", "runtime", "Topic this daemon takes commands on (JSON, QoS 1), when commands is on.")
    reply_topic: str = _opt("edgewatch/{instance}/reply", "runtime", "Topic every command's reply (accepted or refused, and why) is published on.")
    state_dir: str = _opt("", "runtime", "Folder for the per-device calibrations and feedback raises (devices.json, kept across restarts) and the feedback log (feedback.jsonl); empty: kept in memory only.")
    # [topics]
    prefix: str = _opt("", "topics", "Prepended with a '/' to every topic this daemon reads or writes (input.topics, alert, state, score, operating, drift, sensor, health, status, stats, command, reply, rollout, shadow and evidence topics; not fleet.fleet_topic), whatever their values: 'site-1' turns sensors/{device}/data into site-1/sensors/{device}/data. Empty: no prefix. Home Assistant's discovery prefix stays its own.", flag="topic-prefix")
    # [nats]
    servers: str = _opt("nats://127.0.0.1:4222", "nats", "NATS server URLs, comma-separated (nats:// or tls://); the client fails over between them.", flag="nats-servers")
    group: str = _opt("edgewatch", "nats", "The partitioned consumer group this worker joins (created with `edgewatch group create`); also the instance name in alerts and states, shared by all its workers.", flag="nats-group")
    worker: str = _opt("", "nats", "This worker's name in the group (unique per process); empty: runtime.instance, or host name and process id.", flag="nats-worker")
    nats_user: str = _opt("", "nats", "NATS user name (with nats_password_file); empty: no user/password.")
    nats_password_file: str = _opt("", "nats", "File whose first line is the NATS password.")
    token_file: str = _opt("", "nats", "File whose first line is a NATS token.", flag="nats-token-file")
    creds_file: str = _opt("", "nats", "NATS credentials file (JWT and NKey seed, as made by nsc).", flag="nats-creds-file")
    nkey_file: str = _opt("", "nats", "NKey seed file (NKey authentication without a JWT).", flag="nats-nkey-file")
    nats_ca_file: str = _opt("", "nats", "CA certificate (PEM) to verify the NATS servers (TLS; tls:// URLs without it use the system CAs).")
    nats_cert_file: str = _opt("", "nats", "Client certificate (PEM) for mutual TLS to NATS.")
    nats_key_file: str = _opt("", "nats", "Client private key (PEM) for mutual TLS to NATS.")
    fetch_batch: int = _opt(1024, "nats", "Most messages one pull request of a partition asks for. They are scored and acknowledged in chunks: what the request delivered within 20 ms of a chunk's first message, at most this many. Larger: less CPU per message for the worker and nats-server (fewer requests and acknowledgements), more memory (up to this many payloads per owned partition).", flag="nats-fetch-batch", minimum=1)
    rebuild_s: float = _opt(0.0, "nats", "On taking a partition over, windows are rebuilt from this many seconds of the stream before its first unacknowledged message; 0: 2 x W x the model's sample period, or 300 s when the model has none.", flag="nats-rebuild-s", minimum=0)
    # [fleet]
    rollout: bool = _opt(False, "fleet", "Take part in model rollout over MQTT (docs/FLEET.md): download models announced for this gateway's target, verify size, SHA-256 and signature, validate them and run them as a shadow beside the live model; promote and roll back on command or by the rules below. Needs edgewatch[fleet] for signatures.")
    target: str = _opt("", "fleet", "This gateway's place in the fleet, e.g. site1/line1/gw3, matched against a published model's --target pattern; empty: the instance name.")
    fleet_topic: str = _opt("fleet", "fleet", "Root of the rollout topics (manifests, chunks, commands); not prefixed by topics.prefix. Only the workstation account may write there (deploy/mosquitto/acl).")
    public_key_file: str = _opt("", "fleet", "Ed25519 public key (PEM, from `edgewatch-train keygen`) that manifests and commands must be signed with.")
    allow_unsigned: bool = _opt(False, "fleet", "Accept unsigned (or wrongly signed) manifests and commands. Off: they are refused (rollout_refused).")
    staging_dir: str = _opt("/var/lib/edgewatch/models", "fleet", "Directory for downloads in progress (resumed after a restart), staged models and the rollout state (state.json).")
    shadow_windows: int = _opt(10000, "fleet", "Shadow a staged model for this many windows (one extra session.run per batch, no alerts published); 0: no window limit.", minimum=0)
    shadow_s: float = _opt(3600.0, "fleet", "... or this many seconds, whichever comes first; 0: no time limit. Then the comparison is final.", minimum=0)
    auto_promote: bool = _opt(False, "fleet", "Promote a candidate when its shadow ends and it passes: refused when its alerts on the same windows are both more than promote_max_ratio x the live model's and more than promote_max_extra_alerts more (small counts: the extra alerts decide; large ones: the ratio). Off: promotion is manual (`edgewatch-train promote`).")
    promote_max_ratio: float = _opt(1.5, "fleet", "Automatic promotion: the candidate's alerts over the live model's, at most (unless within promote_max_extra_alerts).", minimum=0)
    promote_max_extra_alerts: int = _opt(3, "fleet", "Automatic promotion: extra alerts of the candidate over the live model's, at most (unless within promote_max_ratio).", minimum=0)
    watch_s: float = _opt(3600.0, "fleet", "After a promotion, watch the new model's alerts this long and roll back automatically when they break the bound below; 0: no automatic rollback.", minimum=0)
    rollback_max_ratio: float = _opt(2.0, "fleet", "Automatic rollback when the promoted model raises more than this x the alerts the previous model raised in the shadow comparison (scaled to the windows scored since) ...", minimum=0)
    rollback_max_extra_alerts: int = _opt(5, "fleet", "... and more than this many extra alerts (both: one real fault after a promotion does not roll it back).", minimum=0)
    max_command_age_s: float = _opt(86400.0, "fleet", "Refuse promote/rollback commands stamped longer ago than this (a replayed old command); each command id is obeyed once.", minimum=1)
    rollout_topic: str = _opt("edgewatch/{instance}/rollout", "fleet", "Topic for rollout events (downloaded, refused, staged, shadow ended, promoted, rolled back; QoS 1).")
    shadow_topic: str = _opt("edgewatch/{instance}/shadow", "fleet", "Retained topic for the shadow comparison (published every stats interval while a shadow runs, and when it ends).")

    # -- derived values ---------------------------------------------------------------
    @property
    def instance_name(self) -> str:
        return sanitize_id(self.instance or socket.gethostname() or "edgewatch", 64)

    @property
    def mqtt_client_id(self) -> str:
        return self.client_id or f"edgewatch-{self.instance_name}"

    @property
    def fleet_target(self) -> str:
        return self.target or self.instance_name

    @property
    def pin(self) -> Pin:
        """The model pin (``[model] channels``, ``window``, ``family``)."""
        return Pin(tuple(self.channels), self.window, self.family)

    def resolve_password(self) -> str | None:
        """The MQTT password from password_file, config or the environment (in that order)."""
        if self.password_file:
            try:
                lines = Path(self.password_file).read_text().splitlines()
                return lines[0] if lines else ""
            except OSError as exc:
                raise ConfigError(f"mqtt.password_file: cannot read {self.password_file}: {exc.strerror}") from None
        if self.password:
            return self.password
        return os.environ.get(PASSWORD_ENV) or None

    def validate(self) -> Config:
        """Check types, ranges and choices; raise :class:`ConfigError` naming the first bad key."""
        for f in dataclasses.fields(self):
            name = f"{f.metadata['section']}.{f.name}"
            v = getattr(self, f.name)
            shown = "<redacted>" if f.metadata["secret"] else repr(v)  # a secret's value never reaches a message
            want = _TYPES[f.type]
            if want is float and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
                setattr(self, f.name, v)
            if not isinstance(v, want) or (want is not bool and isinstance(v, bool)):
                raise ConfigError(f"{name}: expected {want.__name__}, got {type(v).__name__} {shown}")
            if want is float and not math.isfinite(v):
                raise ConfigError(f"{name}: must be finite")
            if f.metadata["choices"] and v not in f.metadata["choices"]:
                same = [c for c in f.metadata["choices"] if isinstance(v, str) and c.lower() == v.lower()]
                if not same:
                    raise ConfigError(f"{name}: {shown} is not one of {', '.join(f.metadata['choices'])}")
                setattr(self, f.name, same[0])  # `info` for INFO, `CPU` for cpu: the choice as spelt here
            lo = f.metadata["minimum"]
            if lo is not None and v < lo:
                raise ConfigError(f"{name}: must be >= {lo}, got {shown}")
            if want is list and not all(isinstance(x, str) for x in v):
                raise ConfigError(f"{name}: expected a list of strings")
        if len(set(self.channels)) != len(self.channels):
            raise ConfigError("model.channels: names must be unique")
        if not 0 < self.clear_ratio <= 1:
            raise ConfigError(f"alerts.clear_ratio: must be in (0, 1], got {self.clear_ratio}")
        if self.feedback_similarity > 1:
            raise ConfigError(f"alerts.feedback_similarity: must be in [0, 1], got {self.feedback_similarity}")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ConfigError("mqtt.reconnect_max_s: must be >= reconnect_min_s")
        if self.metrics_port > 65535:
            raise ConfigError(f"runtime.metrics_port: must be <= 65535, got {self.metrics_port}")
        if not self.homeassistant_prefix or any(c in self.homeassistant_prefix for c in "+#"):
            raise ConfigError(f"runtime.homeassistant_prefix: {self.homeassistant_prefix!r} must be a topic without wildcards")
        if bool(self.cert_file) != bool(self.key_file):
            raise ConfigError("mqtt.cert_file: cert_file and key_file go together")
        if not self.broker.startswith(("mqtt://", "mqtts://")):
            raise ConfigError(f"mqtt.broker: {self.broker!r} must start with mqtt:// or mqtts://")
        if self.source.startswith(("nats://", "tls://")):
            self.servers, self.source = self.source, "nats"
        if self.source not in ("mqtt", "nats"):
            raise ConfigError(f"input.source: {self.source!r} is not mqtt, nats or nats:// server URLs")
        if self.source == "nats":
            if self.batching != "inline":
                raise ConfigError("inference.batching: input.source = nats scores on its fetch thread and "
                                  "acknowledges after scoring: use inline")
            if len(self.topics) != 1:
                raise ConfigError("input.topics: input.source = nats reads one input template (its subject)")
            if not self.group or not all(c.isalnum() or c in "-_" for c in self.group):
                raise ConfigError(f"nats.group: {self.group!r} must be letters, digits, - and _")
            if any(not u.strip().startswith(("nats://", "tls://")) for u in self.servers.split(",")):
                raise ConfigError(f"nats.servers: {self.servers!r} must be nats:// or tls:// URLs, comma-separated")
        if bool(self.nats_cert_file) != bool(self.nats_key_file):
            raise ConfigError("nats.nats_cert_file: nats_cert_file and nats_key_file go together")
        try:
            TopicRouter(self.topics)
        except TopicError as exc:
            raise ConfigError(f"input.topics: {exc}") from None
        for key in ("alert_topic", "state_topic", "score_topic", "operating_topic"):
            t = getattr(self, key)
            if "{device}" not in t or "+" in t or "#" in t:
                raise ConfigError(f"alerts.{key}: {t!r} needs '{{device}}' and no wildcards")
        if not 0 < self.degraded_share <= 1:
            raise ConfigError(f"health.degraded_share: must be in (0, 1], got {self.degraded_share}")
        _check_channel_limits(self.channel_limits)
        for key in ("sensor_topic", "health_topic"):
            t = getattr(self, key)
            if "{device}" not in t or "+" in t or "#" in t:
                raise ConfigError(f"health.{key}: {t!r} needs '{{device}}' and no wildcards")
        if "{device}" not in self.drift_topic or "+" in self.drift_topic or "#" in self.drift_topic:
            raise ConfigError(f"alerts.drift_topic: {self.drift_topic!r} needs '{{device}}' and no wildcards")
        # imported here: calibration needs numpy, and `edgewatch run` installs its SIGHUP handler before
        # anything heavy is imported (tests/reliability/test_signals.py)
        from edge_runtime.pipeline.calibration import CalibrationError, parse_warmup

        try:
            parse_warmup(self.warmup)
        except CalibrationError as exc:
            raise ConfigError(f"input.warmup: {exc}") from None
        if self.evidence_requests and not self.evidence_dir:
            raise ConfigError("alerts.evidence_requests: needs alerts.evidence_dir")
        for key in ("status_topic", "stats_topic", "command_topic", "reply_topic", "rollout_topic", "shadow_topic",
                    "fleet_topic", "evidence_request_topic", "evidence_reply_topic"):
            t = getattr(self, key)
            if "+" in t or "#" in t or not t:
                section = Config.__dataclass_fields__[key].metadata["section"]
                raise ConfigError(f"{section}.{key}: {t!r} must be a topic without wildcards")
        if self.rollout and not self.allow_unsigned and not self.public_key_file:
            raise ConfigError("fleet.public_key_file: fleet.rollout needs the workstation's public key "
                              "(or fleet.allow_unsigned = true)")
        return self


def _check_channel_limits(limits: dict) -> None:
    """``health.channel_limits``: a table of tables of numbers (names are checked against the model at load)."""
    for name, lim in limits.items():
        if not isinstance(lim, dict):
            raise ConfigError(f"health.channel_limits.{name}: expected a table (min, max, ...)")
        for k, v in lim.items():
            if k not in CHANNEL_LIMIT_KEYS:
                raise ConfigError(f"health.channel_limits.{name}.{k}: unknown key (one of {', '.join(CHANNEL_LIMIT_KEYS)})")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"health.channel_limits.{name}.{k}: expected a finite number, got {v!r}")
            if k in ("max_flat_samples", "fill_limit", "range_hold") and (v != int(v) or v < 0):
                raise ConfigError(f"health.channel_limits.{name}.{k}: expected an integer >= 0, got {v!r}")
            if k in ("margin", "flat_tol") and v < 0:
                raise ConfigError(f"health.channel_limits.{name}.{k}: must be >= 0, got {v!r}")
        if "min" in lim and "max" in lim and lim["min"] > lim["max"]:
            raise ConfigError(f"health.channel_limits.{name}: min > max")


_TYPES: dict[Any, type] = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict,
                           str: str, int: int, float: float, bool: bool, list: list, dict: dict}
CHANNEL_LIMIT_KEYS = ("min", "max", "margin", "flat_tol", "max_flat_samples", "fill_limit", "range_hold")


@dataclass(frozen=True)
class Option:
    """One documented configuration key."""

    section: str
    key: str
    type: type
    default: Any
    help: str
    flag: str | None  # None: not settable from the command line
    choices: tuple
    secret: bool

    @property
    def env(self) -> str:
        """Its environment variable: ``EDGEWATCH_<SECTION>_<KEY>``."""
        return f"EDGEWATCH_{self.section}_{self.key}".upper()


def options() -> list[Option]:
    """Every configuration key, in file order: the single source for flags, docs and the example file."""
    out = []
    for f in dataclasses.fields(Config):
        m = f.metadata
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
        flag = None if m["no_flag"] else (m["flag"] or f.name.replace("_", "-"))
        out.append(Option(m["section"], f.name, _TYPES[f.type], default, m["help"], flag, m["choices"], m["secret"]))
    return out


def secret_file_warnings(cfg: Config, config_file: str | os.PathLike | None) -> list[str]:
    """One warning per file holding a secret (config with a password, password file, TLS key) that any local user can read."""
    files = [("mqtt.password_file", cfg.password_file), ("mqtt.key_file", cfg.key_file)]
    if config_file and cfg.password:
        files.insert(0, ("--config (it holds mqtt.password)", str(config_file)))
    out = []
    for what, path in files:
        try:
            mode = os.stat(path).st_mode if path else 0
        except OSError:
            continue
        if mode & 0o004:
            out.append(f"{what}: {path} is world-readable (mode {mode & 0o777:04o}); chmod 600 or 640 it")
    return out


def load_toml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a TOML config into ``{key: value}``; unknown sections/keys are errors naming them."""
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"--config: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config: {path} is not valid TOML: {exc}") from None
    by_section = {(o.section, o.key) for o in options()}
    flat: dict[str, Any] = {}
    for section, body in doc.items():
        if section not in SECTIONS or not isinstance(body, dict):
            raise ConfigError(f"{section}: unknown section in {path} (expected one of {', '.join(SECTIONS)})")
        for key, value in body.items():
            if (section, key) not in by_section:
                known = [k for sec, k in by_section if sec == section]
                near = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else f" (keys of [{section}]: {', '.join(sorted(known))})"
                raise ConfigError(f"{section}.{key}: unknown key in {path}{hint}")
            flat[key] = value
    return flat


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _env_value(o: Option, raw: str) -> Any:
    """One variable's text as the option's type: numbers, true/false/1/0/yes/no/on/off, lists as a TOML array
    (``["a", "b"]``) or comma-separated."""
    text = raw.strip()
    try:
        if o.type is bool:
            if text.lower() not in _TRUE + _FALSE:
                raise ValueError(f"expected one of {'/'.join(_TRUE + _FALSE)}")
            return text.lower() in _TRUE
        if o.type is int:
            return int(text)
        if o.type is float:
            return float(text)
        if o.type is dict:
            return tomllib.loads(f"v = {text}")["v"]
        if o.type is list:
            if text.startswith("["):
                return tomllib.loads(f"v = {text}")["v"]
            return [part.strip() for part in text.split(",") if part.strip()]
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        shown = "<redacted>" if o.secret else repr(raw)
        raise ConfigError(f"{o.section}.{o.key}: {o.env}={shown} is not a valid {o.type.__name__} ({exc})") from None
    return raw


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``{key: value}`` from the ``EDGEWATCH_<SECTION>_<KEY>`` variables in ``environ``. A variable that starts with
    a section's prefix but names no option (a typo) is an error naming it, and so is one a letter or two away
    from an option's (a misspelt section); other ``EDGEWATCH_*`` names are ignored."""
    by_env = {o.env: o for o in options()}
    prefixes = tuple(f"EDGEWATCH_{s.upper()}_" for s in SECTIONS)
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if name in by_env:
            o = by_env[name]
            out[o.key] = _env_value(o, raw)
        elif name.startswith(prefixes):
            raise ConfigError(f"{name}: unknown environment variable (no such option; see deploy/edgewatch.toml)")
        elif name.startswith("EDGEWATCH_") and name not in (CONFIG_ENV, PASSWORD_ENV):
            near = difflib.get_close_matches(name, by_env, n=1, cutoff=0.9)  # a misspelt section
            if near:
                raise ConfigError(f"{name}: unknown environment variable; did you mean {near[0]}?")
    return out


def default_config_file(environ: Mapping[str, str], default: str = DEFAULT_CONFIG_PATH) -> str | None:
    """The config file to read when ``--config`` is not given: ``$EDGEWATCH_CONFIG`` (empty: none), else
    ``default`` when it exists, else none."""
    if CONFIG_ENV in environ:
        return environ[CONFIG_ENV] or None
    return default if os.path.isfile(default) else None


def build_config(config_file: str | None = None, overrides: dict[str, Any] | None = None,
                 environ: Mapping[str, str] | None = None) -> Config:
    """Defaults, then the TOML file, then the ``EDGEWATCH_*`` variables of ``environ`` (none when ``None``), then
    ``overrides`` (flags given on the command line); validated."""
    values: dict[str, Any] = {}
    if config_file:
        values.update(load_toml(config_file))
    if environ is not None:
        values.update(env_overrides(environ))
    for k, v in (overrides or {}).items():
        if k not in Config.__dataclass_fields__:
            raise ConfigError(f"{k}: unknown key")
        values[k] = v
    return with_topic_prefix(Config(**values).validate())


PREFIXED_TOPICS = ("alert_topic", "state_topic", "score_topic", "status_topic", "stats_topic", "operating_topic", "drift_topic",
                   "command_topic", "reply_topic", "rollout_topic", "shadow_topic",
                   "evidence_request_topic", "evidence_reply_topic", "sensor_topic", "health_topic")


def topic_prefix(prefix: str, option: str = "topics.prefix") -> str:
    """``prefix`` without its outer '/', to go in front of a topic with one '/' ('' for none); a
    :class:`ConfigError` naming ``option`` for one that is no topic level (or levels) or holds a wildcard. The
    one rule for the daemon's ``topics.prefix`` and the tools' ``--topic-prefix`` (simulate, replay)."""
    p = prefix.strip("/")
    if prefix and (not p or any(c in p for c in "+#")):
        raise ConfigError(f"{option}: {prefix!r} must be a topic level (or levels) without wildcards")
    return p


def prefixed(prefix: str, topic: str) -> str:
    """``topic`` under a :func:`topic_prefix` ``prefix`` ('site-1', 'sensors/{device}/data' ->
    'site-1/sensors/{device}/data'); unchanged for ''."""
    return f"{prefix}/{topic}" if prefix else topic


def with_topic_prefix(cfg: Config) -> Config:
    """``cfg`` with ``topics.prefix`` put in front of every topic; the result's prefix is empty (applied once)."""
    p = topic_prefix(cfg.prefix)
    if not p:
        return cfg
    changed: dict[str, Any] = {k: prefixed(p, getattr(cfg, k)) for k in PREFIXED_TOPICS}
    changed["topics"] = [prefixed(p, t) for t in cfg.topics]
    return dataclasses.replace(cfg, prefix="", **changed).validate()


EXAMPLE_HEADER = f"""\
# edgewatch daemon configuration: every option, at its default.
# `edgewatch run` reads {DEFAULT_CONFIG_PATH} when it exists (or --config FILE, or ${CONFIG_ENV}).
# Precedence: command-line flag > EDGEWATCH_<SECTION>_<KEY> environment variable > this file > default.
# Unknown keys and bad values stop the daemon at start with a message naming the key (exit code 78).
# Keep secrets out of this file: set mqtt.password_file or the {PASSWORD_ENV} environment variable.
# Generated from edge_runtime/config.py (the single place each option is documented); a test checks they agree:
#   python3 -c 'from edge_runtime.config import example_toml; print(example_toml(), end="")' > deploy/edgewatch.toml
"""
EDIT_ME = {"path": "EDIT THIS: the daemon refuses to start until model.path names your model file."}


def example_toml() -> str:
    """``deploy/edgewatch.toml``: every key at its default, its description, flag and variable as comments."""
    lines = [EXAMPLE_HEADER.rstrip("\n")]
    section = None
    for o in options():
        if o.section != section:
            section = o.section
            lines += ["", f"[{section}]"]
        if o.key in EDIT_ME:
            lines.append(f"# {EDIT_ME[o.key]}")
        lines.append(f"# {o.help}" + (f"  Flag: --{o.flag}" if o.flag else "") + f"  Env: {o.env}")
        lines.append(f"{o.key} = {_toml_value(o.default)}")
    return "\n".join(lines) + "\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    return repr(v)


def reference_markdown() -> str:
    """The configuration reference table (docs/CONFIGURATION.md)."""
    rows = ["| key | flag | environment | default | description |", "|---|---|---|---|---|"]
    for o in options():
        flag = f"`--{o.flag}`" if o.flag else "(none)"
        rows.append(f"| `{o.section}.{o.key}` | {flag} | `{o.env}` | `{_toml_value(o.default)}` | {o.help} |")
    return "\n".join(rows) + "\n"
