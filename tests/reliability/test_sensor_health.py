"""Sensor health end to end: a real Mosquitto, a model really trained and exported by the trainer.

A frozen channel, a dropout and an out-of-range value each raise a sensor alert on health/{device}/alerts
(within 2x the channel's limit), never a process alert; the other channels are still scored; a null in
one channel keeps the sample; the payloads fit their schemas.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_runtime.contract import metadata_from_props
from edge_runtime.tools.synthetic import normal_series
from tests.edge_runtime.mqtt_helpers import Collector, Publisher, idle, running_daemon, wait_until
from tests.edge_runtime.schema_check import errors, load

T0 = 1_700_000_000.0
N = 400
FAULT_AT = 150


def _meta(path):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return metadata_from_props(sess.get_modelmeta().custom_metadata_map)


def _send(pub: Publisher, device: str, x: np.ndarray, keyed: list[str] | None = None) -> int:
    for i, row in enumerate(x.tolist()):
        vals = [None if v != v else v for v in row]  # NaN -> null
        doc = {"ts": T0 + i, **dict(zip(keyed, vals, strict=True))} if keyed else {"ts": T0 + i, "values": vals}
        pub.send(f"sensors/{device}/data", json.dumps(doc))
    return len(x)


def _stream(mosquitto, model_path, devices: dict[str, np.ndarray], sensor_alerts: int,
            keyed: dict[str, list[str]] | None = None, **config: object) -> tuple[dict, Collector, int]:
    """Every device's rows through a real daemon: ``(stats document, collector of alerts/scores/health, samples)``."""
    with running_daemon(mosquitto.url, model_path, publish_scores=True, **config) as d:
        col = Collector(mosquitto.port, ["alerts/#", "scores/#", "health/#"])
        pub = Publisher(mosquitto.port)
        sent = sum(_send(pub, dev, v, keyed=(keyed or {}).get(dev)) for dev, v in devices.items())
        pub.flush()
        wait_until(lambda: d.stats.counts["messages"] >= sent, 30, "all received")
        idle(d)
        wait_until(lambda: d.stats.counts["sensor_alerts_raised"] >= sensor_alerts, 10, "sensor alerts")
        stats = d.stats_doc()
        col.close()
        pub.close()
    return stats, col, sent


