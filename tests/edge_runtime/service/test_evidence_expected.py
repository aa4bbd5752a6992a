"""The model's expected curve in an alert's evidence, with a real exported model on a real Mosquitto: the stored
curve is the model's reconstruction of the raise/update window (in the channels' units), `evidence export`
writes it, `evidence show --png` draws it, and a version 1 file (without curves) still loads, shows and plots."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from edge_runtime.contract import INPUT_NAME, OUTPUT_RECONSTRUCTION
from edge_runtime.pipeline.evidence import VERSION
from edge_runtime.service.evidence_store import ARRAYS, EvidenceStore, decode
from edge_runtime.tools.evidence import evidence_command, expected_samples
from edge_runtime.tools.localbroker import MosquittoBroker
from edge_runtime.tools.synthetic import Anomaly, inject, normal_series
from tests.edge_runtime.mqtt_helpers import Collector, running_daemon, stream_and_settle, wait_until
from tests.model_fixtures import N_CHANNELS, WINDOW

T0, MARGIN, MAX_EXPECTED = 1_700_000_000.0, 20.0, 3
pytestmark = pytest.mark.slow  # a model trained and a daemon on a real broker (about 10 s)


@pytest.fixture(scope="module")
def run(tmp_path_factory, demo_model_path: Path) -> dict:
    tmp = tmp_path_factory.mktemp("evidence-expected")
    x = normal_series(1200, N_CHANNELS, seed=7).astype(np.float32)
    x = inject(x, Anomaly("level_shift", 500, 800, (0, 2)), seed=7).astype(np.float32)
    folder = tmp / "evidence"
    over = {"evidence_dir": str(folder), "evidence_margin_s": MARGIN, "evidence_max_expected": MAX_EXPECTED,
            "raise_after": 2, "clear_after": 2, "update_interval_s": 1.0}
    with MosquittoBroker(workdir=tmp / "broker") as broker, running_daemon(broker.url, demo_model_path, **over) as d:
        col = Collector(broker.port, ["alerts/+"])
        stream_and_settle(d, broker.port, "sensors/p1/data", x, T0, 40)
        wait_until(lambda: d.stats.counts["evidence_written"] >= 2, 10, "evidence written at raise and complete")
        stats = dict(d.stats.counts)
        col.close()
    return {"folder": folder, "x": x, "alerts": col.alerts(), "stats": stats, "model": demo_model_path}


def _reconstruct(model: Path, windows: np.ndarray) -> np.ndarray:
    """The model's reconstruction (m, W, C) of ``windows``, straight from onnxruntime."""
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    (recon,) = sess.run([OUTPUT_RECONSTRUCTION], {INPUT_NAME: windows.astype(np.float32)})
    return np.asarray(recon)


def test_the_stored_expected_curve_is_the_models_reconstruction_of_the_raise_and_update_windows(run) -> None:
    assert run["stats"].get("windows_clipped", 0) == 0 and run["stats"].get("windows_masked", 0) == 0
    raised = [a for a in run["alerts"] if a["event"] in ("raise", "update")]
    assert raised[0]["event"] == "raise" and len(raised) > MAX_EXPECTED  # the bound is reached
    meta, arrays = EvidenceStore(run["folder"]).read(raised[0]["alert_id"])
    assert meta["version"] == VERSION and meta["complete"]
    exp = arrays["expected"]
    m = min(len(raised), MAX_EXPECTED)
    assert exp.shape == (m, WINDOW, N_CHANNELS) and meta["expected_windows"] == m
    assert meta["expected_dropped"] == len(raised) - m
    assert arrays["exp_end"].tolist() == [a["window_end"] for a in raised[:m]]  # the raise, then the updates
    assert arrays["exp_start"].tolist() == [a["window_start"] for a in raised[:m]]
    # the window each curve belongs to, from the stream sent (1 s apart from T0), reconstructed independently
    idx = np.rint(arrays["exp_start"] - T0).astype(int)
    windows = np.stack([run["x"][i : i + WINDOW] for i in idx])
    np.testing.assert_allclose(exp, _reconstruct(run["model"], windows), rtol=1e-5, atol=1e-5)
    # de-normalised as the alert's expected values are: the curve's window mean is the alert's `expected`
    for a, curve in zip(raised[:m], exp, strict=True):
        for tc in a["top_channels"]:
            j = meta["channels"].index(tc["name"])
            assert float(curve[:, j].mean()) == pytest.approx(tc["expected"], rel=1e-3, abs=1e-3)
    # the raw samples of those windows are in the evidence too (same times as the curve's samples)
    _, t, _ = expected_samples(arrays)
    assert np.isin(np.rint(t - T0), np.rint(arrays["ts"] - T0)).all()


