"""deploy/grafana/edgewatch-dashboard.json: every metric it queries exists on a live daemon's /metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

prom_parser = pytest.importorskip("prometheus_client.parser")

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "edgewatch-dashboard.json"
_SUFFIXES = ("_bucket", "_sum", "_count")


def queries(dash: dict) -> list[str]:
    """Every PromQL expression in the dashboard: panel targets and query variables."""
    out = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            out.append(var["query"]["query"] if isinstance(var["query"], dict) else var["query"])
    return out


def metric_names(expr: str) -> set[str]:
    """The metric names in one expression (label matchers, grouping labels and ranges left out)."""
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(by|without)\s*\([^)]*\)", "", expr)  # grouping labels
    expr = re.sub(r"label_values\((\w+),\s*\w+\)", r"\1", expr)  # Grafana's variable query
    return set(re.findall(r"\b(?:edgewatch|process|python)_[a-z0-9_]+", expr))


def grouping_labels(expr: str) -> set[str]:
    return {lb.strip() for grp in re.findall(r"\bby\s*\(([^)]*)\)", expr) for lb in grp.split(",")}


def test_dashboard_is_an_importable_grafana_dashboard() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] and dash["panels"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        assert p["datasource"]["uid"] == "${datasource}"
        assert p["targets"], p["title"]
    assert {v["name"] for v in dash["templating"]["list"]} == {"datasource", "instance"}


def test_metric_name_extraction() -> None:
    e = ('histogram_quantile(0.99, sum by (instance, le) (rate(edgewatch_inference_duration_seconds_bucket'
         '{instance=~"$instance"}[$__rate_interval])))')
    assert metric_names(e) == {"edgewatch_inference_duration_seconds_bucket"}
    assert grouping_labels(e) == {"instance", "le"}
    assert metric_names("label_values(edgewatch_info, instance)") == {"edgewatch_info"}


def test_every_queried_metric_exists_on_a_live_daemon(mosquitto, demo_model_path) -> None:
    from edge_runtime.tools.localbroker import free_port
    from tests.edge_runtime.integrations.test_metrics_http import feed_and_scrape
    from tests.edge_runtime.mqtt_helpers import Publisher, running_daemon

    exprs = queries(json.loads(DASHBOARD.read_text()))
    wanted = set().union(*(metric_names(e) for e in exprs))
    assert len(wanted) >= 15, wanted
    port = free_port()
    pub = Publisher(mosquitto.port)
    try:
        with running_daemon(mosquitto.url, demo_model_path, metrics_port=port) as d:
            text = feed_and_scrape(d, pub, port, "g1", 80)
    finally:
        pub.close()
    samples = [s for fam in prom_parser.text_string_to_metric_families(text) for s in fam.samples]
    served = {s.name for s in samples}
    missing = sorted(wanted - served)
    assert not missing, f"the dashboard queries metrics the daemon does not serve: {missing}"
    labels_of: dict[str, set[str]] = {}
    for s in samples:
        labels_of.setdefault(s.name, set()).update(s.labels)
    for e in exprs:  # grouping labels: Prometheus' target labels or the metric's own
        for lb in grouping_labels(e) - {"instance", "job"}:
            assert any(lb in labels_of[m] for m in metric_names(e)), f"{lb!r} in {e}"
