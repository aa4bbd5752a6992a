"""The shadow beside the live model on a real Mosquitto: its comparison equals what each model scores offline
on the same windows; automatic promotion, rejection and rollback under the rules."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.pipeline.hysteresis import RAISE, AlertPolicy, hysteresis
from tests.edge_runtime import schema_check
from tests.edge_runtime.mqtt_helpers import Collector, Publisher, idle, wait_until
from tests.edge_runtime.onnx_models import (
    make_metadata,
    reference_scores,
    series,
    sliding_windows,
    write_model,
)
from tests.edge_runtime.service.rollout_helpers import (
    conn,
    events,
    fleet_config,
    fleet_daemons,
    keypair,
    wait_event,
)
from trainer.fleet import publish_model

pytestmark = pytest.mark.slow

W, HOP, T0 = 16, 4, 1_700_000_000.0
LIVE = make_metadata(window=W, hop=HOP, threshold=0.5, model_id="v1")
CAND = make_metadata(window=W, hop=HOP, threshold=0.4, std=[0.8] * 4, model_id="v2")


def _anomalous(n: int, seed: int, start: int, stop: int, channel: int, amp: float = 2.0) -> np.ndarray:
    x = series(n, seed=seed)
    x[start:stop, channel] += (amp * np.random.default_rng(seed + 100).standard_normal(stop - start)).astype(np.float32)
    return x


def _normal(devices: int, n: int, seed: int) -> tuple[dict[str, np.ndarray], int]:
    """``devices`` normal series of ``n`` samples and the number of windows they make."""
    normal = {f"n{i}": series(n, seed=seed + i) for i in range(devices)}
    return normal, sum((len(x) - W) // HOP + 1 for x in normal.values())


def _send(port: int, devices: dict[str, np.ndarray]) -> None:
    pub = Publisher(port)
    for dev, x in devices.items():
        for i in range(len(x)):
            pub.send(f"sensors/{dev}/data", json.dumps({"ts": T0 + i, "values": x[i].tolist()}))
    pub.close()


def _offline(devices: dict[str, np.ndarray], policy: AlertPolicy) -> dict:
    out: dict = {"windows": 0, "agree": 0}
    scores = {"live": [], "candidate": []}
    alerts = {"live": 0, "candidate": 0}
    for x in devices.values():
        win = sliding_windows(x, W, HOP)
        s = {"live": reference_scores(win, LIVE)[0], "candidate": reference_scores(win, CAND)[0]}
        thr = {"live": LIVE.threshold.value, "candidate": CAND.threshold.value}
        for k in s:
            # float32 (the session) vs float64 (here): no score within 1e-5 of a level, so decisions agree
            assert np.min(np.abs(s[k] - thr[k])) > 1e-5 and np.min(np.abs(s[k] - 0.8 * thr[k])) > 1e-5
            _, ev, _ = hysteresis(s[k], thr[k], policy)
            alerts[k] += sum(e == RAISE for _, e in ev)
            scores[k].append(s[k])
        out["windows"] += len(win)
        out["agree"] += int(((s["live"] > thr["live"]) == (s["candidate"] > thr["candidate"])).sum())
    out["alerts"] = alerts
    out["scores"] = {k: np.concatenate(v) for k, v in scores.items()}
    return out


def test_shadow_comparison_equals_each_models_offline_scores(mosquitto, tmp_path: Path) -> None:
    live = write_model(tmp_path / "live.onnx", LIVE)
    cand = write_model(tmp_path / "cand.onnx", CAND)
    devices = {"pump-1": _anomalous(400, 1, 160, 240, 1), "pump-2": series(400, seed=2),
               "pump-3": _anomalous(400, 3, 100, 200, 2, amp=1.2)}
    policy = AlertPolicy(3, 5, 0.8)
    want = _offline(devices, policy)
    assert want["alerts"]["candidate"] != want["alerts"]["live"] or want["agree"] < want["windows"]
    priv, pub = keypair(tmp_path)
    cfg = fleet_config(mosquitto.url, live, tmp_path, "gw-a", "a", pub, shadow_windows=want["windows"], shadow_s=0.0)
    col = Collector(mosquitto.port, ["edgewatch/+/rollout", "edgewatch/+/shadow", "alerts/#"])
    with fleet_daemons(mosquitto.url, [cfg]) as (d,):
        publish_model(conn(mosquitto.url), cand, "a", priv, chunk_size=512)
        wait_event(col, "gw-a", "staged")
        _send(mosquitto.port, devices)
        ended = wait_event(col, "gw-a", "shadow_ended", 20)
        idle(d)
        got = [doc for _, doc in col.docs("edgewatch/gw-a/shadow") if doc["final"]][-1]
        assert schema_check.errors(got, schema_check.load("shadow.schema.json")) == []
        assert got["windows_compared"] == want["windows"] == ended["windows_compared"]
        assert got["live"]["alerts"] == want["alerts"]["live"] and got["candidate"]["alerts"] == want["alerts"]["candidate"]
        assert got["agreement"] == pytest.approx(want["agree"] / want["windows"], abs=1e-6)
        for k in ("live", "candidate"):
            for q, v in got[k]["score_quantiles"].items():
                assert v == pytest.approx(np.quantile(want["scores"][k], int(q[1:]) / 100), rel=1e-4), (k, q)
            assert got[k]["windows_above"] == int((want["scores"][k] > got[k]["threshold"]).sum())
        # the shadow published nothing on the alert topics: only the live model's alerts are there
        alerts = [doc for t, doc in col.docs("alerts/") if not t.endswith("/state")]
        assert {a["model_id"] for a in alerts} == {"v1"}
        raises = [a for a in alerts if a["state"] == "raised" and a.get("event", "raise") == "raise"]  # not updates
        assert len(raises) == want["alerts"]["live"]
        assert d.stats.counts["shadow_windows"] == want["windows"] and d.scorer.shadow is None
        assert d.model.model_id == "v1"  # manual promotion (auto_promote off): still waiting
        for e in events(col, "gw-a"):
            assert schema_check.errors(e, schema_check.load("rollout_event.schema.json")) == [], e
    col.close()


def test_automatic_promotion_then_automatic_rollback(mosquitto, tmp_path: Path) -> None:
    live = write_model(tmp_path / "live.onnx", LIVE)
    same = write_model(tmp_path / "v2.onnx", make_metadata(window=W, hop=HOP, threshold=0.5, model_id="v2"))
    priv, pub = keypair(tmp_path)
    normal, n_windows = _normal(3, 200, 10)
    cfg = fleet_config(mosquitto.url, live, tmp_path, "gw-a", "a", pub, shadow_windows=n_windows, shadow_s=0.0,
                       auto_promote=True, watch_s=60.0, rollback_max_extra_alerts=1)
    col = Collector(mosquitto.port, ["edgewatch/+/rollout"])
    with fleet_daemons(mosquitto.url, [cfg]) as (d,):
        publish_model(conn(mosquitto.url), same, "a", priv, chunk_size=512)
        wait_event(col, "gw-a", "staged")
        _send(mosquitto.port, normal)
        promoted = wait_event(col, "gw-a", "promoted", 20)
        assert promoted["reason"].startswith("automatic: candidate alerts 0 vs live 0")
        assert d.model.model_id == "v2" and d.stats.counts["promotions"] == 1
        # a night of false alarms: three devices raise under the promoted model, the shadow saw none
        idle(d)
        bad = {f"b{i}": _anomalous(120, 20 + i, 20, 100, i) for i in range(3)}
        _send(mosquitto.port, {k: v for k, v in bad.items()})
        back = wait_event(col, "gw-a", "rolled_back", 20)
        assert back["reason"].startswith("automatic: ") and back["models"]["live"] == "v1"
        assert d.model.model_id == "v1" and d.stats.counts["rollbacks"] == 1
    col.close()


def test_automatic_promotion_refuses_a_candidate_raising_too_many_alerts(mosquitto, tmp_path: Path) -> None:
    live = write_model(tmp_path / "live.onnx", LIVE)
    noisy = write_model(tmp_path / "v2.onnx", make_metadata(window=W, hop=HOP, threshold=0.05, model_id="v2"))
    priv, pub = keypair(tmp_path)
    normal, n_windows = _normal(5, 120, 30)
    cfg = fleet_config(mosquitto.url, live, tmp_path, "gw-a", "a", pub, shadow_windows=n_windows, shadow_s=0.0,
                       auto_promote=True, promote_max_extra_alerts=3)
    col = Collector(mosquitto.port, ["edgewatch/+/rollout"])
    with fleet_daemons(mosquitto.url, [cfg]) as (d,):
        publish_model(conn(mosquitto.url), noisy, "a", priv, chunk_size=512)
        wait_event(col, "gw-a", "staged")
        _send(mosquitto.port, normal)
        rejected = wait_event(col, "gw-a", "rejected", 20)
        assert "candidate alerts 5 vs live 0" in rejected["reason"]
        wait_until(lambda: d.rollout.candidate is None, 5, "candidate dropped")
        assert d.model.model_id == "v1" and d.stats.counts["promotions"] == 0
        assert not list(Path(cfg.staging_dir).glob("*.onnx"))  # the rejected file is gone
    col.close()


def _retagged(src: Path, out: Path, model_id: str, threshold_factor: float) -> Path:
    """A copy of an exported model with another model id and threshold (the same graph)."""
    import onnx

    from edge_runtime.contract import METADATA_KEY

    m = onnx.load(str(src))
    for p in m.metadata_props:
        if p.key == METADATA_KEY:
            meta = json.loads(p.value)
            meta["model_id"] = model_id
            meta["threshold"]["value"] *= threshold_factor
            p.value = json.dumps(meta)
    onnx.save(m, str(out))
    return out


def test_shadow_of_a_really_exported_model_equals_its_offline_session(mosquitto, tmp_path: Path,
                                                                      demo_model_path: Path) -> None:
    from edge_runtime.service.model import load_model
    from edge_runtime.tools.synthetic import normal_series

    cand = _retagged(demo_model_path, tmp_path / "cand.onnx", "trained-v2", 0.8)
    live_m, cand_m = load_model(demo_model_path, "cpu"), load_model(cand, "cpu")
    w, hop = live_m.window, live_m.metadata.hop
    devices = {f"d{i}": normal_series(300, live_m.n_channels, seed=40 + i).astype(np.float32) for i in range(3)}
    devices["d0"][150:230, 1] += 4.0 * float(np.std(devices["d0"][:, 1]))  # a fault one of them sees
    policy = AlertPolicy(3, 5, 0.8)
    want: dict = {"live": [0, []], "candidate": [0, []]}
    for x in devices.values():
        win = sliding_windows(x, w, hop)
        for k, m in (("live", live_m), ("candidate", cand_m)):
            s = m.run(win)[0].astype(np.float64)
            _, ev, _ = hysteresis(s, m.threshold, policy)
            want[k][0] += sum(e == RAISE for _, e in ev)
            want[k][1].append(s)
    n = sum(len(s) for s in want["live"][1])
    priv, pub = keypair(tmp_path)
    cfg = fleet_config(mosquitto.url, demo_model_path, tmp_path, "gw-a", "a", pub, shadow_windows=n, shadow_s=0.0)
    col = Collector(mosquitto.port, ["edgewatch/+/rollout", "edgewatch/+/shadow"])
    with fleet_daemons(mosquitto.url, [cfg]) as (d,):
        publish_model(conn(mosquitto.url), cand, "a", priv)
        wait_event(col, "gw-a", "staged")
        _send(mosquitto.port, devices)
        wait_event(col, "gw-a", "shadow_ended", 30)
        got = [doc for _, doc in col.docs("edgewatch/gw-a/shadow") if doc["final"]][-1]
    col.close()
    assert got["windows_compared"] == n and got["model_id"] == "trained-v2"
    for k in ("live", "candidate"):
        scores = np.concatenate(want[k][1])
        assert got[k]["alerts"] == want[k][0], k
        assert got[k]["windows_above"] == int((scores > got[k]["threshold"]).sum()), k
        for q, v in got[k]["score_quantiles"].items():
            assert v == pytest.approx(np.quantile(scores, int(q[1:]) / 100), rel=1e-5), (k, q)
    assert want["live"][0] >= 1  # the fault raised: the comparison is not of two silent models
