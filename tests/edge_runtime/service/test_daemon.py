"""The daemon end to end against a real Mosquitto: alerts, score parity, formats, bad input, outages, reload."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edge_runtime.contract import INPUT_NAME, OUTPUT_SCORE
from edge_runtime.service.daemon import Daemon
from edge_runtime.tools.localbroker import MosquittoBroker
from tests.edge_runtime import schema_check
from tests.edge_runtime.mqtt_helpers import (
    Collector,
    Publisher,
    daemon_config,
    idle,
    running_daemon,
    wait_until,
)
from tests.edge_runtime.onnx_models import (
    CHANNELS4,
    make_metadata,
    reference_scores,
    series,
    sliding_windows,
    write_health_model,
    write_model,
)

W, HOP, THR, T0 = 16, 4, 0.5, 1_700_000_000.0
RAISE_AFTER, CLEAR_AFTER, CLEAR_RATIO = 3, 5, 0.8


def _anomalous(n: int, seed: int, start: int, stop: int, channel: int) -> np.ndarray:
    x = series(n, seed=seed)
    rng = np.random.default_rng(seed + 100)
    x[start:stop, channel] += (2.0 * rng.standard_normal(stop - start)).astype(np.float32)
    return x


DEVICES = {
    "pump-1": _anomalous(400, 1, 160, 240, 1),  # Pressure; single-sample JSON
    "pump-2": series(400, seed=2),  # normal; CSV lines and keyed-by-name JSON
    "pump-3": _anomalous(400, 3, 100, 200, 2),  # Temperature; JSON batches and lists of samples
}


def expected_alerts(x: np.ndarray, meta) -> list[tuple[str, int]]:
    """(state, window index) by an independent re-implementation of the hysteresis rule."""
    s, _ = reference_scores(sliding_windows(x, W, HOP), meta)
    for v in s:  # the scenario keeps clear of float32-vs-float64 ties at the levels
        assert abs(v - THR) > 1e-3 and abs(v - CLEAR_RATIO * THR) > 1e-3
    out, raised, run = [], False, 0
    for i, v in enumerate(s):
        hit = v < CLEAR_RATIO * THR if raised else v > THR
        run = run + 1 if hit else 0
        if run == (CLEAR_AFTER if raised else RAISE_AFTER):
            raised, run = not raised, 0
            out.append(("raised" if raised else "cleared", i))
    return out


def publish_scenario(pub: Publisher) -> int:
    """Interleave the devices in several payload formats; returns the number of messages."""
    n = 0
    for i in range(400):
        t = T0 + i
        x1 = DEVICES["pump-1"][i]
        pub.send("sensors/pump-1/data", json.dumps({"ts": t, "values": x1.tolist()}))
        x2 = DEVICES["pump-2"][i]
        if i % 2:
            pub.send("sensors/pump-2/data", json.dumps({"ts": t * 1000, **dict(zip(CHANNELS4, x2.tolist(), strict=True))}))
        else:
            pub.send("sensors/pump-2/data", f"{t:.3f}," + ",".join(repr(float(v)) for v in x2))
        n += 2
        if i % 20 == 19:
            blk = DEVICES["pump-3"][i - 19 : i + 1]
            ts = [T0 + j for j in range(i - 19, i + 1)]
            if i % 40 == 19:
                pub.send("sensors/pump-3/data", json.dumps({"ts": ts, "values": blk.tolist()}))
            else:
                pub.send("sensors/pump-3/data", json.dumps([{"ts": a, "values": v} for a, v in zip(ts, blk.tolist(), strict=True)]))
            n += 1
    pub.flush()
    return n


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scenario")
    meta = make_metadata(window=W, hop=HOP, threshold=THR)
    model_path = write_model(tmp / "m.onnx", meta)
    with MosquittoBroker(workdir=tmp / "broker") as broker:
        col = Collector(broker.port, ["alerts/#", "scores/#", "edgewatch/#"])
        with running_daemon(broker.url, model_path, publish_scores=True, raise_after=RAISE_AFTER,
                            clear_after=CLEAR_AFTER, clear_ratio=CLEAR_RATIO,
                            update_interval_s=0) as d:  # exact raise/clear pairs (updates: test_alert_detail)
            pub = Publisher(broker.port)
            n = publish_scenario(pub)
            wait_until(lambda: d.stats.counts["messages"] >= n, 20, "all messages received")
            idle(d)
            wait_until(lambda: len(col.docs("scores/")) >= len(d.stats.latency_ms()) and
                       sum(len(doc["score"]) for _, doc in col.docs("scores/")) >= 3 * 97, 10, "scores")
            time.sleep(0.3)
            stats = d.stats_doc()
            pub.close()
        late = Collector(broker.port, ["alerts/+/state", "edgewatch/+/status"])
        time.sleep(0.3)
        col.close()
        late.close()
    return {"meta": meta, "model": model_path, "col": col, "late": late, "stats": stats, "messages": n}


def test_exact_alerts_with_correct_fields(scenario) -> None:
    meta = scenario["meta"]
    alerts = scenario["col"].alerts()
    ids = set()
    for dev, x in DEVICES.items():
        want = expected_alerts(x, meta)
        got = [a for a in alerts if a["device"] == dev]
        assert [a["state"] for a in got] == [s for s, _ in want], dev
        for a, (_, idx) in zip(got, want, strict=True):
            assert a["window_start"] == T0 + idx * HOP and a["window_end"] == T0 + idx * HOP + W - 1
            assert a["threshold"] == THR and a["model_id"] == "test-model-1" and a["instance"] == "test"
            assert schema_check.errors(a, schema_check.load("alert.schema.json")) == []
            ids.add(a["alert_id"])
        assert [a["seq"] for a in got] == list(range(1, len(got) + 1))
        if got:
            raised = got[0]
            assert raised["top_channels"][0]["name"] == {"pump-1": "Pressure", "pump-3": "Temperature"}[dev]
            assert raised["top_channels"][0]["share"] > 0.5 and raised["score"] > THR
            assert got[1]["raised_alert_id"] == raised["alert_id"]
    assert len(ids) == len(alerts) == 4


def test_scores_equal_offline_onnxruntime(scenario) -> None:
    sess = ort.InferenceSession(str(scenario["model"]), providers=["CPUExecutionProvider"])
    docs = scenario["col"].docs("scores/")
    for dev, x in DEVICES.items():
        ends, scores = [], []
        for _, doc in docs:
            if doc["device"] == dev:
                ends += doc["window_end"]
                scores += doc["score"]
        order = np.argsort(ends)
        offline = sess.run([OUTPUT_SCORE], {INPUT_NAME: sliding_windows(x, W, HOP)})[0]
        np.testing.assert_array_equal(np.asarray(ends)[order], T0 + np.arange(97) * HOP + W - 1)
        np.testing.assert_allclose(np.asarray(scores)[order], offline, atol=1e-5, rtol=0)


def test_retained_state_and_status_for_late_subscribers(scenario) -> None:
    docs = dict(scenario["late"].docs(""))
    for dev in ("pump-1", "pump-3"):
        st = docs[f"alerts/{dev}/state"]
        assert st["state"] == "cleared" and st["seq"] == 2
        assert schema_check.errors(st, schema_check.load("state.schema.json")) == []
    assert "alerts/pump-2/state" not in docs
    status = docs["edgewatch/test/status"]
    assert status["state"] == "offline" and status["reason"] == "stopped"


def test_online_status_and_stats(scenario) -> None:
    online = [d for t, d in scenario["col"].docs("edgewatch/test/status") if d["state"] == "online"]
    assert online and online[0]["model_id"] == "test-model-1" and online[0]["provider"] == "CPUExecutionProvider"
    assert online[0]["version"]
    s = scenario["stats"]
    assert s["messages"] == scenario["messages"] and s["samples"] == 1200 and s["windows_scored"] == 3 * 97
    assert s["alerts_raised"] == 2 and s["alerts_cleared"] == 2 and s["drops"] == {} and s["devices_active"] == 3
    assert s["inference_ms_p50"] is not None and s["provider"] == "CPUExecutionProvider"


BAD = [
    (b"{oops", "malformed_json"),
    (b'{"values": [1, 2, 3]}', "wrong_channels"),
    (b'{"values": [1, "a", 3, 4]}', "non_numeric"),  # (a NaN or null is a missing value: kept, tests/reliability/test_sensor_health.py)
    (b'{"ts": "soon", "values": [1, 2, 3, 4]}', "bad_timestamp"),
    (b"x" * 3000, "oversize"),
    (b'{"values": 1}', "bad_structure"),
]


def test_bad_input_counted_by_reason_and_other_devices_unaffected(mosquitto, tmp_path: Path, caplog) -> None:
    model = write_model(tmp_path / "m.onnx", make_metadata(window=W, hop=HOP, threshold=THR))
    x = series(120, seed=5)
    with running_daemon(mosquitto.url, model, max_payload_bytes=2048, publish_scores=True) as d:
        col = Collector(mosquitto.port, ["scores/#"])
        pub = Publisher(mosquitto.port)
        sent = 0
        for i in range(120):
            pub.send("sensors/good/data", json.dumps({"ts": T0 + i, "values": x[i].tolist()}))
            sent += 1
            if i < len(BAD):
                pub.send("sensors/bad/data", BAD[i][0])
                sent += 1
        # the bad device: 30 good samples, a duplicate, an out-of-order one, then a gap of 100 s
        for i in [*range(30), 29, 10, *range(130, 150)]:
            pub.send("sensors/bad/data", json.dumps({"ts": T0 + i, "values": [1.0, 2.0, 3.0, float(i % 7)]}))
            sent += 1
        pub.flush()
        wait_until(lambda: d.stats.counts["messages"] >= sent, 20, "all received")
        idle(d)
        drops = dict(d.stats.drops)
        assert drops == {reason: 1 for _, reason in BAD} | {"duplicate": 1, "out_of_order": 1}
        assert d.stats.counts["gaps"] == 1
        wait_until(lambda: sum(len(doc["score"]) for _, doc in col.docs("scores/good")) == (120 - W) // HOP + 1, 5,
                   "all windows of the good device")
        wait_until(lambda: sum(len(doc["score"]) for _, doc in col.docs("scores/bad")) >= 6, 5, "bad device windows")
        bad_ends = sorted(e for _, doc in col.docs("scores/bad") for e in doc["window_end"])
        # windows before the gap end at T0+15..29; after it they need 16 fresh samples (T0+130..145)
        assert bad_ends == [T0 + e for e in (15, 19, 23, 27, 145, 149)]
        pub.close()
        col.close()
    logged = caplog.text
    for _, reason in BAD:
        assert f"[{reason}] device bad" in logged


def test_broker_restart_reconnects_and_carries_on(mosquitto, tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.onnx", make_metadata(window=W, hop=HOP, threshold=THR))
    x = series(200, seed=7)
    with running_daemon(mosquitto.url, model) as d:
        pub = Publisher(mosquitto.port)
        for i in range(100):
            pub.send("sensors/r/data", json.dumps({"ts": T0 + i, "values": x[i].tolist()}))
        pub.close()
        wait_until(lambda: d.stats.counts["messages"] >= 100, 10, "first half")
        idle(d)
        first = d.stats.counts["windows_scored"]
        mosquitto.restart(down_s=0.5)
        wait_until(lambda: d.stats.counts["reconnects"] >= 1 and d.link.connected.is_set(), 15, "reconnect")
        time.sleep(0.2)
        pub = Publisher(mosquitto.port)
        for i in range(100, 200):
            pub.send("sensors/r/data", json.dumps({"ts": T0 + i, "values": x[i].tolist()}))
        pub.close()
        wait_until(lambda: d.stats.counts["messages"] >= 200, 10, "second half")
        idle(d)
        assert first == (100 - W) // HOP + 1
        assert d.stats.counts["windows_scored"] == (200 - W) // HOP + 1  # the window carried across
        assert d.stats.drops == {}


def test_a_broker_outage_longer_than_the_stale_limit_makes_no_device_stale(mosquitto, tmp_path: Path) -> None:
    """No device can be heard while the broker is down: the stale checks pause, and after the reconnect each
    device has the stale limit to send again. One that does is never stale; one that does not is, once."""
    model = write_health_model(tmp_path / "m.onnx", CHANNELS4)
    x = series(50, seed=3)
    with running_daemon(mosquitto.url, model, stale_after_s=1.5) as d:
        pub = Publisher(mosquitto.port)
        for i in range(20):
            for dev in ("a", "b"):
                pub.send(f"sensors/{dev}/data", json.dumps({"ts": T0 + i, "values": x[i].tolist()}))
        pub.close()
        wait_until(lambda: d.stats.counts["messages"] >= 40, 10, "first samples")
        mosquitto.restart(down_s=3.5)  # more than twice the stale limit
        wait_until(lambda: d.link.connected.is_set(), 15, "reconnect")
        col = Collector(mosquitto.port, ["health/+/alerts"])
        pub = Publisher(mosquitto.port)
        for i in range(20, 50):  # a carries on at once, for 4.5 s; b never comes back
            pub.send("sensors/a/data", json.dumps({"ts": T0 + i, "values": x[i].tolist()}))
            time.sleep(0.15)
        pub.close()
        stale = [(doc["device"], doc["state"], doc["since"]) for _, doc in col.docs("health/")
                 if doc["kind"] == "stale"]
        col.close()
        assert stale == [("b", "raised", T0 + 19)]  # dated at b's last sample
        assert d.stats.sensor_faults == {"stale": 1} and d.stats.counts["stale_checks_paused"] == 1


def _retained(port: int, topics: list[str]) -> dict[str, dict]:
    """What a subscriber that connects now gets retained on ``topics``."""
    col = Collector(port, topics)
    time.sleep(0.5)
    got = {t: doc for t, doc in col.docs("")}
    col.close()
    return got


def _raise(d: Daemon, port: int, device: str, x: np.ndarray) -> None:
    """Send ``x`` (an anomaly in it) as ``device`` and wait until its alert is raised and everything scored."""
    pub = Publisher(port)
    for i in range(len(x)):
        pub.send(f"sensors/{device}/data", json.dumps({"ts": T0 + i, "values": x[i].tolist()}))
    pub.close()
    wait_until(lambda: d.stats.counts["alerts_raised"] >= 1, 10, "raised")
    idle(d)


def test_a_broker_restarted_without_persistence_gets_the_retained_documents_again(mosquitto, tmp_path: Path) -> None:
    """The broker forgets every retained message (no persistence): after the reconnect (no session) the daemon
    publishes its states and health documents again, so a dashboard that connects later sees a device in alarm."""
    model = write_health_model(tmp_path / "m.onnx", CHANNELS4)
    x = series(40, seed=5)
    x[20:, 1] *= 40.0  # a fault: raised and left raised
    with running_daemon(mosquitto.url, model, raise_after=1) as d:
        _raise(d, mosquitto.port, "p", x)
        topics = ["alerts/p/state", "health/p"]
        before = _retained(mosquitto.port, topics)
        assert before["alerts/p/state"]["state"] == "raised" and "health/p" in before
        mosquitto.restart(down_s=0.3)  # no persistence: nothing retained, no session
        wait_until(lambda: d.stats.counts["reconnects"] >= 1 and d.link.connected.is_set(), 15, "reconnect")
        wait_until(lambda: d.stats.counts["retained_reasserted"] >= 2, 10, "published again")
        after = _retained(mosquitto.port, topics)
        assert after["alerts/p/state"] == before["alerts/p/state"] and after["health/p"] == before["health/p"]


def test_an_adopted_raised_state_is_published_again_after_the_broker_lost_it(mosquitto, tmp_path: Path) -> None:
    """An alert left raised by an earlier run and adopted by this one (no data since): a broker restarted without
    persistence gets its retained state again from this run, as it gets this run's own."""
    model = write_model(tmp_path / "m.onnx", make_metadata(window=W, hop=HOP, threshold=THR))
    x = series(40, seed=5)
    x[20:] *= 40.0
    with running_daemon(mosquitto.url, model, raise_after=1) as d:
        _raise(d, mosquitto.port, "q", x)
    before = _retained(mosquitto.port, ["alerts/q/state"])["alerts/q/state"]
    assert before["state"] == "raised"
    with running_daemon(mosquitto.url, model, raise_after=1) as d2:
        wait_until(lambda: "q" in d2.tracker.devices, 10, "the raised state adopted")
        mosquitto.restart(down_s=0.3)  # no persistence: nothing retained
        wait_until(lambda: d2.stats.counts["reconnects"] >= 1 and d2.link.connected.is_set(), 15, "reconnect")
        wait_until(lambda: "alerts/q/state" in _retained(mosquitto.port, ["alerts/q/state"]), 10, "published again")
        assert _retained(mosquitto.port, ["alerts/q/state"])["alerts/q/state"] == before


