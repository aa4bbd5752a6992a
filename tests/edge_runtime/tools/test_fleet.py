"""``edgewatch fleet status`` against a real Mosquitto: 50 simulated gateways and one real daemon."""

from __future__ import annotations

import json
import time
from pathlib import Path

from click.testing import CliRunner

from edge_runtime.cli import main
from edge_runtime.config import build_config
from edge_runtime.pipeline.documents import offline_doc, online_doc, to_json
from edge_runtime.pipeline.stats import Stats
from edge_runtime.tools.fleet import FleetView, collect, table
from tests.edge_runtime.mqtt_helpers import Publisher, running_daemon, wait_until
from tests.edge_runtime.onnx_models import make_metadata, series, write_model

N = 50
T0 = 1_700_000_000.0


def _simulate(port: int) -> None:
    """50 gateways: retained statuses (every 10th offline), and one stats document each."""
    pub = Publisher(port)
    for i in range(N):
        name = f"gw-{i:02d}"
        if i % 10 == 9:
            doc = offline_doc(name, "connection lost")
        else:
            doc = online_doc(name, "1.0", f"model-{i % 3}", "CPUExecutionProvider", "", ["a"], 16, 0.5, T0 + i)
            doc["models"] = {"live": f"model-{i % 3}", "shadow": "model-9" if i < 5 else None,
                             "previous": None, "phase": "shadow" if i < 5 else "idle"}
        pub.send(f"edgewatch/{name}/status", to_json(doc), qos=1, retain=True)
    pub.close()


def _stats(port: int) -> None:
    pub = Publisher(port)
    for i in range(N):
        s = Stats()
        s.counts["alerts_raised"] = i
        s.drops["bad_json"] = i % 4
        if i == 12:
            s.lose("not_connected", 2)
        s.counts["windows_clipped"] = 1 if i == 7 else 0
        doc = s.snapshot(instance=f"gw-{i:02d}", devices_active=i + 1, alerts_raised_1h=i % 5,
                         last_sample={f"dev{j}": T0 + 100 + j for j in range(i % 3 + 1)}, time=T0)
        pub.send(f"edgewatch/gw-{i:02d}/stats", to_json(doc), qos=0)
    pub.close()


def test_fleet_status_of_50_gateways_and_a_real_daemon(mosquitto, tmp_path: Path) -> None:
    _simulate(mosquitto.port)
    model = write_model(tmp_path / "m.onnx", make_metadata(model_id="real-v1"))
    cfg = build_config(None, {"broker": mosquitto.url})
    with running_daemon(mosquitto.url, model, instance="real-gw") as d:
        pub = Publisher(mosquitto.port)
        x = series(40, seed=1)
        for i in range(40):
            pub.send("sensors/pump-7/data", json.dumps({"ts": T0 + i, "values": x[i].tolist()}))
        pub.close()
        wait_until(lambda: d.stats.counts["samples"] == 40, 10, "samples")
        view, sub = collect(cfg, 0.3)
        try:
            _stats(mosquitto.port)
            d.housekeeping.publish_stats()
            wait_until(lambda: sum(bool(g.stats) for g in view.gateways.values()) == N + 1, 10, "every stats doc")
            rows = {r["gateway"]: r for r in view.rows(time.time())}
        finally:
            sub.close()
    assert len(rows) == N + 1
    assert rows["gw-09"]["state"] == "offline" and rows["gw-08"]["state"] == "online"
    assert sum(r["state"] == "online" for r in rows.values()) == N - 5 + 1
    assert rows["gw-03"]["model_live"] == "model-0" and rows["gw-03"]["model_shadow"] == "model-9"
    assert rows["gw-08"]["since"] == T0 + 8 and rows["gw-08"]["devices"] == 9
    assert rows["gw-11"]["drops"] == {"bad_json": 3} and rows["gw-11"]["alerts_1h"] == 1
    assert rows["gw-12"]["publish_lost"] == {"not_connected": 2} and rows["gw-11"]["publish_lost"] == {}
    assert rows["gw-07"]["sensor_faults"] == {"windows_clipped": 1}
    assert rows["gw-02"]["newest_sample"] == T0 + 102 and len(rows["gw-02"]["last_sample"]) == 3
    real = rows["real-gw"]
    assert real["since"] == round(d.started, 3)  # since the daemon started, not since its last (re)connect
    assert real["model_live"] == "real-v1" and real["devices"] == 1 and real["alerts_1h"] == 0
    assert list(real["last_sample"]) == ["pump-7"] and abs(real["last_sample"]["pump-7"] - time.time()) < 60
    text = table(list(rows.values()))
    assert len(text.splitlines()) == N + 2 and "gw-49" in text
    assert "LOST OUT" in text.splitlines()[0]
    assert "not_connected=2" in next(line for line in text.splitlines() if line.startswith("gw-12"))