@pytest.mark.slow
def test_sensor_faults_are_alerted_apart_and_a_moving_out_of_range_reading_stays_scored(mosquitto, demo_model_path) -> None:
    meta = _meta(demo_model_path)
    health = meta.health["channels"]
    names = meta.channels
    x = normal_series(N, len(names), seed=11, start=50_000)  # fresh normal data, not the training part
    frozen, dropout, spike, clean = x.copy(), x.copy(), x.copy(), x.copy()
    frozen[FAULT_AT:, 1] = frozen[FAULT_AT, 1]  # a transmitter frozen for the rest of the run
    dropout[FAULT_AT:FAULT_AT + 40, 2] = np.nan  # 40 samples of null, then back
    hi = health[names[0]]["max"] + 3 * health[names[0]]["margin"] + 1.0
    spike[FAULT_AT:FAULT_AT + 30, 0] = hi + np.linspace(0, 1, 30)  # out of range for 30 samples, moving: a reading
    devices = {"frozen": frozen, "dropout": dropout, "spike": spike, "clean": clean}
    stats, col, sent = _stream(mosquitto, demo_model_path, devices, 3, keyed={"dropout": names})

    assert stats["samples"] == sent and stats["drops"] == {}  # every sample kept, the nulls too
    assert stats["values_missing"] == {"null": 40} and stats["values_filled"] == 40
    # an out-of-range value is a reading: it stays in the process score (health.range_excludes off), so the spike
    # also raises a process alert, which names that channel first; no sensor fault left out raises one
    process = [a for a in col.alerts() if "score" in a]
    assert {a["device"] for a in process} == {"spike"}, [(a["device"], a["state"], a["top_channels"]) for a in process]
    assert all(a["top_channels"][0]["name"] == names[0] for a in process if a["state"] == "raised")

    sensor = [doc for _, doc in col.docs("health/") if "kind" in doc]
    schema = load("sensor_alert.schema.json")
    for a in sensor:
        assert errors(a, schema) == [], a
    raised = {(a["device"], a["channel"], a["kind"]): a for a in sensor if a["state"] == "raised"}
    assert set(raised) == {("frozen", names[1], "stuck"), ("dropout", names[2], "missing"),
                           ("spike", names[0], "out_of_range")}, sorted(raised)

    stuck = raised[("frozen", names[1], "stuck")]
    limit = health[names[1]]["max_flat_samples"]
    delay = stuck["at"] - (T0 + FAULT_AT)
    assert limit < delay <= 2 * limit, (delay, limit)  # the sensor fault within 2x its limit
    detected = stuck["detected_at"] - (T0 + FAULT_AT)  # when the daemon could tell (checked in blocks)
    assert delay <= detected <= 2 * limit, (detected, limit)
    assert stuck["last_good_value"] == pytest.approx(float(frozen[FAULT_AT, 1]), rel=1e-6)  # the value it froze at
    assert stuck["since"] == pytest.approx(T0 + FAULT_AT)  # dated back to the start of the flat run
    missing = raised[("dropout", names[2], "missing")]
    fill = meta.health["fill"]["limit_samples"]
    # the (fill + 1)th missing sample in a row is missing: dated back to the first one
    assert missing["since"] == T0 + FAULT_AT and missing["at"] - (T0 + FAULT_AT) == fill
    assert missing["detected_at"] == missing["at"]  # a null arrives as arrays: checked at once
    assert missing["last_good_value"] == pytest.approx(float(dropout[FAULT_AT - 1, 2]), rel=1e-6)
    oor = raised[("spike", names[0], "out_of_range")]
    hold = 3  # health.range_hold: out of range after 3 samples in a row outside it, dated back to the first
    assert oor["at"] == T0 + FAULT_AT + hold - 1 and oor["since"] == T0 + FAULT_AT and oor["value"] == pytest.approx(hi + (hold - 1) / 29)
    assert oor["last_good_value"] == pytest.approx(float(spike[FAULT_AT - 1, 0]), rel=1e-6)
    cleared = {(a["device"], a["kind"]) for a in sensor if a["state"] == "cleared"}
    assert cleared == {("dropout", "missing"), ("spike", "out_of_range")}  # the frozen one stays frozen

    # the other channels are still scored: every device's windows came through, masked while faulty
    n_windows = (N - meta.window) // meta.hop + 1
    for dev in devices:
        got = sum(len(doc["score"]) for _, doc in col.docs(f"scores/{dev}"))
        assert got == n_windows, (dev, got)
    assert stats["windows_masked"] > 0 and stats["windows_degraded"] == 0

    # the retained health document: the frozen channel excluded, the fault named
    last = {t: doc for t, doc in col.docs("health/") if "channels" in doc}
    h_schema = load("health.schema.json")
    for doc in last.values():
        assert errors(doc, h_schema) == [], doc
    fz = last["health/frozen"]
    assert fz["state"] == "fault" and fz["excluded"] == [names[1]]
    assert fz["faults"] == [{"channel": names[1], "kind": "stuck", "since": stuck["since"],
                             "last_good_value": stuck["last_good_value"]}]
    assert last["health/clean"]["state"] == "ok" and last["health/dropout"]["faults"] == []
    assert stats["sensor_faults"] == {"missing": 1, "out_of_range": 1, "stuck": 1}


@pytest.mark.slow
def test_a_device_past_the_degraded_share_is_not_scored(mosquitto, demo_model_path) -> None:
    names = _meta(demo_model_path).channels
    x = normal_series(200, len(names), seed=12, start=60_000)
    x[60:, :3] = np.nan  # three of four channels gone for good
    with running_daemon(mosquitto.url, demo_model_path, publish_scores=True) as d:
        col = Collector(mosquitto.port, ["alerts/#", "health/#"])
        pub = Publisher(mosquitto.port)
        sent = _send(pub, "dying", x)
        pub.flush()
        wait_until(lambda: d.stats.counts["messages"] >= sent, 30, "all received")
        idle(d)
        wait_until(lambda: any(doc.get("state") == "degraded" for _, doc in col.docs("health/dying")), 5,
                   "the degraded health document")
        stats = d.stats_doc()
        col.close()
        pub.close()
    assert stats["windows_degraded"] > 0 and stats["samples"] == sent
    assert [a for a in col.alerts() if "score" in a] == []


