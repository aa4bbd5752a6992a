"""Light by construction: the daemon's code path never imports torch, onnx, onnxscript, trainer or lab,
nor runs them in a child process (``python -m trainer...``, ``-c "import trainer"``)."""

from __future__ import annotations

import ast
import re
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
from edge_runtime.service.daemon import Daemon
from edge_runtime.service.model import benchmark, load_model
import edge_runtime.tools.watch

cfg = build_config(None, {"path": sys.argv[1], "broker": "mqtt://127.0.0.1:9", "instance": "iso"})
d = Daemon(cfg)
d.ingest.handle("sensors/x/data", b'{"ts": 1, "values": [1, 2, 3, 4]}')
benchmark(d.model, batch=4, repeats=1)
assert CliRunner().invoke(cli.main, ["run", "--help"]).exit_code == 0
assert CliRunner().invoke(cli.main, ["check-model", sys.argv[1]]).exit_code == 0
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "onnx", "onnxscript", "trainer", "onnx_ir", "nats"})
print("HEAVY", heavy)
"""


def test_daemon_path_imports_no_heavy_modules(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.onnx")
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(model)], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "HEAVY []" in out.stdout, out.stdout[-2000:]


HEAVY_ROOTS = {"torch", "onnx", "onnxscript", "onnx_ir", "trainer", "lab"}  # onnxruntime is the edge's runtime: allowed
CHILD_ROOTS = {"trainer", "lab", "torch", "onnx", "onnxscript"}  # never run by the edge in a child process either
_CHILD_TEXT = re.compile(r"-m\s+({})\b|^\s*(import|from)\s+({})\b".format("|".join(CHILD_ROOTS), "|".join(CHILD_ROOTS)), re.M)
HEAVY_PREFIXES = ("onnxruntime.quantization",)  # ...but its quantisation tools import onnx


def heavy_imports(source: str, roots: frozenset[str] | set[str] = HEAVY_ROOTS) -> list[tuple[int, str]]:
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
                  if n.split(".")[0] in roots or n.startswith(HEAVY_PREFIXES)]
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
    ("def f():\n    from lab.bench import command", ["lab.bench"]),
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



def child_process_refs(source: str) -> list[tuple[int, str]]:
    """(line, text) for every way ``source`` could run a heavy package in a child process: an argument list
    with ``"-m", "trainer..."`` (or lab, torch, onnx), and any string but a docstring that says
    ``-m trainer...`` or holds ``import trainer`` / ``from lab ...`` code for ``python -c``."""
    tree = ast.parse(source)
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.body
                  and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.List, ast.Tuple)):
            vals = [e.value if isinstance(e, ast.Constant) and isinstance(e.value, str) else None for e in node.elts]
            found += [(node.lineno, f"-m {b}") for a, b in zip(vals, vals[1:], strict=False)
                      if a == "-m" and b is not None and b.split(".")[0] in CHILD_ROOTS]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            found += [(node.lineno, m.group(0).strip()) for m in _CHILD_TEXT.finditer(node.value)]
    return found


@pytest.mark.parametrize("source, expected", [
    ('subprocess.run([sys.executable, "-m", "trainer.bench_support", "eager"])', ["-m trainer.bench_support"]),
    ('cmd = (python, "-m", "lab.bench.procs")', ["-m lab.bench.procs"]),
    ('os.system("python3 -m trainer.cli fit")', ["-m trainer"]),
    ('code = "import json\\nfrom trainer.demo import run"\nsubprocess.run([sys.executable, "-c", code])',
     ["from trainer"]),
    ('subprocess.run([sys.executable, "-m", "edge_runtime.cli", "run"])', []),
    ('def f():\n    """Never runs ``python -m trainer``; from trainer only the file."""', []),
    ('x = "the model from trainer"', []),  # prose, not code
])
def test_child_process_ref_finder(source: str, expected: list[str]) -> None:
    assert [t for _, t in child_process_refs(source)] == expected


def test_no_edge_runtime_file_runs_trainer_or_lab_in_a_child_process() -> None:
    """Static: the edge never starts ``python -m trainer...`` / ``lab...`` (a reverse dependency an import
    check cannot see; the benchmark once did)."""
    bad: list[str] = []
    for path in sorted((ROOT / "edge_runtime").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        bad += [f"{rel}:{line}: {text}" for line, text in child_process_refs(path.read_text(encoding="utf-8"))]
    assert not bad, "edge_runtime/ must not run the trainer or the lab:\n" + "\n".join(bad)


def test_the_finder_sees_what_the_lab_does() -> None:
    """The check is not vacuous: the lab (which may) does run the trainer's tools in a child process."""
    refs = [t for p in sorted((ROOT / "lab").rglob("*.py")) for _, t in child_process_refs(p.read_text(encoding="utf-8"))]
    assert "-m lab.bench_support" in refs
