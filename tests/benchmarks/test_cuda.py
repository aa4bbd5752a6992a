"""``edgewatch-lab bench cuda``: crossover logic and rendering on synthetic results, the clear refusal on a
machine without CUDA, and (only where a CUDA session really runs) the real benchmark on tiny sizes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from edge_runtime.service.model import CUDA
from lab.bench import benchmarks_md, command, cuda_session_available
from lab.bench import cuda as bench_cuda_mod
from lab.bench.common import machine_info, summary
from lab.bench.cuda import CROSSOVERS, bench_cuda, crossover_batch
from lab.bench.report import cuda_md, cuda_report_md
from tests.edge_runtime.test_isolation import HEAVY_ROOTS, heavy_imports

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "models" / "demo.onnx"
HAS_CUDA = DEMO.is_file() and cuda_session_available(str(DEMO))


def test_cuda_module_imports_no_heavy_modules() -> None:
    assert heavy_imports((ROOT / "lab" / "bench" / "cuda.py").read_text(encoding="utf-8"), HEAVY_ROOTS - {"lab"}) == []


def _rows(medians: dict[str, list[float]], batches: list[int]) -> dict[str, dict[str, Any]]:
    return {str(b): {e: summary([m[i]]) for e, m in medians.items()} for i, b in enumerate(batches)}


@pytest.mark.parametrize(("gpu", "cpu", "want"), [
    ([1, 5, 50, 500], [10, 10, 10, 10], 64),  # ahead from 64 on
    ([20, 30, 40, 50], [10, 10, 10, 10], 1),  # ahead everywhere
    ([1, 2, 3, 4], [10, 10, 10, 10], None),  # never ahead
    ([1, 20, 5, 50], [10, 10, 10, 10], 256),  # ahead at 8, behind at 64 again: only the last stretch counts
    ([1, 20, 30, 9], [10, 10, 10, 10], None),  # behind at the largest batch: no crossover
    ([1, 10, 30, 40], [10, 10, 10, 10], 64),  # a tie is not ahead
])
def test_crossover_batch(gpu: list[float], cpu: list[float], want: int | None) -> None:
    rows = _rows({"cuda_run": gpu, "cpu_fp32_1t": cpu}, [1, 8, 64, 256])
    assert crossover_batch(rows, "cuda_run", "cpu_fp32_1t") == want


def test_crossover_batch_sorts_batches_numerically_and_skips_missing() -> None:
    rows = _rows({"cuda_run": [500, 1, 5], "cpu_fp32_1t": [10, 10, 10]}, [1024, 1, 64])
    assert crossover_batch(rows, "cuda_run", "cpu_fp32_1t") == 1024
    rows["4096"] = {"cpu_fp32_1t": summary([10.0])}  # the CUDA engine missing at a batch: that batch is skipped
    assert crossover_batch(rows, "cuda_run", "cpu_fp32_1t") == 1024
    assert crossover_batch({}, "cuda_run", "cpu_fp32_1t") is None


def _result() -> dict[str, Any]:
    batches = [1, 64, 4096]
    med = {"cpu_fp32_1t": [20_000, 60_000, 70_000], "cpu_fp32_all": [15_000, 200_000, 400_000],
           "cuda_run": [3_000, 150_000, 2_000_000], "cuda_iobinding": [4_000, 180_000, 2_500_000],
           "cuda_resident": [9_000, 500_000, 9_000_000]}
    rows = _rows(med, batches)
    for i, b in enumerate(batches):
        for e, base in (("cuda_run", "cpu_fp32_1t"), ("cuda_iobinding", "cpu_fp32_1t"), ("cuda_run", "cpu_fp32_all")):
            rows[str(b)][f"ratio_{e}_vs_{base}"] = summary([med[e][i] / med[base][i]], 2)
    return {
        "model": "models/demo.onnx", "model_id": "demo", "window": 64, "channels": 4,
        "device": {"name": "NVIDIA H100 80GB HBM3", "driver": "580.159.04"}, "onnxruntime": "1.31.1",
        "provider": "CUDAExecutionProvider", "cpu_threads": 16, "repeats": 1, "seconds_per_repeat": 0.4,
        "engines": {e: f"about {e}" for e in med}, "batches": rows,
        "max_score_diff": {str(b): {"cuda_run": 2e-6, "cuda_iobinding": 2e-6, "cuda_resident": 3e-6} for b in batches},
        "crossover": {f"{e}_vs_{base}": crossover_batch(rows, e, base) for e, base in CROSSOVERS},
        "machine": machine_info(), "date": "today", "command": "edgewatch-lab bench cuda --out benchmarks/CUDA.md",
    }


def test_cuda_md_renders_table_crossovers_and_device() -> None:
    r = _result()
    assert r["crossover"] == {"cuda_run_vs_cpu_fp32_1t": 64, "cuda_run_vs_cpu_fp32_all": 4096,
                              "cuda_iobinding_vs_cpu_fp32_1t": 64, "cuda_iobinding_vs_cpu_fp32_all": 4096}
    md = cuda_md(r)
    assert ("| batch | cpu_fp32_1t | cpu_fp32_all | cuda_run | cuda_iobinding | cuda_resident | CUDA run / CPU 1 thread "
            "| CUDA iobinding / CPU 1 thread | CUDA run / CPU 16 threads |") in md
    assert "| 4096 | 70,000 (±0%, n=1) |" in md and "28.57x" in md
    assert "CUDA (session.run, the daemon's path) beats the 1-thread CPU session from batch 64." in md
    assert "beats the 16-thread CPU session from batch 4096." in md
    assert "NVIDIA H100 80GB HBM3, driver 580.159.04; onnxruntime 1.31.1" in md
    r["crossover"]["cuda_run_vs_cpu_fp32_all"] = None
    assert "does not stay ahead of the 16-thread CPU session from any measured batch (up to 4096)." in cuda_md(r)
    r["device"] = {"name": None, "driver": None}
    assert "GPU ?, driver ?" in cuda_md(r)


def test_cuda_report_md_is_standalone() -> None:
    text = cuda_report_md(_result())
    assert text.startswith("# edgewatch on CUDA\n")
    assert "Generated by `edgewatch-lab bench cuda --out benchmarks/CUDA.md` on today." in text
    assert machine_info()["cpu"] in text and "| batch |" in text


def test_benchmarks_md_cuda_line_and_section() -> None:
    failed = {"error": "RuntimeError: skipped in this test"}
    res: dict[str, Any] = {"machine": machine_info(), "date": "today", "command": "edgewatch-lab bench all",
                           "seconds": 1.0, **{k: failed for k in ("inference", "ingest", "latency", "footprint",
                                                                  "scaling")}}
    assert "CUDA: not measured here (no GPU on this machine)" in benchmarks_md(res, None)
    res["cuda_report"] = "benchmarks/CUDA.md"
    text = benchmarks_md(res, None)
    assert ("CUDA: not measured in this run (no CUDA device here); see [benchmarks/CUDA.md](benchmarks/CUDA.md) where "
            "it was measured on a GPU machine with `edgewatch-lab bench cuda --out benchmarks/CUDA.md --json "
            "benchmarks/cuda.json`.") in text
    assert "## 1b." not in text
    res["cuda"] = _result()
    text = benchmarks_md(res, None)
    assert "## 1b. Inference on CUDA" in text and "CUDA iobinding / CPU 1 thread" in text
    assert text.index("## 1. Inference") < text.index("## 1b. Inference on CUDA") < text.index("## 2. Ingest")


@pytest.mark.skipif(not DEMO.is_file(), reason="models/demo.onnx is not in this checkout")
def test_bench_cuda_bookkeeping_on_cpu_stand_ins(monkeypatch) -> None:
    """The whole bench_cuda on this machine with "cuda" swapped for the CPU device: the I/O binding calls,
    the score check, rows, ratios and crossovers (not the CUDA provider itself)."""
    real_load, real_from_numpy, real_bind_output = (bench_cuda_mod.load_model, ort.OrtValue.ortvalue_from_numpy,
                                                    ort.IOBinding.bind_output)
    devices: list[str] = []

    def load(path, provider="auto", threads=1):
        m = real_load(path, "cpu", threads)
        m.provider = CUDA if provider == "cuda" else m.provider
        return m

    def from_numpy(x, device_type="cpu", device_id=0):
        devices.append(device_type)
        return real_from_numpy(np.array(x), "cpu", device_id)

    def bind_output(self, name, device_type="cpu", device_id=0):
        devices.append(device_type)
        return real_bind_output(self, name, "cpu", device_id)

    monkeypatch.setattr(bench_cuda_mod, "load_model", load)
    monkeypatch.setattr(ort.OrtValue, "ortvalue_from_numpy", staticmethod(from_numpy))
    monkeypatch.setattr(ort.IOBinding, "bind_output", bind_output)
    r = bench_cuda(DEMO, (1, 8), repeats=2, seconds=0.01, cpu_threads=1)
    assert set(devices) == {"cuda"}
    assert list(r["batches"]) == ["1", "8"] and r["cpu_threads"] == 1
    for b, row in r["batches"].items():
        assert all(row[e]["median"] > 0 and row[e]["n"] == 2 for e in r["engines"]), b
        assert row["ratio_cuda_iobinding_vs_cpu_fp32_1t"]["median"] > 0
        assert r["max_score_diff"][b] == {"cuda_run": 0.0, "cuda_iobinding": 0.0, "cuda_resident": 0.0}
    assert set(r["crossover"]) == {f"{e}_vs_{base}" for e, base in CROSSOVERS}
    assert "| 8 |" in cuda_md(r)


@pytest.mark.skipif(not DEMO.is_file(), reason="models/demo.onnx is not in this checkout")
@pytest.mark.skipif(HAS_CUDA, reason="a CUDA session runs here: the refusal cannot be shown")
def test_bench_cuda_without_cuda_is_one_line_exit_65() -> None:
    res = CliRunner().invoke(command, ["cuda", "--model", str(DEMO)])
    assert res.exit_code == 65, res.output  # as `edgewatch run --provider cuda`: the model cannot run as asked
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgewatch-lab bench: error: CUDA requested"), res.output
    assert "Traceback" not in res.output


@pytest.mark.skipif(not HAS_CUDA, reason="needs a session that really gets CUDAExecutionProvider "
                                         "(onnxruntime-gpu with its CUDA/cuDNN libraries and a GPU)")
def test_bench_cuda_runs_for_real(tmp_path: Path) -> None:
    out, js = tmp_path / "CUDA.md", tmp_path / "cuda.json"
    res = CliRunner().invoke(command, ["cuda", "--model", str(DEMO), "--batches", "1,8", "--repeats", "1",
                                       "--seconds", "0.01", "--json", str(js), "--out", str(out)],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    r = json.loads(js.read_text())
    assert r["provider"] == "CUDAExecutionProvider" and set(r["batches"]) == {"1", "8"}
    for b, row in r["batches"].items():
        for e in ("cpu_fp32_1t", "cpu_fp32_all", "cuda_run", "cuda_iobinding", "cuda_resident"):
            assert row[e]["median"] > 0, (b, e)
        assert row["ratio_cuda_run_vs_cpu_fp32_1t"]["median"] > 0
        assert set(r["max_score_diff"][b]) == {"cuda_run", "cuda_iobinding", "cuda_resident"}
        assert all(0 <= d < 1 for d in r["max_score_diff"][b].values())
    assert set(r["crossover"]) == {f"{e}_vs_{base}" for e, base in CROSSOVERS}
    assert out.read_text().startswith("# edgewatch on CUDA") and "| batch |" in res.output
