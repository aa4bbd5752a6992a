"""`topics.prefix` moves every topic under one prefix: from the file, the environment or the flag, once,
and a real daemon on a real broker reads and writes only under it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edge_runtime.cli import main
from edge_runtime.config import ConfigError, build_config, reference_markdown, with_topic_prefix
from edge_runtime.tools.localbroker import MosquittoBroker
from tests.edge_runtime.mqtt_helpers import Collector, Publisher, idle, running_daemon, wait_until
from tests.edge_runtime.onnx_models import make_metadata, series, write_model

ROOT = Path(__file__).resolve().parents[2]


def test_prefix_sets_every_topic_once(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[topics]\nprefix = "plant-3"\n[alerts]\nalert_topic = "alarms/{device}"\n')
    cfg = build_config(str(f))
    assert cfg.topics == ["plant-3/sensors/{device}/data"]
    assert (cfg.alert_topic, cfg.state_topic, cfg.score_topic) == (
        "plant-3/alarms/{device}", "plant-3/alerts/{device}/state", "plant-3/scores/{device}")
    assert (cfg.status_topic, cfg.stats_topic) == ("plant-3/edgewatch/{instance}/status", "plant-3/edgewatch/{instance}/stats")
    assert cfg.homeassistant_prefix == "homeassistant"
    assert with_topic_prefix(cfg) == cfg  # applied once
    env = build_config(None, environ={"EDGEWATCH_TOPICS_PREFIX": "a/b/"})
    assert env.topics == ["a/b/sensors/{device}/data"] and env.alert_topic == "a/b/alerts/{device}"
    assert build_config(None).alert_topic == "alerts/{device}"


@pytest.mark.parametrize("bad", ["site/+", "#", "/"])
def test_prefix_with_wildcards_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="topics.prefix"):
        build_config(None, {"prefix": bad})


def test_prefix_is_documented_with_flag_and_variable() -> None:
    row = next(r for r in reference_markdown().splitlines() if r.startswith("| `topics.prefix`"))
    assert "`--topic-prefix`" in row and "`EDGEWATCH_TOPICS_PREFIX`" in row
    assert "topic-prefix" in CliRunner().invoke(main, ["run", "--help"]).output
    assert "topics.prefix" in (ROOT / "docs" / "readme" / "30-runtime.md").read_text()


def alerts(col: Collector) -> list[dict]:
    return [d for t, d in col.docs("site-9/alerts/") if t == "site-9/alerts/pump-1"]


def test_daemon_reads_and_writes_only_under_the_prefix(tmp_path: Path) -> None:
    w, hop = 16, 4
    model = write_model(tmp_path / "m.onnx", make_metadata(window=w, hop=hop, threshold=0.5))
    x = series(200, seed=1)
    x[80:140, 1] += 8.0  # far above the threshold: raises
    with MosquittoBroker(workdir=tmp_path / "broker") as broker:
        col = Collector(broker.port, ["#"])
        with running_daemon(broker.url, model, prefix="site-9", publish_scores=True) as d:
            pub = Publisher(broker.port)
            pub.send("sensors/pump-1/data", json.dumps({"ts": 1_700_000_000.0, "values": x[0].tolist()}))
            for i in range(200):
                pub.send("site-9/sensors/pump-1/data", json.dumps({"ts": 1_700_000_000.0 + i, "values": x[i].tolist()}))
            pub.flush()
            wait_until(lambda: d.stats.counts["messages"] >= 200, 20, "prefixed messages")
            idle(d)
            wait_until(lambda: alerts(col), 10, "an alert under the prefix")
            time.sleep(0.3)
            pub.close()
        col.close()
    assert d.stats.counts["messages"] == 200  # the unprefixed topic was not subscribed
    topics = {t for t, _ in col.docs("")}
    ours = {t for t in topics if not t.startswith("sensors/") and not t.startswith("site-9/sensors/")}
    assert ours and all(t.startswith("site-9/") for t in ours), ours
    assert {"site-9/alerts/pump-1", "site-9/alerts/pump-1/state", "site-9/scores/pump-1",
            "site-9/edgewatch/test/status"} <= ours
    assert alerts(col)[0]["state"] == "raised" and np.isfinite(alerts(col)[0]["score"])