def test_hot_reload_good_and_bad(mosquitto, tmp_path: Path, caplog) -> None:
    path = write_model(tmp_path / "m.onnx", make_metadata(window=W, hop=HOP, threshold=THR, model_id="v1"))
    x = series(100, seed=9)
    with running_daemon(mosquitto.url, path, watch_interval_s=0.1) as d:
        client = d.link.client
        connected_line = f"as {d.cfg.mqtt_client_id} "

        def daemon_connects() -> int:
            return sum(connected_line in ln for ln in mosquitto.log_text().splitlines() if "New client" in ln)

        wait_until(lambda: daemon_connects() == 1, 5, "the daemon's connect in the broker log")
        col = Collector(mosquitto.port, ["edgewatch/test/status"])
        pub = Publisher(mosquitto.port)
        for i in range(10):  # 10 of 16 samples buffered: no window yet
            pub.send("sensors/h/data", json.dumps({"ts": T0 + i, "values": x[i].tolist()}))
        pub.flush()
        wait_until(lambda: d.stats.counts["samples"] >= 10, 10, "samples")
        write_model(path, make_metadata(window=W, hop=HOP, threshold=THR, model_id="v2"))
        wait_until(lambda: d.model.model_id == "v2", 10, "reload to v2")
        wait_until(lambda: any(doc.get("model_id") == "v2" for _, doc in col.docs("edgewatch/")), 5, "status v2")
        tmp = path.with_suffix(".part")
        tmp.write_bytes(b"definitely not onnx")
        tmp.replace(path)
        wait_until(lambda: d.stats.counts["reloads_refused"] >= 1, 10, "refused reload")
        assert d.model.model_id == "v2"
        for i in range(10, 16):  # the kept buffer completes its first window with 6 more samples
            pub.send("sensors/h/data", json.dumps({"ts": T0 + i, "values": x[i].tolist()}))
        pub.flush()
        wait_until(lambda: d.stats.counts["windows_scored"] == 1, 10, "window across the reload")
        write_model(path, make_metadata(window=8, hop=2, threshold=THR, model_id="v3"))
        wait_until(lambda: d.model.model_id == "v3", 10, "reload to v3 (W changed)")
        for i in range(16, 24):
            pub.send("sensors/h/data", json.dumps({"ts": T0 + i, "values": x[i].tolist()}))
        pub.flush()
        wait_until(lambda: d.stats.counts["windows_scored"] == 2, 10, "first W=8 window")
        assert d.stats.counts["reloads"] == 2
        # the reloads swapped the model only: the MQTT connection was kept, never re-made
        assert d.stats.counts["reconnects"] == 0
        assert d.link.client is client and d.link.connected.is_set()
        assert daemon_connects() == 1, mosquitto.log_text()[-2000:]
        pub.close()
        col.close()
    assert "refused, keeping v2" in caplog.text


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_persistent_session_keeps_data_sent_while_stopped(mosquitto, tmp_path: Path, protocol: str) -> None:
    """A stable client id + persistent session: QoS 1 data published while the daemon is down is delivered."""
    model = write_model(tmp_path / "m.onnx", make_metadata(window=W, hop=HOP, threshold=THR))
    x = series(40, seed=3)
    with running_daemon(mosquitto.url, model, protocol=protocol, instance="persist") as d:
        assert d.link.connected.is_set()
    pub = Publisher(mosquitto.port)
    for i in range(40):
        pub.send("sensors/s/data", json.dumps({"ts": T0 + i, "values": x[i].tolist()}))
    pub.close()
    with running_daemon(mosquitto.url, model, protocol=protocol, instance="persist") as d:
        wait_until(lambda: d.stats.counts["messages"] >= 40, 10, "queued messages delivered")
        idle(d)
        assert d.stats.counts["windows_scored"] == (40 - W) // HOP + 1


