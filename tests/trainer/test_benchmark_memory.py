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


def _cgroups_or_skip() -> None:
    from trainer.benchmark_memory import CgroupError, MemoryCgroup

    try:
        with MemoryCgroup(512):
            pass
    except CgroupError as exc:
        pytest.skip(f"no memory cgroup here: {exc}")


@pytest.mark.slow
def test_under_a_memory_limit_a_fit_that_fits_passes_and_one_that_does_not_is_killed(tmp_path: Path) -> None:
    """The limit is the kernel's, in a real cgroup: 64 MB cannot hold the libraries (killed, said so), 1.5 GB can."""
    _cgroups_or_skip()
    report = tmp_path / "mem.json"
    small = ["benchmark", "memory", "--rows", "6000,8000", "--channels", "3", "--epochs", "1", "--report", str(report)]
    r = CliRunner().invoke(main, [*small, "--limit-mb", "64"])
    assert r.exit_code == 0, r.output
    rows = json.loads(report.read_text())["sizes"]
    assert all(s["killed"] and s["rc"] == -9 for s in rows)
    assert "fit exited -9: killed (SIGKILL): out of memory under the 64 MB limit" in r.output
    r = CliRunner().invoke(main, [*small, "--limit-mb", "1536"])
    assert r.exit_code == 0, r.output
    rows = json.loads(report.read_text())["sizes"]
    assert all(s["rc"] == 0 and not s["killed"] and 100 < s["cgroup_peak_mb"] <= 1536 for s in rows)
    assert all(s["peak_anon_mb"] is not None and s["peak_anon_mb"] <= s["peak_mb"] for s in rows)
    assert "under a 1536 MB limit (charged at most" in r.output