@pytest.mark.slow
def test_a_faulty_sensor_under_the_cross_channel_term_raises_no_process_alert(mosquitto, tmp_path) -> None:
    """A model whose channels move together (the cross-channel term on): a frozen channel (or, with
    health.range_excludes, an out-of-range one) is filled with what the common factors expect from the healthy
    ones, so it breaks no pattern."""
    from edge_runtime.tools.synthetic import channel_names
    from tests.trainer.test_cross_channel import low_rank
    from trainer.api import train_and_export

    x, _ = low_rank(2600, 12, noise=0.1, seed=4)
    path = tmp_path / "cc.onnx"
    meta = train_and_export(x[:600], channel_names(12), path, seed=0, epochs=40, sample_period_s=1.0)
    assert meta.scoring["cross_channel"]["on"]
    test = x[1000:1000 + N].astype(np.float32)
    frozen, spike = test.copy(), test.copy()
    frozen[FAULT_AT:, 5] = frozen[FAULT_AT, 5]
    hi = meta.health["channels"][meta.channels[5]]["max"] + 3 * meta.health["channels"][meta.channels[5]]["margin"] + 1
    spike[FAULT_AT:, 5] = hi
    devices = {"frozen": frozen, "spike": spike, "clean": test}
    stats, col, _ = _stream(mosquitto, path, devices, 2, range_excludes=True)
    process = [a for a in col.alerts() if "score" in a]
    assert process == [], [(a["device"], a["state"], a["top_channels"]) for a in process]
    raised = {(doc["device"], doc["kind"]) for _, doc in col.docs("health/") if doc.get("state") == "raised"}
    assert raised == {("frozen", "stuck"), ("spike", "out_of_range")}
    assert stats["windows_masked"] > 0
    peak = {dev: max(max(doc["score"]) for _, doc in col.docs(f"scores/{dev}")) for dev in devices}
    assert max(peak.values()) < meta.threshold.value, peak


@pytest.mark.slow
def test_the_offline_replay_of_the_sensor_checks_gives_the_daemons_scores(mosquitto, demo_model_path) -> None:
    """trainer/sensor_view.py (what evaluate and benchmark report) against a real daemon over MQTT: the same
    faulty stream, every window the daemon published scored the same (masked and renormalised), and the windows
    it did not score (degraded) not scored offline either."""
    from edge_runtime.service.model import load_model
    from trainer.evaluate import window_scores
    from trainer.sensor_view import masked_scores, sensor_view

    meta = _meta(demo_model_path)
    names, health = meta.channels, meta.health["channels"]
    x = normal_series(N, len(names), seed=12, start=60_000)
    x[FAULT_AT:FAULT_AT + 60, 1] = x[FAULT_AT, 1]  # frozen for 60 samples: stuck after its limit, left out
    hi = health[names[0]]["max"] + 3 * health[names[0]]["margin"] + 1.0
    x[FAULT_AT + 100:FAULT_AT + 130, 0] = hi + np.linspace(0, 1, 30)  # out of range and moving: stays in the score
    x[FAULT_AT + 180:FAULT_AT + 220, 2] = hi  # frozen out of range: a failed sensor's gross value, left out
    _, col, _ = _stream(mosquitto, demo_model_path, {"mixed": x}, 2)
    published = {round(t - T0): s for _, doc in col.docs("scores/mixed")
                 for t, s in zip(doc["window_end"], doc["score"], strict=True)}
    model = load_model(demo_model_path, provider="cpu")
    view = sensor_view(model.metadata, x)
    assert view is not None and view.excluded[:, 1].any() and view.excluded[:, 2].any()
    assert not view.excluded[:, 0].any()  # the moving out-of-range channel is never left out
    offline = masked_scores(model, x, window_scores(model, x), view)
    w, hop = meta.window, meta.hop
    ends = [e for e in range(w - 1, N, hop) if view.scored[e - w + 1]]
    assert sorted(published) == ends
    got = np.array([published[e] for e in ends])
    want = np.array([offline[e - w + 1] for e in ends])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
