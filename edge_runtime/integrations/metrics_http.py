"""Optional Prometheus ``/metrics`` endpoint: the stats counters, latency histograms and process metrics.

prometheus-client is an optional extra (``pip install edgewatch[metrics]``): this module imports it only
inside :func:`start_metrics_server` / the collectors, so the base edge install works without it.
:func:`metric_families` maps a :meth:`edge_runtime.pipeline.stats.Stats.snapshot` dict (and the
:class:`~edge_runtime.pipeline.histogram.Histogram` snapshots) to metric descriptions and is pure.

Names follow Prometheus conventions (base units, ``_total`` on counters; prefix ``edgewatch_``):

- each counter in :data:`edge_runtime.pipeline.stats.COUNTERS` -> ``edgewatch_<name>_total``
- ``drops`` by reason -> ``edgewatch_dropped_total{reason="..."}`` (input and work dropped); ``publish_lost`` by
  reason -> ``edgewatch_publish_lost_total{reason="..."}`` (outgoing messages given up)
- ``values_missing`` by reason -> ``edgewatch_values_missing_total{reason="..."}``; ``sensor_faults`` by fault
  kind -> ``edgewatch_sensor_faults_total{kind="..."}``
- histograms ``edgewatch_inference_duration_seconds`` (one per ``session.run`` batch) and
  ``edgewatch_window_latency_seconds`` (per window: arrival of the message that completed it -> scored)
- gauges ``edgewatch_connected`` (0/1), ``edgewatch_devices_active``, ``edgewatch_queue_windows``,
  ``edgewatch_uptime_seconds`` and any other numeric snapshot key; the recent-batch summaries of the stats
  document (``inference_ms_p50``/``p99``, ``batch_size_mean``) are left out: Prometheus computes them from the
  histogram and the counters (``histogram_quantile``, ``rate(windows_scored_total) / rate(batches_total)``)
- ``edgewatch_device_threshold{device="..."}``: each device's own threshold where it is not the model's
  (calibrated by its warm-up or raised by a false-alarm verdict for every window; at most 1,000 devices), and
  ``edgewatch_device_threshold_feedback{device="..."}``: the highest threshold its windows like a false alarm
  get (a verdict raises it for those only, ``alerts.feedback_similarity``)
- ``edgewatch_info{name, provider, model_id} 1`` (``name``: the daemon's instance name; Prometheus' own
  ``instance`` label names the scrape target)
- ``process_*`` (CPU seconds, resident memory, open fds, start time; Linux ``/proc``) and ``python_*`` from
  prometheus-client's own collectors.

The HTTP server bounds what idle clients can hold: each connection times out after ``timeout_s`` without a
byte, and at most ``max_connections`` are served at once (more are closed at once and counted in
``edgewatch_metrics_refused_total``), so a crowd of idle sockets cannot pile up threads (``TasksMax``).
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edge_runtime.pipeline.histogram import HistogramSnapshot
from edge_runtime.pipeline.stats import COUNTERS, LOST_REASONS, Stats

log = logging.getLogger(__name__)

PREFIX = "edgewatch"
MAX_CONNECTIONS = 8  # concurrent scrapes; Prometheus itself uses one connection per target
TIMEOUT_S = 5.0  # an idle or dribbling client is dropped after this long without a byte
_GAUGE_HELP = {
    "connected": "1 while the daemon is connected to its broker, else 0.",
    "devices_active": "Devices with a window buffer now.",
    "queue_windows": "Windows waiting to be scored.",
    "uptime_seconds": "Seconds since the daemon started.",
}
_HISTOGRAM_HELP = {
    "inference_duration_seconds": "Model inference time per batch (one session.run), seconds.",
    "window_latency_seconds": "Per window: seconds from the arrival of the message that completed it to its score.",
}
_NOT_GAUGES = {"drops", "dropped_total", "publish_lost", "publish_lost_total", "values_missing", "sensor_faults", "time", "device_thresholds",
               "device_thresholds_feedback",
               "inference_ms_p50", "inference_ms_p99", "batch_size_mean"}
# snapshot key -> label of edgewatch_info ("instance" is Prometheus' own target label: the daemon's name is "name")
_INFO_LABELS = {"instance": "name", "provider": "provider", "model_id": "model_id", "version": "version"}


class MetricsUnavailable(RuntimeError):
    """prometheus-client is not installed."""


@dataclass
class Family:
    """One metric family: ``kind`` counter/gauge/info/histogram, samples as (labels, value).

    A histogram's ``samples`` are its cumulative buckets as ``({"le": bound}, count)``, +Inf last, and
    ``sum`` its sum."""

    name: str
    kind: str
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)
    sum: float = 0.0


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)  # connected: 0/1
    if not isinstance(v, int | float):
        return None
    return float(v)


def stats_histograms(stats: Stats) -> dict[str, HistogramSnapshot]:
    """The daemon's histograms by metric name (without the prefix)."""
    return {"inference_duration_seconds": stats.inference_seconds.snapshot(),
            "window_latency_seconds": stats.window_latency_seconds.snapshot()}


