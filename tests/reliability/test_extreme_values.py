"""Issue 20 items 2 and 5: values far outside the model's training range and non-finite model outputs are
never silently "normal", and every document the daemon publishes is strict JSON.

A sensor pegged at float32-max (a common error value) once gave NaN scores and no alert. Now values beyond
``inference.clip_z`` standard deviations of the model's training mean are clipped before the model (counted in
``windows_clipped``); a non-finite score or channel error that still comes out is counted
(``windows_non_finite``) and the window treated as anomalous (score and channel error saturated at float32-max).
Real Mosquitto, an in-process daemon, a really exported ONNX file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.edge_runtime.mqtt_helpers import Collector, Publisher, idle, running_daemon, wait_until
from tests.edge_runtime.onnx_models import make_metadata, series, write_model

W, HOP, T0 = 16, 4, 1_700_000_000.0
F32_MAX = float(np.finfo(np.float32).max)


def strict_loads(payload: bytes) -> Any:
    """JSON as a strict parser (JavaScript's JSON.parse) reads it: NaN / Infinity are errors."""

    def refuse(name: str) -> Any:
        raise ValueError(f"non-strict JSON constant {name}")

    return json.loads(payload, parse_constant=refuse)


def assert_all_strict(col: Collector) -> int:
    with col._lock:
        msgs = list(col.messages)
    for _topic, payload, _ in msgs:
        if payload:
            strict_loads(payload)  # raises on NaN / Infinity
    return len(msgs)


def _run(mosquitto, model: Path, **overrides: Any) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    x = series(60 + 150, seed=5)
    x[60:, 2] = F32_MAX  # pegged from sample 60 on
    col = Collector(mosquitto.port, ["alerts/#", "scores/#", "edgewatch/#"])
    with running_daemon(mosquitto.url, model, publish_scores=True, log_interval_s=3600.0, **overrides) as d:
        pub = Publisher(mosquitto.port)
        for i in range(x.shape[0]):
            pub.send("sensors/pegged/data", json.dumps({"ts": T0 + i, "values": x[i].tolist()}))
        pub.close()
        wait_until(lambda: d.stats.counts["samples"] >= x.shape[0], 20, "samples in")
        idle(d)
        doc = d.stats_doc()
        wait_until(lambda: len(col.alerts()) >= 1, 5, "an alert")
    n = assert_all_strict(col)
    alerts = col.alerts()
    col.close()
    return doc, alerts, n


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return write_model(tmp_path / "m.onnx", make_metadata(window=W, hop=HOP, threshold=0.5))


def test_a_pegged_sensor_is_clipped_before_the_model_and_alerts(mosquitto, model: Path) -> None:
    doc, alerts, n = _run(mosquitto, model)
    assert doc["windows_clipped"] > 0
    assert alerts and alerts[0]["state"] == "raised"
    assert all(np.isfinite(a["score"]) for a in alerts)
    assert n > len(alerts)


def test_non_finite_scores_are_counted_and_treated_as_anomalous(mosquitto, model: Path) -> None:
    doc, alerts, _ = _run(mosquitto, model, clip_z=0.0)  # no clipping: the model gives NaN / inf
    assert doc["windows_non_finite"] > 0
    assert alerts and alerts[0]["state"] == "raised"
    assert alerts[0]["score"] == F32_MAX
    assert alerts[0]["top_channels"][0]["name"] == "Temperature"  # the pegged channel (index 2)
