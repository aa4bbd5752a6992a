"""Smoke tests: each benchmark runs for about a second on a tiny workload and its bookkeeping holds.

No wall-clock limits are asserted: only that every message and window is accounted for, that the
baselines ran and that the reports render. Real Mosquitto and real exported models throughout.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from lab.bench import benchmarks_md, command
from lab.bench.common import summary
from lab.bench.report import footprint_md, inference_md, ingest_md, latency_md, scaling_md


def _run(args: list[str], tmp_path: Path) -> dict:
    out = tmp_path / "r.json"
    res = CliRunner().invoke(command, [*args, "--json", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return json.loads(out.read_text())


def test_summary_reports_median_and_spread() -> None:
    s = summary([10.0, 12.0, 11.0])
    assert (s["median"], s["min"], s["max"], s["n"]) == (11.0, 10.0, 12.0, 3)
    assert s["spread_pct"] == pytest.approx(18.2, abs=0.1)


def test_bench_modules_import_no_torch_onnx_or_trainer() -> None:
    code = ("import sys, lab.bench, lab.bench.inference, lab.bench.cuda, "
            "lab.bench.ingest, lab.bench.scaling, lab.bench.procs, lab.bench.report; "
            "bad = [m for m in ('torch', 'onnx', 'onnxscript', 'trainer') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_inference_smoke_has_torch_baseline_and_ratios(demo_model_path: Path, tmp_path: Path) -> None:
    r = _run(["inference", "--model", str(demo_model_path), "--batches", "1,8", "--repeats", "1", "--seconds", "0.02"],
             tmp_path)
    assert set(r["batches"]) == {"1", "8"}
    for row in r["batches"].values():
        assert row["ort_fp32"]["median"] > 0 and row["torch_eager"]["median"] > 0
        assert row["ratio_ort_fp32_vs_torch"]["median"] > 0
    assert r["flops_per_window"] > 0 and r["cpu_peak_gflops"]["median"] > 0
    assert "ORT fp32 / eager" in inference_md(r)


def test_ingest_smoke_loses_nothing(demo_model_path: Path, tmp_path: Path) -> None:
    r = _run(["ingest", "--model", str(demo_model_path), "--devices", "4", "--single-samples", "60",
              "--batch-samples", "120", "--batch-size", "40", "--repeats", "1"], tmp_path)
    for fmt in ("single", "batch"):
        x = r[fmt]
        assert x["complete"], x
        assert x["windows_lost"] == 0 and x["broker_dropped"] == 0
        assert x["daemon_drops"] == [{}]
        assert x["runs"]["bare"][0]["received"] == x["messages"]
        assert x["runs"]["daemon"][0]["windows_scored"] == x["runs"]["daemon"][0]["expected_windows"] > 0
        off = x["runs"]["daemon_no_checks"][0]
        assert off["windows_scored"] == off["expected_windows"] > 0 and x["ratio_checks_on_vs_off"]["n"] == 1
    assert "daemon / bare" in ingest_md(r) and "Sensor-health checks (single)" in ingest_md(r)


def test_latency_smoke_matches_results_to_publishes(demo_model_path: Path, tmp_path: Path) -> None:
    r = _run(["latency", "--model", str(demo_model_path), "--rate", "400", "--devices", "4", "--seconds", "1",
              "--repeats", "1"], tmp_path)
    for load in ("load_50", "load_90"):
        run = r[load]["runs"][0]
        assert run["windows_scored"] == run["windows_expected"] > 0
        assert run["scores_received"] == run["windows_expected"]
        assert run["score_ms"]["p50"] is not None and run["score_ms"]["p50"] > 0
    assert "p99.9" in latency_md(r)


def test_footprint_smoke_starts_the_real_cli(demo_model_path: Path, tmp_path: Path) -> None:
    r = _run(["footprint", "--model", str(demo_model_path), "--minutes", "0", "--idle-s", "0.5", "--repeats", "1"],
             tmp_path)
    assert r["startup_to_online_s"]["median"] > 0
    assert r["rss_after_start_mb"]["median"] > 10
    assert r["idle_cpu_pct_of_core"]["median"] >= 0
    assert "start-up" in footprint_md(r)


def test_scaling_smoke_scores_every_window_and_plots(demo_model_path: Path, tmp_path: Path) -> None:
    png = tmp_path / "s.png"
    r = _run(["scaling", "--model", str(demo_model_path), "--devices", "1,3", "--windows", "16", "--channels", "2",
              "--min-messages", "100", "--repeats", "1", "--plot", str(png)], tmp_path)
    assert [p["devices"] for p in r["devices"]] == [1, 3]
    assert [p["window"] for p in r["window"]] == [16] and [p["channels"] for p in r["channels"]] == [2]
    assert all(p["windows_lost"] == 0 and p["windows"] > 0 for k in ("devices", "window", "channels") for p in r[k])
    assert png.stat().st_size > 1000
    assert "| devices | 3 |" in scaling_md(r, str(png))


def test_benchmarks_md_renders_every_section(demo_model_path: Path, tmp_path: Path) -> None:
    from lab.bench.common import machine_info

    m = str(demo_model_path)
    res = {
        "machine": machine_info(), "date": "today", "command": "edgewatch bench all", "seconds": 1.0,
        "inference": _run(["inference", "--model", m, "--batches", "1", "--repeats", "1", "--seconds", "0.02",
                           "--no-variants"], tmp_path),
        "ingest": _run(["ingest", "--model", m, "--devices", "2", "--single-samples", "40", "--batch-samples", "40",
                        "--batch-size", "20", "--repeats", "1"], tmp_path),
        "latency": _run(["latency", "--model", m, "--rate", "200", "--devices", "2", "--seconds", "0.5",
                         "--repeats", "1"], tmp_path),
        "footprint": _run(["footprint", "--model", m, "--minutes", "0", "--idle-s", "0.5", "--repeats", "1"], tmp_path),
        "scaling": _run(["scaling", "--model", m, "--devices", "2", "--windows", "16", "--channels", "1",
                         "--min-messages", "50", "--repeats", "1", "--plot", ""], tmp_path),
    }
    text = benchmarks_md(res, None)
    for title in ("## 1. Inference", "## 2. Ingest", "## 3. Latency", "## 4. Footprint", "## 5. Scaling"):
        assert title in text
    assert res["machine"]["cpu"] in text and "Goals:" in text


def test_missing_model_is_one_line_exit_66(tmp_path: Path) -> None:
    res = CliRunner().invoke(command, ["inference", "--model", str(tmp_path / "nope.onnx")])
    assert res.exit_code == 66  # EX_NOINPUT
    assert "not found" in res.output and "Traceback" not in res.output
