"""Signed model rollout over a real Mosquitto: targets, verification, refusals, restart during a download."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.service.daemon import Daemon
from edge_runtime.service.mqtt import ClientOptions, make_client
from tests.edge_runtime.mqtt_helpers import Collector, Publisher, wait_until
from tests.edge_runtime.onnx_models import make_metadata, series, write_model
from tests.edge_runtime.service.rollout_helpers import (
    conn,
    events,
    fleet_config,
    fleet_daemons,
    keypair,
    wait_event,
)
from trainer.fleet import build_manifest, publish_model, publish_parts, send_command

pytestmark = pytest.mark.slow

TARGETS = {"gw-a": "site1/line1/a", "gw-b": "site1/line1/b", "gw-c": "site1/line1/c", "gw-d": "site1/line2/d",
           "gw-e": "site2/line1/e"}


def _models(tmp: Path) -> tuple[Path, Path]:
    live = write_model(tmp / "live.onnx", make_metadata(model_id="v1", threshold=2.0))
    cand = write_model(tmp / "cand.onnx", make_metadata(model_id="v2", threshold=1.5))
    return live, cand


def test_a_model_published_to_five_gateways_is_staged_by_the_three_it_targets(mosquitto, tmp_path: Path) -> None:
    live, cand = _models(tmp_path)
    priv, pub = keypair(tmp_path)
    cfgs = [fleet_config(mosquitto.url, live, tmp_path, name, target, pub) for name, target in TARGETS.items()]
    col = Collector(mosquitto.port, ["edgewatch/+/rollout", "edgewatch/+/status"])
    with fleet_daemons(mosquitto.url, cfgs) as ds:
        doc = publish_model(conn(mosquitto.url), cand, "site1/line1/*", priv, chunk_size=256)
        assert doc["chunks"] == -(-cand.stat().st_size // 256) and doc["signature"]
        for d in ds[:3]:
            staged = wait_event(col, d.instance, "staged")
            assert staged["models"] == {"live": "v1", "shadow": "v2", "previous": None, "phase": "shadow"}
            assert [e["event"] for e in events(col, d.instance)] == ["download_started", "downloaded", "staged"]
            assert d.rollout.candidate.sha256 == doc["sha256"] and d.model.model_id == "v1"
            assert (Path(d.cfg.staging_dir) / f"v2-{doc['sha256'][:12]}.onnx").read_bytes() == cand.read_bytes()
            wait_until(lambda d=d: json.loads(d._status_message().payload)["models"]["shadow"] == "v2", 5, "status")
        time.sleep(0.5)
        for d in ds[3:]:  # not targeted: nothing downloaded, nothing announced
            assert events(col, d.instance) == [] and d.rollout.candidate is None
            assert not list(Path(d.cfg.staging_dir).glob("*.onnx"))
    col.close()


def test_tampered_chunk_and_wrong_signature_are_refused_and_the_old_model_serves(mosquitto, tmp_path: Path) -> None:
    live, cand = _models(tmp_path)
    priv, pub = keypair(tmp_path)
    other, _ = keypair(tmp_path, "intruder")
    cfg = fleet_config(mosquitto.url, live, tmp_path, "gw-a", "site1/line1/a", pub)
    col = Collector(mosquitto.port, ["edgewatch/+/rollout"])
    with fleet_daemons(mosquitto.url, [cfg]) as (d,):
        publish_model(conn(mosquitto.url), cand, "site1/**", other, chunk_size=256)  # signed with the wrong key
        refused = wait_event(col, "gw-a", "refused")
        assert "bad signature" in refused["reason"]
        assert [e["event"] for e in events(col, "gw-a")] == ["refused"]  # refused before any download
        # a chunk changed on the way (same length), then the genuine manifest and the other chunks
        doc, data = build_manifest(cand, "site1/**", priv, chunk_size=256)
        bad = bytearray(data[:256])
        bad[100] ^= 0xFF
        c = make_client(*_addr(mosquitto.port))
        c.connect("127.0.0.1", mosquitto.port)
        c.loop_start()
        c.publish("fleet/models/v2/chunks/0", bytes(bad), qos=1, retain=True).wait_for_publish(5)
        c.disconnect()
        c.loop_stop()
        publish_parts(conn(mosquitto.url), doc, data, range(1, doc["chunks"]))
        wait_until(lambda: len(events(col, "gw-a", "refused")) == 2, 15, "tampered download refused")
        assert "tampered or corrupt chunk" in events(col, "gw-a", "refused")[-1]["reason"]
        assert d.stats.counts["rollout_refused"] == 2 and d.rollout.candidate is None
        assert not list(Path(cfg.staging_dir).glob("*.onnx")) and not list(Path(cfg.staging_dir).glob("*.part"))
        # the old model kept serving throughout
        pubr = Publisher(mosquitto.port)
        x = series(40, seed=3)
        for i in range(40):
            pubr.send("sensors/p1/data", json.dumps({"ts": 1.7e9 + i, "values": x[i].tolist()}))
        pubr.flush()
        wait_until(lambda: d.stats.counts["windows_scored"] >= 7, 10, "scoring with the old model")
        assert d.model.model_id == "v1" and d.stats.counts["shadow_windows"] == 0
        pubr.close()
    col.close()


def _addr(port: int):
    from edge_runtime.service.mqtt import BrokerAddress

    return BrokerAddress("127.0.0.1", port, False), ClientOptions(client_id="tamper", buffered=False)


def test_unsigned_model_refused_unless_allowed(mosquitto, tmp_path: Path) -> None:
    live, cand = _models(tmp_path)
    _, pub = keypair(tmp_path)
    strict = fleet_config(mosquitto.url, live, tmp_path, "gw-a", "a", pub)
    lax = fleet_config(mosquitto.url, live, tmp_path, "gw-b", "b", pub, allow_unsigned=True)
    col = Collector(mosquitto.port, ["edgewatch/+/rollout"])
    with fleet_daemons(mosquitto.url, [strict, lax]):
        publish_model(conn(mosquitto.url), cand, "a,b", None, chunk_size=256)
        assert "unsigned" in wait_event(col, "gw-a", "refused")["reason"]
        wait_event(col, "gw-b", "staged")
    col.close()


def test_manual_promote_and_rollback_commands(mosquitto, tmp_path: Path) -> None:
    live, cand = _models(tmp_path)
    priv, pub = keypair(tmp_path)
    other, _ = keypair(tmp_path, "intruder")
    cfg = fleet_config(mosquitto.url, live, tmp_path, "gw-a", "site1/a", pub)
    col = Collector(mosquitto.port, ["edgewatch/+/rollout"])
    with fleet_daemons(mosquitto.url, [cfg]) as (d,):
        publish_model(conn(mosquitto.url), cand, "site1/*", priv, chunk_size=256)
        wait_event(col, "gw-a", "staged")
        send_command(conn(mosquitto.url), "promote", "v2", "site1/*", other)
        assert "bad signature" in wait_event(col, "gw-a", "command_refused")["reason"]
        send_command(conn(mosquitto.url), "promote", "v2", "site1/*", priv)
        promoted = wait_event(col, "gw-a", "promoted")
        assert promoted["models"]["live"] == "v2" and promoted["models"]["previous"] == "v1"
        assert d.model.model_id == "v2" and d.scorer.shadow is None
        send_command(conn(mosquitto.url), "rollback", "", "site1/*", priv)
        back = wait_event(col, "gw-a", "rolled_back")
        assert back["models"]["live"] == "v1" and d.model.model_id == "v1"
        state = json.loads((Path(cfg.staging_dir) / "state.json").read_text())
        assert state["live"]["model_id"] == "v1" and state["previous"]["model_id"] == "v2"
    col.close()


def test_restart_during_a_download_resumes_it(mosquitto, tmp_path: Path) -> None:
    live, cand = _models(tmp_path)
    priv, pub = keypair(tmp_path)
    cfg = fleet_config(mosquitto.url, live, tmp_path, "gw-a", "a", pub)
    col = Collector(mosquitto.port, ["edgewatch/+/rollout"])
    doc, data = build_manifest(cand, "a", priv, chunk_size=256)
    assert doc["chunks"] >= 4
    part = Path(cfg.staging_dir) / "v2.part"
    with fleet_daemons(mosquitto.url, [cfg]) as (d,):
        publish_parts(conn(mosquitto.url), doc, data, range(2))  # the workstation stops after two chunks
        wait_until(lambda: d.rollout.download is not None and len(d.rollout.download.have) == 2, 10, "2 chunks")
    assert sorted(p.name for p in part.iterdir()) == ["000000", "000001", "manifest.json"]
    # a chunk half written when the daemon died (a partial temp file) is not trusted
    (part / "000002.tmp").write_bytes(data[512:600])
    with fleet_daemons(mosquitto.url, [cfg]) as (d,):
        started = [e for e in events(col, "gw-a", "download_started")]
        wait_until(lambda: len(events(col, "gw-a", "download_started")) == 2, 10, "resumed download")
        assert events(col, "gw-a", "download_started")[-1]["resumed_chunks"] == 2 and len(started) >= 1
        publish_parts(conn(mosquitto.url), doc, data, range(2, doc["chunks"]), manifest=False)
        wait_event(col, "gw-a", "staged")
        assert d.rollout.candidate.sha256 == doc["sha256"] and not part.exists()
    col.close()


def test_restarted_daemon_serves_the_promoted_model(mosquitto, tmp_path: Path) -> None:
    live, cand = _models(tmp_path)
    priv, pub = keypair(tmp_path)
    cfg = fleet_config(mosquitto.url, live, tmp_path, "gw-a", "a", pub)
    col = Collector(mosquitto.port, ["edgewatch/+/rollout"])
    with fleet_daemons(mosquitto.url, [cfg]) as (d,):
        publish_model(conn(mosquitto.url), cand, "a", priv, chunk_size=256)
        wait_event(col, "gw-a", "staged")
        send_command(conn(mosquitto.url), "promote", "v2", "a", priv)
        wait_event(col, "gw-a", "promoted")
    d2 = Daemon(cfg)
    assert d2.model.model_id == "v2" and d2.rollout.previous.model_id == "v1"
    d2.link.client.loop_stop()
    col.close()
    np.testing.assert_equal(d2.model.sha256, d.model.sha256)


def test_a_newer_model_supersedes_the_staged_one_and_its_file_goes(mosquitto, tmp_path: Path) -> None:
    live, cand = _models(tmp_path)
    v3 = write_model(tmp_path / "v3.onnx", make_metadata(model_id="v3", threshold=1.7))
    priv, pub = keypair(tmp_path)
    cfg = fleet_config(mosquitto.url, live, tmp_path, "gw-a", "a", pub)
    col = Collector(mosquitto.port, ["edgewatch/+/rollout"])
    with fleet_daemons(mosquitto.url, [cfg]) as (d,):
        publish_model(conn(mosquitto.url), cand, "a", priv, chunk_size=256)
        wait_event(col, "gw-a", "staged")
        publish_model(conn(mosquitto.url), v3, "a", priv, chunk_size=256)
        wait_until(lambda: d.rollout.candidate is not None and d.rollout.candidate.model_id == "v3", 15, "v3 staged")
        assert wait_event(col, "gw-a", "dropped")["reason"] == "superseded by v3"
        assert [p.name.split("-")[0] for p in Path(cfg.staging_dir).glob("*.onnx")] == ["v3"]
        send_command(conn(mosquitto.url), "promote", "v2", "a", priv)  # no longer the staged one
        assert "not the staged model (v3)" in wait_event(col, "gw-a", "command_refused")["reason"]
        assert d.model.model_id == "v1"
    col.close()


def test_a_model_that_cannot_be_shadowed_is_refused_saying_only_what_differs() -> None:
    from edge_runtime.service.rollout import shape_mismatch

    live = ["Flow", "Pressure", "Temp"]
    assert shape_mismatch(live, 64, live, 64) == ""
    why = shape_mismatch(live, 16, live, 64)  # the trial: channels identical, the message said they differed
    assert why.startswith("its window W=16 is not the live model's W=64: it cannot be shadowed")
    assert "channels" not in why.split(":")[0] and "fit --like LIVE.onnx" in why
    assert "in another order" in shape_mismatch(live[::-1], 64, live, 64)
    why = shape_mismatch(["Flow", "Pressure", "Speed"], 32, live, 64)
    assert "W=32" in why and "missing 'Temp'" in why and "not in it: 'Speed'" in why
