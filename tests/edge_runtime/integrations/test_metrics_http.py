"""Prometheus /metrics: the mapping from the stats snapshot, the HTTP endpoint, and the optional import."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

import pytest

from edge_runtime.integrations.metrics_http import MetricsUnavailable, metric_families, start_metrics_server
from edge_runtime.pipeline.stats import COUNTERS, Stats

prom_parser = pytest.importorskip("prometheus_client.parser")


def snapshot() -> dict:
    s = Stats()
    s.incr("messages", 7)
    s.incr("samples", 70)
    s.drop("malformed_json", 2)
    s.drop("queue_full", 5)
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
    assert fams["edgewatch_inference_seconds_p50"].samples[0][1] == pytest.approx(0.002)
    assert fams["edgewatch_batch_size_mean"].samples == [({}, 4.0)]
    assert "edgewatch_connected" not in fams  # booleans are not numbers here
    assert "edgewatch_time" not in fams  # a wall-clock stamp is not a metric
    assert "edgewatch_dropped_total" not in fams  # the sum is what Prometheus computes itself
    assert fams["edgewatch"].samples == [({"instance": "gw1", "provider": "CPUExecutionProvider", "model_id": "abc"}, 1.0)]


def test_none_latencies_before_the_first_batch_are_left_out() -> None:
    names = {f.name for f in metric_families(Stats().snapshot())}
    assert "edgewatch_inference_seconds_p50" not in names
    assert "edgewatch_messages" in names


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


def test_daemon_serves_metrics_matching_its_stats(mosquitto, demo_model_path) -> None:
    import json

    from edge_runtime.tools.localbroker import free_port
    from edge_runtime.tools.synthetic import normal_series
    from tests.edge_runtime.mqtt_helpers import Publisher, idle, running_daemon

    port = free_port()
    pub = Publisher(mosquitto.port)
    try:
        with running_daemon(mosquitto.url, demo_model_path, metrics_port=port) as d:
            x = normal_series(100, 4, seed=0)
            for i in range(100):
                pub.send("sensors/m1/data", json.dumps({"ts": 1_700_000_000 + i * 0.1, "values": x[i].tolist()}))
            pub.send("sensors/m1/data", b"{not json")
            pub.flush()
            idle(d)
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            got = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for fam in prom_parser.text_string_to_metric_families(text) for s in fam.samples}
            snap = d.stats_doc()
            assert got[("edgewatch_messages_total", ())] == snap["messages"] == 101
            assert got[("edgewatch_windows_scored_total", ())] == snap["windows_scored"] > 0
            assert got[("edgewatch_dropped_total", (("reason", "malformed_json"),))] == 1
            assert got[("edgewatch_devices_active", ())] == 1
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
