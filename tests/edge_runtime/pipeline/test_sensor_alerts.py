"""Sensor-fault alerts: hysteresis per channel, since / last good value, stale, the health document (pure)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edge_runtime.pipeline.health import MISSING, OK, OUT_OF_RANGE, STUCK
from edge_runtime.pipeline.hysteresis import AlertPolicy
from edge_runtime.pipeline.sensor_alerts import SensorAlerts
from tests.edge_runtime.schema_check import errors, load

CH = ["a", "b"]


def _tracker(raise_after: int = 1, clear_after: int = 3) -> SensorAlerts:
    ids = (f"id{i}" for i in itertools.count())
    return SensorAlerts(AlertPolicy(raise_after, clear_after), "gw", CH, id_factory=lambda: next(ids),
                        clock=lambda: 5000.0)


def _feed(tr: SensorAlerts, codes_b: list[int], chunk: int, values_b: list[float] | None = None) -> list[dict]:
    n = len(codes_b)
    codes = np.zeros((n, 2), np.uint8)
    codes[:, 1] = codes_b
    values = np.column_stack([np.zeros(n), values_b if values_b is not None else np.arange(n, dtype=float)])
    ts = 1000.0 + np.arange(n)
    out = []
    for i in range(0, n, chunk):
        out += tr.update("dev", ts[i:i + chunk], codes[i:i + chunk], values[i:i + chunk], "m1")
    return out


@pytest.mark.parametrize("chunk", [1, 4, 100])
def test_raise_after_k_faulty_samples_clear_after_m_healthy_ones(chunk: int) -> None:
    codes = [OK] * 5 + [OUT_OF_RANGE] * 6 + [OK, OUT_OF_RANGE] + [OK] * 5
    out = _feed(_tracker(raise_after=2, clear_after=3), codes, chunk)
    assert [(a["state"], a["kind"], a["channel"], a["at"]) for a in out] == [
        ("raised", "out_of_range", "b", 1006.0), ("cleared", "out_of_range", "b", 1015.0)]
    raised, cleared = out
    assert raised["since"] == 1005.0 and raised["last_good_value"] == 4.0 and raised["last_good_time"] == 1004.0
    assert cleared["raised_alert_id"] == raised["alert_id"] and cleared["since"] == 1005.0
    assert [a["seq"] for a in out] == [1, 2]
    schema = load("sensor_alert.schema.json")
    assert all(errors(a, schema) == [] for a in out)


def test_a_single_faulty_sample_does_not_page_with_raise_after_2() -> None:
    assert _feed(_tracker(raise_after=2), [OK, MISSING, OK, MISSING, OK], 1) == []


def test_stuck_is_dated_back_to_the_start_of_its_flat_run() -> None:
    tr = _tracker()
    n = 20
    codes = np.zeros((n, 2), np.uint8)
    codes[15:, 1] = STUCK
    runs = np.zeros((n, 2), np.int64)
    runs[5:, 1] = np.arange(n - 5)  # flat from sample 5 on
    values = np.zeros((n, 2))
    values[5:, 1] = 7.5
    out = tr.update("dev", 1000.0 + np.arange(n), codes, values, "m1", runs, None, 1.0)
    assert len(out) == 1 and out[0]["kind"] == "stuck" and out[0]["since"] == 1005.0
    assert out[0]["last_good_value"] == 7.5  # the value it froze at


def test_health_document_only_when_something_changed() -> None:
    tr = _tracker()
    _feed(tr, [OK] * 3, 3)
    first = tr.health_if_changed("dev", [], False, "m1")
    assert first is not None and first["state"] == "ok" and errors(first, load("health.schema.json")) == []
    assert tr.health_if_changed("dev", [], False, "m1") is None
    _feed(tr, [MISSING] * 2, 2)
    doc = tr.health_if_changed("dev", ["b"], False, "m1")
    assert doc is not None and doc["state"] == "fault" and doc["excluded"] == ["b"]
    assert [c["state"] for c in doc["channels"]] == ["ok", "missing"]
    assert doc["faults"][0]["channel"] == "b" and doc["faults"][0]["kind"] == "missing"
    assert tr.health_if_changed("dev", ["b"], True, "m1")["state"] == "degraded"


def test_stale_is_device_wide_and_clears_when_data_returns() -> None:
    tr = _tracker()
    up = tr.set_stale("dev", True, 1234.0, "m1")
    assert [(a["state"], a["kind"], a["channel"], a["since"]) for a in up] == [("raised", "stale", None, 1234.0)]
    assert tr.set_stale("dev", True, 1234.0, "m1") == []  # once
    assert tr.health_if_changed("dev", [], False, "m1")["state"] == "stale"
    down = tr.set_stale("dev", False, 1300.0, "m1")
    assert down[0]["state"] == "cleared" and down[0]["raised_alert_id"] == up[0]["alert_id"]
    assert all(errors(a, load("sensor_alert.schema.json")) == [] for a in up + down)


def test_forget_clears_every_raised_fault_with_the_reason() -> None:
    tr = _tracker()
    _feed(tr, [STUCK] * 3, 3)
    tr.set_stale("dev", True, 1002.0, "m1")
    out = tr.forget("dev", "expired", "m1")
    assert sorted((a["kind"], a["reason"], a["state"]) for a in out) == [
        ("stale", "expired", "cleared"), ("stuck", "expired", "cleared")]
    assert "dev" not in tr.devices and tr.forget("dev", "expired", "m1") == []
