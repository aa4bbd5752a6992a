"""Evidence with the daemon on a real Mosquitto: an alert's file holds the samples from the margin before it to
the margin after its clear, survives a restart, is read by `edgewatch evidence list|show|export` and comes back
over MQTT in chunks (`edgewatch evidence fetch`)."""

from __future__ import annotations

import builtins
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edge_runtime.service.evidence_store import EvidenceStore, decode
from edge_runtime.tools.evidence import evidence_command, fetch
from edge_runtime.tools.localbroker import MosquittoBroker
from tests.edge_runtime import schema_check
from tests.edge_runtime.mqtt_helpers import (
    Collector,
    daemon_config,
    running_daemon,
    stream_and_settle,
    wait_until,
)
from tests.edge_runtime.onnx_models import make_metadata, series, write_model

W, HOP, T0, MARGIN = 8, 4, 1_700_000_000.0, 20.0
pytestmark = pytest.mark.slow  # a daemon on a real broker (about 12 s with the CLI and PNG)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evidence")
    model = write_model(tmp / "m.onnx", make_metadata(window=W, hop=HOP, threshold=1.0))
    x = series(400, seed=3)
    x[150:200] *= 20.0  # an anomaly at samples 150..199
    folder = tmp / "evidence"
    with MosquittoBroker(workdir=tmp / "broker") as broker:
        return _scenario(broker, model, x, folder)


def _scenario(broker: MosquittoBroker, model: Path, x: np.ndarray, folder: Path) -> dict:
    over = {"evidence_dir": str(folder), "evidence_margin_s": MARGIN, "evidence_requests": True,
            "raise_after": 2, "clear_after": 2}
    with running_daemon(broker.url, model, **over) as d:
        col = Collector(broker.port, ["alerts/+", "edgewatch/test/evidence/reply/#"])
        stream_and_settle(d, broker.port, "sensors/p1/data", x, T0, 20)
        wait_until(lambda: d.stats.counts["evidence_written"] >= 2, 10, "evidence written at raise and complete")
        cfg = daemon_config(broker.url, model, **over)
        fetched = fetch(cfg, "test", "p1:1", timeout=10)
        with pytest.raises(LookupError, match="no evidence for alert 'p1:99'"):
            fetch(cfg, "test", "p1:99", timeout=10)
        stats = dict(d.stats.counts)
        col.close()
    replies = [doc for _, doc in col.docs("edgewatch/test/evidence/reply/")]
    return {"folder": folder, "x": x, "alerts": col.alerts(), "fetched": fetched, "stats": stats, "replies": replies}


def test_the_alerts_file_holds_the_samples_from_before_the_raise_to_after_the_clear(run) -> None:
    raised, cleared = [a for a in run["alerts"] if a["event"] in ("raise", "clear")]
    meta, arrays = EvidenceStore(run["folder"]).read(raised["alert_id"])  # read back by a new store: a restart
    assert meta["complete"] and meta["device"] == "p1" and meta["threshold"] == 1.0
    assert meta["cleared_end"] == cleared["window_end"] and meta["anomalous_since"] == raised["anomalous_since"]
    ts = arrays["ts"]
    assert ts[0] == pytest.approx(raised["anomalous_since"] - MARGIN, abs=1.0)
    assert ts[-1] == pytest.approx(cleared["window_end"] + MARGIN, abs=HOP)
    idx = (ts - T0).astype(int)
    np.testing.assert_allclose(arrays["values"], run["x"][idx], rtol=1e-6)  # the raw samples, each once
    assert np.all(np.diff(ts) == 1.0)
    assert arrays["win_error"].shape == (len(arrays["win_end"]), 4) and arrays["win_score"].max() > 1.0
    assert [e["event"] for e in meta["events"]] == [a["event"] for a in run["alerts"]]  # raise, updates, clear
    # what `evidence list` shows is what the file holds (the samples after the margin were counted too: off by a hop)
    assert (meta["samples"], meta["windows"]) == (len(ts), len(arrays["win_end"]))
    listed = EvidenceStore(run["folder"]).index[raised["alert_id"]].meta
    assert (listed["samples"], listed["windows"]) == (len(ts), len(arrays["win_end"]))


