"""Optional Prometheus ``/metrics`` endpoint with the same counters as the stats topic.

prometheus-client is an optional extra (``pip install edgewatch[metrics]``): this module imports
it only inside :func:`start_metrics_server` / :class:`StatsCollector`, so the base edge install
works without it. :func:`metric_families` maps a :meth:`edge_runtime.pipeline.stats.Stats.snapshot`
dict to metric descriptions and is pure.

Mapping (prefix ``edgewatch_``):

- each counter in :data:`edge_runtime.pipeline.stats.COUNTERS` -> counter ``edgewatch_<name>_total``
- ``drops`` by reason -> counter ``edgewatch_dropped_total{reason="..."}``
- ``batch_size_mean``, ``inference_ms_p50``/``p99`` (as seconds), ``uptime_s``, ``devices_active`` and
  any other numeric snapshot key (but the wall-clock ``time``) -> gauges
- ``provider`` / ``model_id`` / ``instance`` -> ``edgewatch_info{...} 1``
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from edge_runtime.pipeline.stats import COUNTERS

log = logging.getLogger(__name__)

PREFIX = "edgewatch"
_GAUGE_HELP = {
    "batch_size_mean": "Mean windows per inference batch over recent batches.",
    "inference_seconds_p50": "Median inference time per batch over recent batches, seconds.",
    "inference_seconds_p99": "99th percentile inference time per batch over recent batches, seconds.",
    "uptime_seconds": "Seconds since the daemon started.",
}
_INFO_KEYS = ("instance", "provider", "model_id", "version")


class MetricsUnavailable(RuntimeError):
    """prometheus-client is not installed."""


@dataclass
class Family:
    """One metric family: ``kind`` counter/gauge/info, samples as (labels, value)."""

    name: str
    kind: str
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def metric_families(snap: dict[str, Any]) -> list[Family]:
    """The Prometheus view of one stats snapshot (see module docstring). Pure."""
    fams: list[Family] = []
    for name in COUNTERS:
        v = _num(snap.get(name))
        if v is not None:
            fams.append(Family(f"{PREFIX}_{name}", "counter", f"Stats counter '{name}'.", [({}, v)]))
    drops = snap.get("drops") or {}
    fams.append(Family(
        f"{PREFIX}_dropped", "counter", "Items dropped, by reason.",
        [({"reason": str(r)}, float(n)) for r, n in sorted(drops.items())],
    ))
    gauges: dict[str, float] = {}
    for key, value in snap.items():
        v = _num(value)
        if key in COUNTERS or key in ("drops", "dropped_total", "time") or v is None:
            continue
        if key.startswith("inference_ms_"):
            gauges[f"inference_seconds_{key[len('inference_ms_'):]}"] = v / 1000.0
        elif key == "uptime_s":
            gauges["uptime_seconds"] = v
        else:
            gauges[key] = v
    for key, v in sorted(gauges.items()):
        fams.append(Family(f"{PREFIX}_{key}", "gauge", _GAUGE_HELP.get(key, f"Stats value '{key}'."), [({}, v)]))
    info = {k: str(snap[k]) for k in _INFO_KEYS if isinstance(snap.get(k), str | int | float) and not isinstance(snap.get(k), bool)}
    if info:
        fams.append(Family(f"{PREFIX}", "info", "The daemon's identity.", [(info, 1.0)]))
    return fams


class StatsCollector:
    """A prometheus-client collector that reads ``snapshot()`` at every scrape."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

        for fam in metric_families(self.snapshot()):
            if fam.kind == "info":
                labels = fam.samples[0][0]
                info = InfoMetricFamily(fam.name, fam.help, labels=list(labels))
                info.add_metric([], labels)
                yield info
                continue
            label_names = sorted(fam.samples[0][0]) if fam.samples else (["reason"] if fam.name.endswith("dropped") else [])
            cls = CounterMetricFamily if fam.kind == "counter" else GaugeMetricFamily
            m = cls(fam.name, fam.help, labels=label_names)
            for labels, v in fam.samples:
                m.add_metric([labels[k] for k in label_names], v)
            yield m


class MetricsServer:
    """A running ``/metrics`` HTTP server; :meth:`close` stops it."""

    def __init__(self, httpd: Any, thread: threading.Thread, port: int) -> None:
        self._httpd = httpd
        self._thread = thread
        self.port = port

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def start_metrics_server(
    snapshot: Callable[[], dict[str, Any]], port: int, addr: str = "127.0.0.1"
) -> MetricsServer:
    """Serve ``snapshot()`` as Prometheus metrics on ``http://addr:port/metrics`` (port 0: any free).

    Raises :class:`MetricsUnavailable` when prometheus-client is missing.
    """
    try:
        from prometheus_client import CollectorRegistry, start_http_server
    except ImportError:
        raise MetricsUnavailable(
            "metrics_port is set but prometheus-client is not installed: pip install 'edgewatch[metrics]'"
        ) from None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(snapshot))
    httpd, thread = start_http_server(port, addr=addr, registry=registry)
    real_port = httpd.server_address[1]
    log.info("Prometheus metrics on http://%s:%d/metrics", addr, real_port)
    return MetricsServer(httpd, thread, real_port)
