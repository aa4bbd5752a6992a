"""`edgewatch-lab bench report`: a results JSON written again as a report, without measuring."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from lab.bench import command

ROOT = Path(__file__).resolve().parents[2]
H200 = ROOT / "benchmarks" / "h200" / "results.json"


def test_report_of_a_cut_short_run_marks_missing_stages_and_keeps_notes(tmp_path: Path) -> None:
    res = json.loads(H200.read_text())
    res.pop("scaling", None)
    src = tmp_path / "r.json"
    src.write_text(json.dumps(res))
    out = tmp_path / "B.md"
    r = CliRunner().invoke(command, ["report", str(src), "--out", str(out)])
    assert r.exit_code == 0, r.output
    text = out.read_text()
    assert "## 1b. Inference on CUDA" in text and "CUDAExecutionProvider" in text
    assert "## 5. Scaling\n\nFailed in this run: not run (the run ended before this stage)" in text
    assert "Notes: Measured on a GPU machine" in text
    assert f"Written from its results file by `edgewatch-lab bench report {src}" in text
    lat = res["latency"]["load_50"]["score_ms_p99"]["median"]
    assert f"{lat:,.1f}" in text  # the numbers are the file's, rendered, not re-measured


def test_committed_gpu_report_is_current() -> None:
    """benchmarks/h200/BENCHMARKS.md is what `bench report` writes from the committed results file."""
    committed = (ROOT / "benchmarks" / "h200" / "BENCHMARKS.md").read_text()
    r = CliRunner().invoke(command, ["report", str(H200), "--out", "/dev/null"])
    assert r.exit_code == 0, r.output
    by = re.compile(r" Written from its results file by `[^`]*`\.")
    assert "by `edgewatch-lab bench report benchmarks/h200/results.json --out benchmarks/h200/BENCHMARKS.md`" in committed
    assert by.sub("", r.output).strip() == by.sub("", committed).strip()


def test_report_of_something_else_is_one_line_exit_65(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    r = CliRunner().invoke(command, ["report", str(bad), "--out", str(tmp_path / "o.md")])
    assert r.exit_code == 65  # EX_DATAERR
    assert "is not a results file of `edgewatch-lab bench all --json`" in r.output
    assert not (tmp_path / "o.md").exists()
