"""The pin at start and on reload: a model with other channels is refused, counted and reported; the old one serves."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.config import build_config
from edge_runtime.service.daemon import Daemon
from edge_runtime.service.model import PinError
from tests.edge_runtime.mqtt_helpers import Collector, running_daemon, wait_until
from tests.edge_runtime.onnx_models import CHANNELS4, make_metadata, write_model

ROOT = Path(__file__).resolve().parents[3]
PUMP11 = [f"pump_{i}" for i in range(11)]


def test_start_with_a_model_that_breaks_the_pin_is_refused(tmp_path: Path) -> None:
    path = write_model(tmp_path / "demo.onnx", make_metadata(model_id="demo-4ch"))
    cfg = build_config(None, {"path": str(path), "channels": PUMP11, "provider": "cpu", "stats_interval_s": 0.0})
    with pytest.raises(PinError, match="channels differ from the pin"):
        Daemon(cfg)


def test_cli_start_refused_in_one_line_exit_65(tmp_path: Path) -> None:
    path = write_model(tmp_path / "demo.onnx", make_metadata(model_id="demo-4ch"))
    r = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "run", "--model", str(path), "--pin-window", "64",
                        "--broker", "mqtt://127.0.0.1:9"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin", "EDGEWATCH_CONFIG": "", "PYTHONPATH": str(ROOT)})
    assert r.returncode == 65, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "window W=16 differs from the pin (model.window = 64)" in lines[0], r.stderr


def test_reload_to_other_channels_refused_old_model_serves(mosquitto, tmp_path: Path, caplog) -> None:
    path = write_model(tmp_path / "pump.onnx", make_metadata(channels=PUMP11, model_id="pump-v1"))
    with running_daemon(mosquitto.url, path, channels=PUMP11, window=16) as d:
        col = Collector(mosquitto.port, ["edgewatch/test/status"])
        x = np.random.default_rng(0).standard_normal((2, 16, 11)).astype(np.float32)
        before, _ = d.model.run(x)
        # the case: the 4-channel demo model copied over the 11-channel pump model
        write_model(path, make_metadata(channels=CHANNELS4, model_id="demo-4ch"))
        assert d.reload("SIGHUP") is False
        assert d.model.model_id == "pump-v1"
        np.testing.assert_array_equal(d.model.run(x)[0], before)
        assert d.stats.counts["pin_refused"] == 1 and d.stats.counts["reloads_refused"] == 1
        wait_until(lambda: any("last_refused" in doc for _, doc in col.docs("edgewatch/test/status")), 10,
                   "status reporting the refusal")
        doc = [doc for _, doc in col.docs("edgewatch/test/status") if "last_refused" in doc][-1]
        assert doc["model_id"] == "pump-v1" and "channels differ from the pin" in doc["last_refused"]["reason"]
        write_model(path, make_metadata(channels=PUMP11, window=16, model_id="pump-v2"))
        assert d.reload("SIGHUP") is True and d.model.model_id == "pump-v2"
        col.close()
    refusals = [r.getMessage() for r in caplog.records if "refused, keeping pump-v1" in r.getMessage()]
    assert len(refusals) == 1 and "lacks 'pump_0'" in refusals[0]
    assert json.loads(json.dumps(d.stats_doc()))["pin_refused"] == 1
