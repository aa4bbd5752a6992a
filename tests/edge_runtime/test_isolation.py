"""Light by construction: the daemon's code path never imports torch, onnx, onnxscript or trainer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.edge_runtime.onnx_models import write_model

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import sys
from click.testing import CliRunner
import edge_runtime.cli as cli
from edge_runtime.config import build_config
from edge_runtime.daemon import Daemon
from edge_runtime.model import benchmark, load_model
import edge_runtime.watch

cfg = build_config(None, {"path": sys.argv[1], "broker": "mqtt://127.0.0.1:9", "instance": "iso"})
d = Daemon(cfg)
d.ingest.handle("sensors/x/data", b'{"ts": 1, "values": [1, 2, 3, 4]}')
benchmark(d.model, batch=4, repeats=1)
assert CliRunner().invoke(cli.main, ["run", "--help"]).exit_code == 0
assert CliRunner().invoke(cli.main, ["check-model", sys.argv[1]]).exit_code == 0
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "onnx", "onnxscript", "trainer", "onnx_ir"})
print("HEAVY", heavy)
"""


def test_daemon_path_imports_no_heavy_modules(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.onnx")
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(model)], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "HEAVY []" in out.stdout, out.stdout[-2000:]
