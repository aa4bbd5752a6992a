"""edge_runtime.integrations.dashboard.view: documents in, the fleet and its deltas out (no network)."""

from __future__ import annotations

import json

from edge_runtime.config import build_config
from edge_runtime.integrations.dashboard.view import FleetView, Topics
from edge_runtime.pipeline.documents import health_doc, sensor_alert_doc

ALERT = {"alert_id": "a1", "raised_alert_id": "a1", "device": "pump-1", "state": "raised", "seq": 1, "score": 2.5,
         "threshold": 1.0, "window_end": 100.0, "time": 1000.0, "instance": "gw",
         "top_channels": [{"name": "Pressure", "share": 0.75}]}


def _j(doc: object) -> bytes:
    return json.dumps(doc).encode()


def _score(t: list[float], s: list[float]) -> bytes:
    return _j({"device": "pump-1", "model_id": "m", "threshold": 1.0, "window_start": t, "window_end": t, "score": s})


def test_alerts_open_and_close_and_fill_the_log() -> None:
    v = FleetView()
    v.ingest("alerts/pump-1", _j(ALERT), False, 5.0)
    d = v.delta(0, 6.0)
    assert [a["alert_id"] for a in d["open_alerts"]] == ["a1"] and d["log"][0]["received"] == 5.0
    assert d["devices"][0]["state"] == "raised" and d["devices"][0]["instance"] == "gw"
    v.ingest("alerts/pump-1", _j({**ALERT, "alert_id": "c1", "state": "cleared", "seq": 2}), False, 7.0)
    d2 = v.delta(d["version"], 8.0)
    assert d2["open_alerts"] == [] and [e["state"] for e in d2["log"]] == ["cleared"]  # only the new entry


def test_a_retained_raised_state_is_an_open_alert_without_a_payload() -> None:
    v = FleetView()
    v.ingest("alerts/pump-2/state", _j({"device": "pump-2", "state": "raised", "raised_alert_id": "r", "seq": 3,
                                          "since": 900.0, "instance": "gw"}), True, 5.0)
    (a,) = v.delta(0, 6.0)["open_alerts"]
    assert a["from_state"] and a["alert_id"] == "r" and a["time"] == 900.0
    v.ingest("alerts/pump-2/state", _j({"device": "pump-2", "state": "cleared", "seq": 4}), True, 6.0)
    assert v.delta(0, 7.0)["open_alerts"] == []


def test_score_history_is_bucketed_keeps_peaks_and_sends_only_new_points() -> None:
    v = FleetView(history_s=10.0, bucket_s=1.0)
    v.ingest("scores/pump-1", _score([0.0, 0.4, 0.8], [0.1, 5.0, 0.2]), False, 1.0)  # one bucket: its peak
    first = v.delta(0, 1.0)
    assert first["devices"][0]["points"] == [[0.0, 5.0]] and first["devices"][0]["state"] == "normal"
    v.ingest("scores/pump-1", _score([1.0, 2.0], [0.3, 0.4]), False, 2.0)
    assert v.delta(first["version"], 2.0)["devices"][0]["points"] == [[1.0, 0.3], [2.0, 0.4]]
    v.ingest("scores/pump-1", _score([20.0], [0.5]), False, 3.0)  # 10 s of history: the old points go
    assert v.delta(0, 3.0)["devices"][0]["points"] == [[20.0, 0.5]]
    assert v.scores_seen == 3


def test_gateways_from_status_and_stats_with_custom_topics() -> None:
    v = FleetView(Topics(status="plant/{instance}/online", stats="plant/{instance}/counters"))
    v.ingest("plant/gw1/online", _j({"state": "online", "instance": "gw1", "model_id": "m1"}), True, 1.0)
    v.ingest("plant/gw1/counters", _j({"dropped_total": 4, "drops": {"queue_full": 4}, "publish_lost_total": 1,
                                       "publish_lost": {"not_connected": 1}, "secret": 1}), False, 2.0)
    (g,) = v.delta(0, 3.0)["gateways"]
    assert g["status"]["model_id"] == "m1" and g["status"]["retained"] and g["stats"]["dropped_total"] == 4
    assert g["stats"]["publish_lost_total"] == 1 and g["stats"]["publish_lost"] == {"not_connected": 1}
    assert "secret" not in g["stats"]  # only the known fields are passed on
    assert v.delta(0, 3.0)["broker"]["connected"] is False


def test_malformed_documents_are_counted_and_named_never_raised() -> None:
    skipped: list[tuple[str, str]] = []
    v = FleetView(on_skip=lambda t, why: skipped.append((t, why)))
    for topic, payload in [("alerts/x", b"{"), ("alerts/x", b"[1]"), ("alerts/x", _j({"state": "maybe"})),
                           ("scores/x", _j({"window_end": [1.0], "score": []})), ("edgewatch/g/status", _j({}))]:
        v.ingest(topic, payload, False, 1.0)
    v.ingest("other/topic", b"{", False, 1.0)  # not ours: ignored, not counted
    v.ingest("alerts/x/state", b"", True, 1.0)  # a deleted retained state: nothing
    assert v.skipped == 5 and [t for t, _ in skipped] == ["alerts/x"] * 3 + ["scores/x", "edgewatch/g/status"]
    assert v.delta(0, 2.0)["open_alerts"] == [] and v.delta(0, 2.0)["skipped"] == 5