def test_cli_json_and_table(mosquitto) -> None:
    _simulate(mosquitto.port)
    r = CliRunner().invoke(main, ["fleet", "status", "--broker", mosquitto.url, "--json", "--wait", "1"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert len(doc["gateways"]) == N and doc["gateways"][0]["gateway"] == "gw-00"
    r = CliRunner().invoke(main, ["fleet", "status", "--broker", mosquitto.url, "--once", "--wait", "1"])
    assert r.exit_code == 0 and r.output.splitlines()[0].startswith("GATEWAY")
    assert "50 gateway(s): 45 online, 5 not; 5 shadowing a model" in r.output


def test_cli_unreachable_broker_is_one_line() -> None:
    r = CliRunner().invoke(main, ["fleet", "status", "--broker", "mqtt://127.0.0.1:9", "--json"])
    assert r.exit_code == 69 and "edgewatch: error:" in r.output and len(r.output.strip().splitlines()) == 1


def test_view_ignores_malformed_and_foreign_topics() -> None:
    v = FleetView("edgewatch/{instance}/status", "edgewatch/{instance}/stats", "edgewatch/{instance}/shadow")
    v.on_message("edgewatch/a/status", b"not json", True)
    v.on_message("edgewatch/a/b/status", b"{}", True)
    v.on_message("other/a/status", b"{}", True)
    v.on_message("edgewatch/b/stats", b'{"devices_active": "x", "drops": 3}', False)
    assert v.skipped == 1 and list(v.gateways) == ["b"]
    row = v.rows(time.time())[0]
    assert row["drops"] == {} and row["state"] == "unknown"


def test_once_shows_the_last_stats_of_a_daemon_that_published_before_the_view_connected(mosquitto,
                                                                                        tmp_path: Path) -> None:
    """The stats are retained: `--once` a minute after the last interval still has devices, drops, alerts."""
    model = write_model(tmp_path / "m.onnx", make_metadata(model_id="real-v1"))
    try:
        with running_daemon(mosquitto.url, model, instance="gw-ret") as d:
            pub = Publisher(mosquitto.port)
            x = series(20, seed=2)
            for i in range(20):
                pub.send("sensors/pump-1/data", json.dumps({"ts": T0 + i, "values": x[i].tolist()}))
            pub.send("sensors/pump-1/data", b"1,2")  # a CSV line short of values
            pub.close()
            wait_until(lambda: d.stats.counts["samples"] == 20 and sum(d.stats.drops.values()) == 1, 10, "samples")
            d.housekeeping.publish_stats()
            time.sleep(0.3)
            r = CliRunner().invoke(main, ["fleet", "status", "--broker", mosquitto.url, "--json", "--wait", "0.5"])
        assert r.exit_code == 0, r.output
        (row,) = [g for g in json.loads(r.output)["gateways"] if g["gateway"] == "gw-ret"]
        assert row["devices"] == 1 and row["drops"] == {"wrong_channels": 1} and row["alerts_1h"] == 0
        assert row["stats_age_s"] is not None and row["stats_age_s"] >= 0.3  # its own age, not the receive time
    finally:
        pub = Publisher(mosquitto.port)
        for t in ("edgewatch/gw-ret/stats", "edgewatch/gw-ret/status"):
            pub.send(t, b"", qos=1, retain=True)
        pub.close()


def test_every_prefix_at_once_names_each_gateway_by_its_site(mosquitto) -> None:
    pub = Publisher(mosquitto.port)
    topics = []
    for prefix, name in (("site-1", "gw-a"), ("site-2", "gw-a"), ("", "gw-c")):
        topic = f"{prefix + '/' if prefix else ''}edgewatch/{name}/status"
        doc = online_doc(name, "1.0", "m", "CPUExecutionProvider", "", ["a"], 16, 0.5, T0)
        pub.send(topic, to_json(doc), qos=1, retain=True)
        topics.append(topic)
    pub.close()
    try:
        r = CliRunner().invoke(main, ["fleet", "status", "--broker", mosquitto.url, "--json", "--wait", "0.5",
                                      "--topic-prefix", "+"])
        assert r.exit_code == 0, r.output
        names = {g["gateway"] for g in json.loads(r.output)["gateways"]}
        assert {"site-1/gw-a", "site-2/gw-a", "gw-c"} <= names
        r = CliRunner().invoke(main, ["fleet", "status", "--broker", mosquitto.url, "--json", "--wait", "0.5",
                                      "--topic-prefix", "+"], env={"EDGEWATCH_TOPICS_PREFIX": "site-1"})
        assert r.exit_code == 0, r.output  # a configured prefix does not narrow '+'
        assert {"site-1/gw-a", "site-2/gw-a", "gw-c"} <= {g["gateway"] for g in json.loads(r.output)["gateways"]}
        r = CliRunner().invoke(main, ["fleet", "status", "--broker", mosquitto.url, "--json", "--wait", "0.5",
                                      "--topic-prefix", "site-2"])
        assert r.exit_code == 0, r.output
        assert [g["gateway"] for g in json.loads(r.output)["gateways"]] == ["gw-a"]
    finally:
        pub = Publisher(mosquitto.port)
        for t in topics:
            pub.send(t, b"", qos=1, retain=True)
        pub.close()