def test_schema_checker_catches_a_broken_alert() -> None:
    schema = schema_check.load("alert.schema.json")
    good = {"schema_version": 1, "alert_id": "a", "raised_alert_id": "a", "device": "d", "state": "raised", "seq": 1,
            "score": 1.0, "threshold": 0.5, "clear_level": 0.4, "window_start": 0.0, "window_end": 1.0,
            "top_channels": [{"name": "x", "share": 1.0}], "model_id": "m", "instance": "i", "time": 2.0}
    assert schema_check.errors(good, schema) == []
    assert schema_check.errors({**good, "state": "on"}, schema)
    assert schema_check.errors({**good, "seq": "1"}, schema)
    assert schema_check.errors({k: v for k, v in good.items() if k != "device"}, schema)
    assert schema_check.errors({**good, "top_channels": [{"name": "x", "share": 2}]}, schema)


def test_periodic_stats_published(mosquitto, tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.onnx", make_metadata(window=W, hop=HOP, threshold=THR))
    col = Collector(mosquitto.port, ["edgewatch/test/stats"])
    with running_daemon(mosquitto.url, model, stats_interval_s=0.2):
        wait_until(lambda: len(col.docs("edgewatch/test/stats")) >= 2, 10, "two stats messages")
    doc = col.docs("edgewatch/test/stats")[0][1]
    for key in ("messages", "samples", "windows_scored", "alerts_raised", "drops", "devices_active",
                "batch_size_mean", "inference_ms_p50", "inference_ms_p99", "provider", "model_id"):
        assert key in doc
    col.close()


def test_eviction_and_idle_expiry_clear_a_raised_state(mosquitto, tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.onnx", make_metadata(window=W, hop=HOP, threshold=THR))
    loud = _anomalous(W, 4, 0, W, 0)
    with running_daemon(mosquitto.url, model, raise_after=1, max_devices=2, device_idle_s=3600.0) as d:
        col = Collector(mosquitto.port, ["alerts/+/state"])
        pub = Publisher(mosquitto.port)
        for dev in ("a", "b", "c"):  # c evicts a (least recently seen)
            pub.send(f"sensors/{dev}/data", json.dumps({"ts": [T0 + i for i in range(W)], "values": loud.tolist()}))
            pub.flush()
            wait_until(lambda dev=dev: any(t == f"alerts/{dev}/state" for t, _ in col.docs("alerts/")), 10, dev)
        assert d.stats.counts["devices_evicted"] == 1 and len(d.ingest.store) == 2
        assert d.expire_idle(time.monotonic() + 7200) == ["b", "c"]
        assert d.stats.counts["devices_expired"] == 2
        wait_until(lambda: len(col.docs("alerts/")) >= 6, 10, "cleared states")
        last = {t: doc for t, doc in col.docs("alerts/")}
        assert last["alerts/a/state"]["reason"] == "evicted"
        assert {last[f"alerts/{x}/state"]["reason"] for x in "bc"} == {"expired"}
        assert all(doc["state"] == "cleared" for doc in last.values())
        pub.close()
        col.close()


def _recording_daemon(broker_url: str, model: Path, **overrides) -> tuple[Daemon, list[tuple[str, dict]]]:
    """A daemon that is not started (no threads, no connection): the test drives ingest and scoring and
    sees every message the daemon would publish."""
    d = Daemon(daemon_config(broker_url, model, **overrides))
    sent: list[tuple[str, dict]] = []

    def publish(topic: str, payload, qos: int = 1, retain: bool = False) -> bool:
        sent.append((topic, json.loads(payload)))
        return True

    d.link.publish = publish  # type: ignore[method-assign]
    return d, sent


def _feed(d: Daemon, device: str, x: np.ndarray, t0: float = T0) -> None:
    for i in range(x.shape[0]):
        d.ingest.handle(f"sensors/{device}/data", json.dumps({"ts": t0 + i, "values": x[i].tolist()}).encode())


def _score_queue(d: Daemon) -> None:
    d.batching.drain()


def test_windows_of_an_evicted_device_do_not_track_it_again(mosquitto, tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.onnx", make_metadata(window=W, hop=HOP, threshold=THR))
    d, sent = _recording_daemon(mosquitto.url, model, max_devices=1, device_idle_s=3600.0)
    _feed(d, "a", _anomalous(40, 5, 0, 40, 1))  # 7 windows queued: enough to raise
    _feed(d, "b", series(1, seed=6))  # evicts a before its windows are scored
    queued = d.stats.counts["windows_queued"]
    _score_queue(d)
    assert d.tracker.devices == {}
    assert d.stats.drops["device_gone"] == queued and d.stats.counts["windows_scored"] == 0
    assert not [t for t, _ in sent if t.startswith("alerts/")]
    assert d.expire_idle(time.monotonic() + 7200) == ["b"]


def test_reset_reload_forgets_every_device_and_clears_raised_ones(mosquitto, tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.onnx", make_metadata(window=W, hop=HOP, threshold=THR))
    d, sent = _recording_daemon(mosquitto.url, model, device_idle_s=3600.0)
    _feed(d, "a", _anomalous(40, 5, 0, 40, 1))
    _feed(d, "n", series(40, seed=7))
    _score_queue(d)
    assert d.tracker.devices["a"].state == "raised" and "n" in d.tracker.devices
    write_model(model, make_metadata(window=2 * W, hop=HOP, threshold=THR))  # W changes: windows reset
    assert d.reload("test")
    assert d.tracker.devices == {} and len(d.ingest.store) == 0
    cleared = [doc for t, doc in sent if t == "alerts/a"][-1]
    assert cleared["state"] == "cleared" and cleared["reason"] == "reload"
    assert [doc for t, doc in sent if t == "alerts/a/state"][-1]["reason"] == "reload"
    assert not [t for t, _ in sent if t.startswith("alerts/n")]


def test_evicted_raised_device_gets_a_cleared_alert_and_seq_carries_on(mosquitto, tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.onnx", make_metadata(window=W, hop=HOP, threshold=THR))
    d, sent = _recording_daemon(mosquitto.url, model, max_devices=1, device_idle_s=3600.0)
    _feed(d, "a", _anomalous(40, 5, 0, 40, 1))
    _score_queue(d)
    raised = [doc for t, doc in sent if t == "alerts/a"]
    assert [a["state"] for a in raised] == ["raised"] and raised[0]["seq"] == 1
    _feed(d, "b", series(1, seed=6))  # evicts the raised device
    alerts = [doc for t, doc in sent if t == "alerts/a"]
    assert len(alerts) == 2
    cleared = alerts[1]
    schema = schema_check.load("alert.schema.json")
    assert schema_check.errors(cleared, schema) == []
    assert cleared["state"] == "cleared" and cleared["reason"] == "evicted" and cleared["seq"] == 2
    assert cleared["raised_alert_id"] == raised[0]["alert_id"] != cleared["alert_id"]
    assert cleared["window_end"] == T0 + 39  # the last window scored for it
    assert d.stats.counts["alerts_cleared"] == 1 and d.stats.counts["alerts_raised"] == 1
    state = [doc for t, doc in sent if t == "alerts/a/state"][-1]
    assert state["state"] == "cleared" and state["seq"] == 2
    assert schema_check.errors(state, schema_check.load("state.schema.json")) == []
    _feed(d, "a", _anomalous(40, 8, 0, 40, 1), T0 + 1000)  # it comes back and raises again
    _score_queue(d)
    assert [doc["seq"] for t, doc in sent if t == "alerts/a"] == [1, 2, 3]


def test_long_topics_are_not_cached(mosquitto, tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.onnx", make_metadata(window=W, hop=HOP, threshold=THR))
    d, _ = _recording_daemon(mosquitto.url, model, max_devices=4)
    x = series(3, seed=1)
    long_dev = "x" * 5000
    for i in range(3):
        for dev in ("short", long_dev):
            d.ingest.handle(f"sensors/{dev}/data", json.dumps({"ts": T0 + i, "values": x[i].tolist()}).encode())
    assert d.stats.counts["samples"] == 6 and len(d.ingest.store) == 2
    assert list(d.ingest._ids) == ["sensors/short/data"]


def test_seq_carries_on_across_a_restart_from_a_retained_cleared_state(mosquitto, tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.onnx", make_metadata(window=W, hop=HOP, threshold=THR))
    loud = _anomalous(W, 4, 0, W, 0)
    opts = {"raise_after": 1, "clear_after": 1, "instance": "seq"}
    col = Collector(mosquitto.port, ["alerts/#"])
    pub = Publisher(mosquitto.port)

    def send(x: np.ndarray, t0: float) -> None:
        pub.send("sensors/s/data", json.dumps({"ts": [t0 + i for i in range(len(x))], "values": x.tolist()}))
        pub.flush()

    def last_state() -> dict:
        return [doc for t, doc in col.docs("alerts/s/state")][-1]

    with running_daemon(mosquitto.url, model, **opts):
        send(loud, T0)
        send(series(2 * W, seed=9), T0 + W)
        wait_until(lambda: col.docs("alerts/s/state") and last_state()["state"] == "cleared", 10, "cleared")
        idle_seq = last_state()["seq"]
    assert idle_seq >= 2
    with running_daemon(mosquitto.url, model, **opts) as d:
        wait_until(lambda: d.tracker.past_seq.get("s") == idle_seq, 10, "seq read back from the retained state")
        send(loud, T0 + 1000)
        wait_until(lambda: d.stats.counts["alerts_raised"] == 1, 10, "raised again")
    wait_until(lambda: col.alerts()[-1]["seq"] == idle_seq + 1, 10, "seq after the restart")
    assert [a["seq"] for a in col.alerts()] == list(range(1, idle_seq + 2))
    pub.close()
    col.close()


@pytest.mark.parametrize("hop, expected", [(0, (40 - 8) // 2 + 1), (4, (40 - 8) // 4 + 1), (50, (40 - 8) // 8 + 1)])
def test_input_hop_overrides_the_models_default_hop(tmp_path: Path, hop: int, expected: int) -> None:
    """`input.hop` 0 uses the model's hop (2 here); a value scores every `hop` samples, capped at W (8)."""
    from edge_runtime.config import build_config
    from edge_runtime.pipeline.batcher import WindowBuffer
    from edge_runtime.pipeline.stats import Stats
    from edge_runtime.service.ingest import Ingest, scoring_hop
    from edge_runtime.service.model import load_model
    from tests.edge_runtime.onnx_models import make_metadata, write_model

    path = write_model(tmp_path / "m.onnx", make_metadata(window=8, hop=2))
    cfg = build_config(None, {"path": str(path), "hop": hop})
    model = load_model(path)
    assert scoring_hop(cfg, model) == (min(hop, 8) if hop else 2)
    ingest = Ingest(cfg, model, Stats(), WindowBuffer(1000).put)
    for i in range(40):
        ingest.handle("sensors/d1/data", json.dumps({"ts": 1000.0 + i, "values": [1.0, 2.0, 3.0, 4.0]}).encode())
    assert ingest.stats.counts["windows_queued"] == expected