def test_the_evidence_comes_back_over_mqtt_in_chunks(run) -> None:
    schema = schema_check.load("evidence_reply.schema.json")
    replies = run["replies"]
    assert replies and all(schema_check.errors(doc, schema) == [] for doc in replies)
    assert {doc["status"] for doc in replies} == {"ok", "refused"}
    meta, arrays = decode(run["fetched"])
    assert meta["alert_id"] == "p1:1" and len(arrays["ts"]) > 0
    assert run["stats"]["evidence_requests_answered"] == 1 and run["stats"]["evidence_requests_refused"] == 1


def test_the_cli_lists_shows_and_exports(run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = str(run["folder"])
    r = CliRunner()
    res = r.invoke(evidence_command, ["list", "--dir", folder])
    assert res.exit_code == 0 and "p1:1" in res.output and "complete" in res.output, res.output
    res = r.invoke(evidence_command, ["show", "p1:1", "--dir", folder, "--png", str(tmp_path / "p.png")])
    assert res.exit_code == 0 and "anomalous since" in res.output and "raise" in res.output, res.output
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    res = r.invoke(evidence_command, ["export", "p1:1", "--dir", folder, "--out", str(tmp_path / "e.csv"),
                                      "--windows", str(tmp_path / "w.csv")])
    assert res.exit_code == 0, res.output
    rows = (tmp_path / "e.csv").read_text().splitlines()
    assert rows[0].startswith("timestamp,") and len(rows) - 1 == len(EvidenceStore(folder).read("p1:1")[1]["ts"])
    res = r.invoke(evidence_command, ["export", "p1:1", "--dir", folder, "--out", str(tmp_path / "e.npz")])
    assert res.exit_code == 0 and decode((tmp_path / "e.npz").read_bytes())[0]["alert_id"] == "p1:1"
    res = r.invoke(evidence_command, ["show", "nope:1", "--dir", folder])
    assert res.exit_code == 1 and res.output.strip().startswith("edgewatch evidence: error: no evidence for alert")

    real_import = builtins.__import__

    def no_matplotlib(name, *a, **kw):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    res = r.invoke(evidence_command, ["show", "p1:1", "--dir", folder, "--png", str(tmp_path / "q.png")])
    assert res.exit_code == 69 and "--png needs matplotlib" in res.output and "edgewatch[plot]" in res.output


@pytest.mark.parametrize("checks", [True, False])
def test_a_device_that_stops_after_its_clear_has_its_evidence_finished_when_it_goes_stale(
        tmp_path: Path, checks: bool) -> None:
    """The margin after the clear never comes from a device that stopped sending: once it is stale its episode
    is written complete (it stayed 'open: incomplete' until the device expired). With the sensor checks off
    (``health.sensor_checks = false``: no stale alert) after the same stale delay all the same: it stayed open."""
    from tests.edge_runtime.onnx_models import CHANNELS4, write_health_model

    model = write_health_model(tmp_path / "m.onnx", CHANNELS4)
    x = series(120, seed=4)
    x[40:70] *= 20.0  # raised at about 40, cleared at about 75, then the device stops at 120 (margin 60 s)
    folder = tmp_path / "evidence"
    broker = MosquittoBroker(workdir=tmp_path / "broker")
    with broker, running_daemon(broker.url, model, evidence_dir=str(folder), evidence_margin_s=60.0, raise_after=2,
                                clear_after=2, stale_after_s=1.5, sensor_checks=checks) as d:
        stream_and_settle(d, broker.port, "sensors/p2/data", x, T0, 10)
        wait_until(lambda: d.stats.counts["alerts_cleared"] >= 1, 10, "cleared")
        wait_until(lambda: d.stats.counts["evidence_written"] >= 2, 10, "finished once p2 went stale")
        meta, arrays = EvidenceStore(folder).read("p2:1")
    assert meta["complete"] and meta["cleared_end"] and arrays["ts"][-1] == T0 + 119  # everything it sent
