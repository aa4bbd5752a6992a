"""Light by construction: the daemon's code path never imports torch, onnx, onnxscript or trainer."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

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


HEAVY_ROOTS = {"torch", "onnx", "onnxscript", "onnx_ir", "trainer"}  # onnxruntime is the edge's runtime: allowed
HEAVY_PREFIXES = ("onnxruntime.quantization",)  # ...but its quantisation tools import onnx


def heavy_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) for every import of a heavy module in ``source``: ``import x``, ``from x import``
    and ``importlib.import_module("x")`` / ``__import__("x")`` with a string literal, at any depth."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            f = node.func
            fname = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if fname in {"import_module", "__import__"}:
                names = [node.args[0].value]
        found += [(node.lineno, n) for n in names
                  if n.split(".")[0] in HEAVY_ROOTS or n.startswith(HEAVY_PREFIXES)]
    return found


@pytest.mark.parametrize("source, expected", [
    ("import torch", ["torch"]),
    ("import numpy, onnx.helper as h", ["onnx.helper"]),
    ("def f():\n    from trainer.export import export_model", ["trainer.export"]),
    ("import importlib\ndef f():\n    return importlib.import_module('onnxscript')", ["onnxscript"]),
    ("from importlib import import_module\nimport_module('onnx_ir.serde')", ["onnx_ir.serde"]),
    ("x = __import__('torch')", ["torch"]),
    ("def f():\n    from onnxruntime.quantization import quantize_dynamic", ["onnxruntime.quantization"]),
    ("import onnxruntime as ort\nfrom edge_runtime import trainer_like\nimport torchvision_free", []),
    ("from . import trainer", []),  # relative: edge_runtime's own module, not the trainer package
])
def test_heavy_import_finder(source: str, expected: list[str]) -> None:
    assert [m for _, m in heavy_imports(source)] == expected


def test_no_edge_runtime_file_imports_heavy_modules() -> None:
    """Static: no .py file under edge_runtime/ imports torch, onnx, onnxscript, onnx_ir or trainer,
    however lazily (imports inside functions count)."""
    bad: list[str] = []
    for path in sorted((ROOT / "edge_runtime").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        bad += [f"{rel}:{line}: {mod}" for line, mod in heavy_imports(path.read_text(encoding="utf-8"))]
    assert not bad, "edge_runtime/ must stay light:\n" + "\n".join(bad)