def _histogram(name: str, h: HistogramSnapshot) -> Family:
    buckets = [({"le": repr(float(b))}, float(c)) for b, c in zip(h.bounds, h.counts, strict=True)]
    buckets.append(({"le": "+Inf"}, float(h.count)))
    return Family(f"{PREFIX}_{name}", "histogram", _HISTOGRAM_HELP.get(name, name), buckets, h.sum)


def metric_families(snap: dict[str, Any], histograms: dict[str, HistogramSnapshot] | None = None) -> list[Family]:
    """The Prometheus view of one stats snapshot and its histograms (see module docstring). Pure."""
    fams: list[Family] = []
    for name in COUNTERS:
        v = _num(snap.get(name))
        if v is not None:
            fams.append(Family(f"{PREFIX}_{name}", "counter", f"Stats counter '{name}'.", [({}, v)]))
    drops = snap.get("drops") or {}
    fams.append(Family(
        f"{PREFIX}_dropped", "counter", "Input items (messages, samples, windows) and work dropped, by reason.",
        [({"reason": str(r)}, float(n)) for r, n in sorted(drops.items())],
    ))
    lost = {**dict.fromkeys(LOST_REASONS, 0), **(snap.get("publish_lost") or {})}  # the known reasons from 0
    fams.append(Family(
        f"{PREFIX}_publish_lost", "counter", "Outgoing messages given up (never sent), by reason.",
        [({"reason": str(r)}, float(n)) for r, n in sorted(lost.items())],
    ))
    for key, label, what in (("values_missing", "reason", "Missing sensor values (kept samples), by reason."),
                             ("sensor_faults", "kind", "Sensor-fault alerts raised, by fault kind.")):
        fams.append(Family(f"{PREFIX}_{key}", "counter", what,
                           [({label: str(r)}, float(n)) for r, n in sorted((snap.get(key) or {}).items())]))
    for name, h in sorted((histograms or {}).items()):
        fams.append(_histogram(name, h))
    gauges: dict[str, float] = {}
    for key, value in snap.items():
        v = _num(value)
        if key in COUNTERS or key in _NOT_GAUGES or key in _INFO_LABELS or v is None:
            continue
        gauges["uptime_seconds" if key == "uptime_s" else key] = v
    for key, v in sorted(gauges.items()):
        fams.append(Family(f"{PREFIX}_{key}", "gauge", _GAUGE_HELP.get(key, f"Stats value '{key}'."), [({}, v)]))
    per_device = snap.get("device_thresholds")
    if isinstance(per_device, dict) and per_device:
        fams.append(Family(f"{PREFIX}_device_threshold", "gauge", "A device's own threshold (warm-up calibration "
                           "and feedback raise), for devices whose threshold is not the model's.",
                           [({"device": str(d)}, float(v)) for d, v in sorted(per_device.items())]))
    raised = snap.get("device_thresholds_feedback")
    if isinstance(raised, dict) and raised:
        fams.append(Family(f"{PREFIX}_device_threshold_feedback", "gauge", "The highest threshold a device's "
                           "windows like a false alarm it was told of get (alerts.feedback_*), for devices with a "
                           "feedback raise.", [({"device": str(d)}, float(v)) for d, v in sorted(raised.items())]))
    info = {label: str(snap[k]) for k, label in _INFO_LABELS.items()
            if isinstance(snap.get(k), str | int | float) and not isinstance(snap.get(k), bool)}
    if info:
        fams.append(Family(f"{PREFIX}", "info", "The daemon's identity.", [(info, 1.0)]))
    return fams