def test_non_finite_scores_are_dropped_and_time_goes_forward_only() -> None:
    v = FleetView(bucket_s=0.1)
    v.ingest("scores/pump-1", b'{"window_end": [1, 2, 3], "score": [0.5, NaN, 0.7]}', False, 1.0)
    v.ingest("scores/pump-1", _score([0.5], [9.0]), False, 1.0)  # older than the history: skipped
    assert v.delta(0, 1.0)["devices"][0]["points"] == [[1.0, 0.5], [3.0, 0.7]]


def test_wait_change_wakes_on_a_new_document() -> None:
    v = FleetView()
    assert v.wait_change(0, 0.01) is False
    v.ingest("alerts/pump-1", _j(ALERT), False, 1.0)
    assert v.wait_change(0, 0.01) is True


def _health(faults: list[dict[str, object]], states: list[str]) -> bytes:
    """A health document as the daemon builds it (edge_runtime.pipeline.documents.health_doc)."""
    return _j(health_doc("pump-1", ["Pressure", "Temp"], states, faults, [c for c, s in zip(["Pressure", "Temp"],
              states, strict=True) if s != "ok"], False, False, 50.0, "m", "gw"))


def test_health_document_and_sensor_alerts_per_device() -> None:
    v = Topics()
    assert "health/+" in v.filters() and "health/+/alerts" in v.filters()
    view = FleetView()
    view.ingest("health/pump-1", _health([], ["ok", "ok"]), True, 1.0)
    (dev,) = view.delta(0, 1.0)["devices"]
    assert dev["health"]["state"] == "ok" and dev["health"]["retained"] and dev["health"]["faults"] == []
    fault = {"channel": "Temp", "kind": "stuck", "since": 40.0, "last_good_value": 21.5}
    view.ingest("health/pump-1/alerts", _j(sensor_alert_doc("pump-1", "Temp", "stuck", "raised", "s1", "s1", 1, 40.0,
                                                            45.0, 21.5, 21.5, 39.0, 50.0, "m", "gw")), False, 2.0)
    view.ingest("health/pump-1", _health([fault], ["ok", "stuck"]), True, 2.0)
    v0 = view.version
    (dev,) = view.delta(v0 - 2, 2.0)["devices"]
    assert dev["health"]["state"] == "fault" and dev["health"]["faults"] == [fault]
    assert [c["state"] for c in dev["health"]["channels"]] == ["ok", "stuck"] and dev["health"]["excluded"] == ["Temp"]
    (alert,) = dev["sensor_alerts"]
    assert (alert["channel"], alert["kind"], alert["state"], alert["received"]) == ("Temp", "stuck", "raised", 2.0)
    assert view.delta(0, 2.0)["open_alerts"] == [] and view.delta(0, 2.0)["log"] == []  # never a process alert
    assert view.skipped == 0


def test_health_topics_from_the_config_and_malformed_health_is_skipped() -> None:
    cfg = build_config(None, {"prefix": "site-1"})
    t = Topics.from_config(cfg)
    assert (t.health, t.sensor) == ("site-1/health/{device}", "site-1/health/{device}/alerts")
    skipped: list[str] = []
    v = FleetView(t, on_skip=lambda topic, why: skipped.append(why))
    for payload in [_j({"state": "ok"}), _j({"state": "bad", "channels": [], "faults": []}),
                    _j({"state": "ok", "channels": [{"name": 1}], "faults": []}), b"{"]:
        v.ingest("site-1/health/pump-1", payload, True, 1.0)
    v.ingest("site-1/health/pump-1/alerts", _j({"state": "raised"}), False, 1.0)  # no kind
    assert v.skipped == 5 and len(skipped) == 5 and v.delta(0, 1.0)["devices"] == []


def test_retained_stats_are_as_old_as_they_say() -> None:
    """The daemon retains its stats: the last one arrives at connect, and must not look fresh."""
    v = FleetView()
    v.ingest("edgewatch/gw/stats", _j({"instance": "gw", "devices_active": 3, "time": 900.0}), True, 1000.0)
    v.ingest("edgewatch/gw2/stats", _j({"instance": "gw2", "devices_active": 1, "time": 990.0}), False, 1000.0)
    gws = {g["instance"]: g for g in v.delta(0, 1000.0)["gateways"]}
    assert gws["gw"]["stats"]["received"] == 900.0 and gws["gw2"]["stats"]["received"] == 1000.0
