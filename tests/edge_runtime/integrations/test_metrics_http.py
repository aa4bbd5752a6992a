"""Prometheus /metrics: the mapping from the stats snapshot, the HTTP endpoint, and the optional import."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request

import pytest

from edge_runtime.integrations.metrics_http import (
    MetricsUnavailable,
    metric_families,
    start_metrics_server,
    stats_histograms,
)
from edge_runtime.pipeline.stats import COUNTERS, Stats

prom_parser = pytest.importorskip("prometheus_client.parser")


def snapshot() -> dict:
    s = Stats()
    s.incr("messages", 7)
    s.incr("samples", 70)
    s.drop("malformed_json", 2)
    s.drop("queue_full", 5)
    s.lose("not_connected", 3)
    s.record_batch(4, 0.002)
    return s.snapshot(instance="gw1", provider="CPUExecutionProvider", model_id="abc", devices_active=3,
                      queue_windows=0, connected=True, time=1.0)


def test_every_stats_counter_becomes_a_counter() -> None:
    fams = {f.name: f for f in metric_families(snapshot())}
    for name in COUNTERS:
        assert fams[f"edgewatch_{name}"].kind == "counter"
    assert fams["edgewatch_messages"].samples == [({}, 7.0)]
    assert fams["edgewatch_windows_scored"].samples == [({}, 4.0)]


def test_drops_by_reason_and_gauges_and_info() -> None:
    fams = {f.name: f for f in metric_families(snapshot())}
    assert fams["edgewatch_dropped"].samples == [({"reason": "malformed_json"}, 2.0), ({"reason": "queue_full"}, 5.0)]
    assert fams["edgewatch_devices_active"].kind == "gauge"
    assert fams["edgewatch_devices_active"].samples == [({}, 3.0)]
    assert fams["edgewatch_connected"].kind == "gauge"
    assert fams["edgewatch_connected"].samples == [({}, 1.0)]  # a bool as 0/1
    assert "edgewatch_time" not in fams  # a wall-clock stamp is not a metric
    assert "edgewatch_dropped_total" not in fams  # the sum is what Prometheus computes itself
    # outgoing messages lost are their own family, not drops of the input
    assert fams["edgewatch_publish_lost"].kind == "counter"
    # every known reason from 0 (a rate or an alert rule works before the first loss)
    assert fams["edgewatch_publish_lost"].samples == [({"reason": "critical_lost"}, 0.0),
                                                      ({"reason": "discovery_dropped"}, 0.0),
                                                      ({"reason": "not_connected"}, 3.0),
                                                      ({"reason": "outgoing_full"}, 0.0)]
    assert "edgewatch_publish_lost_total" not in fams
    # quantiles and means of recent batches stay in the stats document: Prometheus has the histogram
    assert not [n for n in fams if "_p50" in n or "_p99" in n or n.endswith("_mean") or "_ms" in n]
    assert fams["edgewatch"].samples == [({"name": "gw1", "provider": "CPUExecutionProvider", "model_id": "abc"}, 1.0)]


def test_connected_false_is_zero() -> None:
    fams = {f.name: f for f in metric_families(Stats().snapshot(connected=False))}
    assert fams["edgewatch_connected"].samples == [({}, 0.0)]


def test_latency_histograms_have_cumulative_buckets_sum_and_count() -> None:
    s = Stats()
    for sec in (0.0004, 0.0004, 0.003, 7.0):  # 7 s: beyond the last bound, +Inf only
        s.record_batch(2, sec)
    s.record_latency(0.002, 5)
    fams = {f.name: f for f in metric_families(s.snapshot(), stats_histograms(s))}
    h = fams["edgewatch_inference_duration_seconds"]
    assert h.kind == "histogram"
    le = {lb["le"]: v for lb, v in h.samples}
    assert (le["0.00025"], le["0.0005"], le["0.0025"], le["0.005"], le["2.5"], le["+Inf"]) == (0, 2, 2, 3, 3, 4)
    assert h.sum == pytest.approx(7.0038)
    assert list(le) == sorted(le, key=lambda b: float(b))  # increasing bounds, +Inf last
    w = {lb["le"]: v for lb, v in fams["edgewatch_window_latency_seconds"].samples}
    assert (w["0.001"], w["0.0025"], w["+Inf"]) == (0, 5, 5)


def test_metric_names_follow_prometheus_conventions() -> None:
    s = Stats()
    s.record_batch(1, 0.001)
    for fam in metric_families(snapshot(), stats_histograms(s)):
        assert re.fullmatch(r"edgewatch(_[a-z0-9]+)*", fam.name), fam.name
        assert not fam.name.endswith("_total"), "prometheus-client adds _total to counters"
        assert not re.search(r"_(ms|millis|milliseconds|s|secs)(_|$)", fam.name), f"{fam.name}: base units, spelled out"
        if fam.kind == "histogram":
            assert fam.name.endswith("_seconds")


def test_http_endpoint_serves_the_live_counters() -> None:
    stats = Stats()
    server = start_metrics_server(lambda: stats.snapshot(provider="CPUExecutionProvider"), 0)
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"

        def scrape() -> dict[str, float]:
            text = urllib.request.urlopen(url, timeout=5).read().decode()
            return {(s.name, tuple(sorted(s.labels.items()))): s.value
                    for fam in prom_parser.text_string_to_metric_families(text) for s in fam.samples}

        first = scrape()
        assert first[("edgewatch_messages_total", ())] == 0
        stats.incr("messages", 3)
        stats.drop("non_finite")
        second = scrape()
        assert second[("edgewatch_messages_total", ())] == 3
        assert second[("edgewatch_dropped_total", (("reason", "non_finite"),))] == 1
        assert second[("edgewatch_info", (("provider", "CPUExecutionProvider"),))] == 1
        assert second[("process_resident_memory_bytes", ())] > 1e6  # process metrics from /proc
        assert second[("process_cpu_seconds_total", ())] > 0
        assert second[("process_open_fds", ())] > 0
    finally:
        server.close()


def test_missing_prometheus_client_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails as if not installed
    with pytest.raises(MetricsUnavailable, match=r"pip install 'edgewatch\[metrics\]'"):
        start_metrics_server(dict, 0)


def test_importing_the_module_does_not_import_prometheus_client() -> None:
    code = "import sys, edge_runtime.integrations.metrics_http; assert 'prometheus_client' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- wired into the daemon (real Mosquitto, real model) ------------------------------------------


def feed_and_scrape(d, pub, port: int, device: str, n: int) -> str:
    """Send ``n`` normal samples and one malformed message to ``device``, wait until scored, scrape."""
    import json

    from edge_runtime.tools.synthetic import normal_series
    from tests.edge_runtime.mqtt_helpers import idle

    x = normal_series(n, 4, seed=0)
    for i in range(n):
        pub.send(f"sensors/{device}/data", json.dumps({"ts": 1_700_000_000 + i * 0.1, "values": x[i].tolist()}))
    pub.send(f"sensors/{device}/data", b"{not json")  # a drop: dropped_total gets its reason label
    pub.flush()
    idle(d)
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def test_daemon_serves_metrics_matching_its_stats(mosquitto, demo_model_path) -> None:
    from edge_runtime.tools.localbroker import free_port
    from tests.edge_runtime.mqtt_helpers import Publisher, running_daemon

    port = free_port()
    pub = Publisher(mosquitto.port)
    try:
        with running_daemon(mosquitto.url, demo_model_path, metrics_port=port) as d:
            text = feed_and_scrape(d, pub, port, "m1", 100)
            got = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for fam in prom_parser.text_string_to_metric_families(text) for s in fam.samples}
            snap = d.stats_doc()
            assert got[("edgewatch_messages_total", ())] == snap["messages"] == 101
            assert got[("edgewatch_windows_scored_total", ())] == snap["windows_scored"] > 0
            assert got[("edgewatch_dropped_total", (("reason", "malformed_json"),))] == 1
            assert got[("edgewatch_devices_active", ())] == 1
            assert got[("edgewatch_connected", ())] == 1
            n_batches = got[("edgewatch_inference_duration_seconds_count", ())]
            assert n_batches == snap["batches"] > 0
            assert got[("edgewatch_inference_duration_seconds_bucket", (("le", "+Inf"),))] == n_batches
            assert got[("edgewatch_window_latency_seconds_count", ())] == snap["windows_scored"]
            assert 0 < got[("edgewatch_window_latency_seconds_sum", ())] < 10 * snap["windows_scored"]
    finally:
        pub.close()
    with pytest.raises(OSError):  # the endpoint stops with the daemon
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_daemon_refuses_a_busy_metrics_port(mosquitto, demo_model_path) -> None:
    import socket

    from edge_runtime.config import ConfigError
    from edge_runtime.service.daemon import Daemon
    from tests.edge_runtime.mqtt_helpers import daemon_config

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        with pytest.raises(ConfigError, match="runtime.metrics_port"):
            Daemon(daemon_config(mosquitto.url, demo_model_path, metrics_port=busy))


def test_device_thresholds_are_a_gauge_per_device() -> None:
    from edge_runtime.integrations.metrics_http import metric_families

    fams = {f.name: f for f in metric_families({"device_thresholds": {"d1": 2.5, "d2": 1.5}})}
    fam = fams["edgewatch_device_threshold"]
    assert fam.kind == "gauge" and fam.samples == [({"device": "d1"}, 2.5), ({"device": "d2"}, 1.5)]
    assert "edgewatch_device_thresholds" not in fams