class StatsCollector:
    """A prometheus-client collector that reads ``snapshot()`` (and ``histograms()``) at every scrape."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]],
                 histograms: Callable[[], dict[str, HistogramSnapshot]] | None = None,
                 refused: Callable[[], int] | None = None) -> None:
        self.snapshot = snapshot
        self.histograms = histograms
        self.refused = refused

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
            InfoMetricFamily,
        )

        hists = self.histograms() if self.histograms is not None else None
        for fam in metric_families(self.snapshot(), hists):
            if fam.kind == "info":
                labels = fam.samples[0][0]
                info = InfoMetricFamily(fam.name, fam.help, labels=list(labels))
                info.add_metric([], labels)
                yield info
                continue
            if fam.kind == "histogram":
                yield HistogramMetricFamily(fam.name, fam.help, buckets=[(lb["le"], v) for lb, v in fam.samples],
                                            sum_value=fam.sum)
                continue
            label_names = sorted(fam.samples[0][0]) if fam.samples else (["reason"] if fam.name.endswith("dropped") else [])
            cls = CounterMetricFamily if fam.kind == "counter" else GaugeMetricFamily
            m = cls(fam.name, fam.help, labels=label_names)
            for labels, v in fam.samples:
                m.add_metric([labels[k] for k in label_names], v)
            yield m
        if self.refused is not None:
            yield CounterMetricFamily(f"{PREFIX}_metrics_refused", "Scrape connections closed unserved: "
                                      "max_connections were busy.", value=self.refused())


class BoundedHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server with at most ``max_connections`` handler threads; more are closed unserved."""

    daemon_threads = True
    request_queue_size = 64  # the listen backlog: refused connections are accepted and closed, not left waiting

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], max_connections: int) -> None:
        self._slots = threading.BoundedSemaphore(max_connections)
        self.refused = 0
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer (broken pipe, reset) is routine: one debug line, no traceback."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            log.debug("metrics http: %s: %s", client_address, exc)
        else:
            log.warning("metrics http: error answering %s: %s: %s", client_address, type(exc).__name__, exc)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def _handler(registry: Any, timeout_s: float) -> type[BaseHTTPRequestHandler]:
    from prometheus_client.exposition import choose_encoder

    class MetricsHandler(BaseHTTPRequestHandler):
        timeout = timeout_s  # StreamRequestHandler: the socket's timeout, per read
        protocol_version = "HTTP/1.0"  # one request per connection: nothing is kept open after it

        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] not in ("/metrics", "/"):
                self.send_error(404, "only /metrics here")
                return
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            body = encoder(registry)
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
            log.debug("metrics http: " + format, *args)

    return MetricsHandler


class MetricsServer:
    """A running ``/metrics`` HTTP server; :meth:`close` stops it."""

    def __init__(self, httpd: BoundedHTTPServer, thread: threading.Thread, port: int) -> None:
        self._httpd = httpd
        self._thread = thread
        self.port = port

    @property
    def refused(self) -> int:
        return self._httpd.refused

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def start_metrics_server(
    snapshot: Callable[[], dict[str, Any]], port: int, addr: str = "127.0.0.1", stats: Stats | None = None,
    max_connections: int = MAX_CONNECTIONS, timeout_s: float = TIMEOUT_S,
) -> MetricsServer:
    """Serve ``snapshot()`` (and ``stats``' histograms) as Prometheus metrics on ``http://addr:port/metrics``
    (port 0: any free).

    Raises :class:`MetricsUnavailable` when prometheus-client is missing, ``OSError`` when the port is taken.
    """
    try:
        from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
    except ImportError:
        raise MetricsUnavailable(
            "metrics_port is set but prometheus-client is not installed: pip install 'edgewatch[metrics]'"
        ) from None
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)  # process_* from /proc/self (Linux; nothing elsewhere)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    holder: list[BoundedHTTPServer] = []
    registry.register(StatsCollector(snapshot, (lambda: stats_histograms(stats)) if stats is not None else None,
                                     lambda: holder[0].refused if holder else 0))
    httpd = BoundedHTTPServer((addr, port), _handler(registry, timeout_s), max_connections)
    holder.append(httpd)
    thread = threading.Thread(target=httpd.serve_forever, name="edgewatch-metrics", daemon=True)
    thread.start()
    real_port = httpd.server_address[1]
    log.info("Prometheus metrics on http://%s:%d/metrics", addr, real_port)
    return MetricsServer(httpd, thread, int(real_port))
