"""``edgewatch-train benchmark memory``: fit in a child per size, its own peak RSS, the smallest as baseline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from trainer.benchmark_memory import write_plant_csv
from trainer.cli import main


def test_the_plant_csv_is_written_in_chunks_with_a_header(tmp_path: Path) -> None:
    f = tmp_path / "p.csv"
    size = write_plant_csv(f, 250_123, 3)
    lines = f.read_text().splitlines()
    assert size == f.stat().st_size and lines[0] == "ch0,ch1,ch2" and len(lines) == 250_124
    x = np.loadtxt(f, delimiter=",", skiprows=1, max_rows=2000)
    assert x.shape == (2000, 3) and np.all(x.std(axis=0) > 0.1)  # the factors move every channel


@pytest.mark.slow
def test_each_size_is_fitted_in_a_child_and_compared_with_the_smallest(tmp_path: Path) -> None:
    report = tmp_path / "mem.json"
    r = CliRunner().invoke(main, ["benchmark", "memory", "--rows", "20000,6000", "--channels", "3", "--epochs", "2",
                                  "--report", str(report)])
    assert r.exit_code == 0, r.output
    rep = json.loads(report.read_text())
    small, big = rep["sizes"]
    assert [small["rows"], big["rows"]] == [6000, 20000]  # ascending: the smallest is the baseline
    assert small["rc"] == big["rc"] == 0 and small["peak_mb"] > 100  # the child's own peak (torch alone is more)
    assert big["peak_vs_smallest"] == pytest.approx(big["peak_mb"] / small["peak_mb"])
    assert "bytes per added row" in r.output and "(baseline)" in r.output


def test_bad_sizes_are_one_line_usage_errors() -> None:
    r = CliRunner().invoke(main, ["benchmark", "memory", "--rows", "10,x"])
    assert r.exit_code == 2 and "--rows" in r.output
    r = CliRunner().invoke(main, ["benchmark", "memory", "--rows", "500"])
    assert r.exit_code == 2 and "1000 rows or more" in r.output