def test_export_writes_the_expected_curve_as_csv_and_npz(run, tmp_path: Path) -> None:
    folder, alert_id = str(run["folder"]), run["alerts"][0]["alert_id"]
    meta, arrays = EvidenceStore(folder).read(alert_id)
    r = CliRunner()
    res = r.invoke(evidence_command, ["export", alert_id, "--dir", folder, "--out", str(tmp_path / "e.csv"),
                                      "--expected", str(tmp_path / "x.csv")])
    assert res.exit_code == 0 and "expected samples" in res.output, res.output
    rows = np.genfromtxt(tmp_path / "x.csv", delimiter=",", names=True)
    assert rows.dtype.names[:3] == ("window", "window_end", "timestamp")
    m = arrays["expected"].shape[0]
    assert len(rows) == m * WINDOW and set(rows["window"].astype(int)) == set(range(m))
    ch = meta["channels"][2]
    np.testing.assert_allclose(rows[f"expected_{ch}"], arrays["expected"][:, :, 2].reshape(-1), rtol=1e-6)
    np.testing.assert_allclose(rows["timestamp"][:WINDOW], np.linspace(*arrays["exp_start"][:1],
                                                                         *arrays["exp_end"][:1], WINDOW))
    res = r.invoke(evidence_command, ["export", alert_id, "--dir", folder, "--out", str(tmp_path / "e.npz")])
    assert res.exit_code == 0, res.output
    with np.load(tmp_path / "e.npz") as z:
        np.testing.assert_array_equal(z["expected"], arrays["expected"])
        np.testing.assert_array_equal(z["exp_end"], arrays["exp_end"])


def test_show_png_draws_the_expected_curve(run, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    folder, alert_id = str(run["folder"]), run["alerts"][0]["alert_id"]
    res = CliRunner().invoke(evidence_command, ["show", alert_id, "--dir", folder, "--png", str(tmp_path / "p.png")])
    assert res.exit_code == 0 and "with the model's expected curve" in res.output, res.output
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def _as_version_1(data: bytes) -> bytes:
    """An evidence file as version 1 wrote it: no expected arrays, no version in the meta."""
    with np.load(io.BytesIO(data)) as z:
        meta = json.loads(str(z["meta"][()]))
        arrays = {k: z[k] for k in ARRAYS}
    for key in ("version", "expected_windows", "expected_dropped"):
        meta.pop(key)
    buf = io.BytesIO()
    np.savez_compressed(buf, meta=np.array(json.dumps(meta)), **arrays)
    return buf.getvalue()


def test_a_version_1_file_still_loads_shows_plots_and_exports(run, tmp_path: Path) -> None:
    alert_id = run["alerts"][0]["alert_id"]
    old = tmp_path / "old"
    old.mkdir()
    data = _as_version_1(EvidenceStore(run["folder"]).read_bytes(alert_id))
    (old / f"{alert_id}.npz").write_bytes(data)
    store = EvidenceStore(old)
    assert list(store.index) == [alert_id]  # not taken for a corrupt file
    meta, arrays = store.read(alert_id)
    assert "version" not in meta and arrays["expected"].shape == (0, 0, N_CHANNELS) and len(arrays["ts"]) > 0
    assert decode(data)[1]["exp_start"].shape == (0,)
    r = CliRunner()
    args = ["--dir", str(old)]
    res = r.invoke(evidence_command, ["show", alert_id, *args])
    assert res.exit_code == 0 and "version 1" in res.output, res.output
    res = r.invoke(evidence_command, ["export", alert_id, *args, "--out", str(tmp_path / "e.csv"),
                                      "--expected", str(tmp_path / "x.csv")])
    assert res.exit_code == 0 and "0 expected samples" in res.output, res.output
    assert (tmp_path / "x.csv").read_text().splitlines()[0].startswith("window,window_end,timestamp,expected_")
    pytest.importorskip("matplotlib")
    res = r.invoke(evidence_command, ["show", alert_id, *args, "--png", str(tmp_path / "p.png")])
    assert res.exit_code == 0 and (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG", res.output
