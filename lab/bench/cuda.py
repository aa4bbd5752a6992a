"""CUDA inference benchmark: windows/s of the model on onnxruntime's CUDA provider against the CPU session.

Every engine runs the same random raw windows ``(B, W, C)`` float32 at each batch size, interleaved
repeat by repeat (as in :mod:`lab.bench.inference`):

- ``cpu_fp32_1t``: the daemon's CPU session, one thread;
- ``cpu_fp32_all``: the same on every core (``--cpu-threads``, default ``os.cpu_count()``);
- ``cuda_run``: the daemon's CUDA path, ``session.run`` with numpy in and out (both host/device copies);
- ``cuda_iobinding``: I/O binding with host data each call: the new batch copied into a device input
  made once (``OrtValue.update_inplace``), both outputs bound to the device and copied back;
- ``cuda_resident``: input already on the device, outputs left there: the kernels alone, an upper bound.

Before timing, each batch size checks that the three CUDA engines score like the 1-thread CPU session.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edge_runtime.contract import INPUT_NAME, OUTPUT_CHANNEL_ERROR, OUTPUT_SCORE
from edge_runtime.service.model import CUDA, ModelError, load_model
from lab.bench.common import summary, window_maker
from lab.bench.inference import Runner, interleaved_rates

BATCHES = (1, 8, 64, 256, 1024, 4096)
OUTPUTS = (OUTPUT_SCORE, OUTPUT_CHANNEL_ERROR)
CUDA_ENGINES = ("cuda_run", "cuda_iobinding", "cuda_resident")
RATIOS = (("cuda_run", "cpu_fp32_1t"), ("cuda_iobinding", "cpu_fp32_1t"), ("cuda_run", "cpu_fp32_all"))
CROSSOVERS = tuple((e, b) for e in ("cuda_run", "cuda_iobinding") for b in ("cpu_fp32_1t", "cpu_fp32_all"))
ATOL = RTOL = 1e-3  # CUDA vs CPU scores: |cuda - cpu| <= ATOL + RTOL * |cpu| (the CUDA provider may use TF32)


def gpu_info() -> dict[str, str | None]:
    """``{"name", "driver"}`` of the first GPU from ``nvidia-smi``; None where it is absent or fails."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        name, driver = (v.strip() for v in out.strip().splitlines()[0].rsplit(",", 1))
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        return {"name": None, "driver": None}
    return {"name": name, "driver": driver}


def device_binding(sess: ort.InferenceSession, x: np.ndarray) -> tuple[ort.IOBinding, ort.OrtValue]:
    """An I/O binding of ``sess`` with ``x`` copied to CUDA device 0 as the input and both outputs on the device.

    ORT allocates the outputs on the device at each run (their batch dimension is dynamic); the binding
    holds the device input, so it lives as long as the binding.
    """
    x_dev = ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
    binding = sess.io_binding()
    binding.bind_ortvalue_input(INPUT_NAME, x_dev)
    for name in OUTPUTS:
        binding.bind_output(name, "cuda", 0)
    return binding, x_dev


def iobinding_runner(sess: ort.InferenceSession, x: np.ndarray) -> Runner:
    """``run(batch)`` -> [score, channel_error] on the host: host -> device copy, run, device -> host copy.

    The device input is made once for ``x``'s shape; each call copies the new host batch into it.
    """
    binding, x_dev = device_binding(sess, x)

    def run(batch: np.ndarray) -> list[np.ndarray]:
        x_dev.update_inplace(batch)
        binding.synchronize_inputs()  # the copy is complete before the kernels read it
        sess.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()

    return run


def resident_runner(sess: ort.InferenceSession, x: np.ndarray) -> tuple[Runner, Callable[[], list[np.ndarray]]]:
    """``run(_)`` on ``x`` already on the device, outputs left there; and ``fetch()`` of the last outputs."""
    binding, _ = device_binding(sess, x)
    sync = getattr(binding, "synchronize_outputs", None)

    def run(_batch: np.ndarray) -> None:
        sess.run_with_iobinding(binding)
        if sync is not None:
            sync()  # the timing includes the kernels, not only their launch

    return run, binding.copy_outputs_to_cpu


def crossover_batch(rows: dict[str, dict[str, Any]], engine: str, baseline: str) -> int | None:
    """Smallest batch from which ``engine``'s median beats ``baseline``'s at every larger measured batch, or None.

    ``rows``: ``{batch: {engine: summary, ...}}`` (batch as str or int); batches lacking either are skipped.
    """
    pairs = sorted((int(b), row[engine]["median"], row[baseline]["median"]) for b, row in rows.items()
                   if (row.get(engine) or {}).get("median") is not None
                   and (row.get(baseline) or {}).get("median") is not None)
    best = None
    for b, e, base in reversed(pairs):
        if e <= base:
            break
        best = b
    return best


def _check_scores(name: str, b: int, got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want|; a RuntimeError where the CUDA engine does not score like the CPU session."""
    diff = np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))
    bad = diff > ATOL + RTOL * np.abs(want)
    if got.shape != want.shape or bad.any():
        i = int(np.argmax(diff)) if got.shape == want.shape else 0
        raise RuntimeError(f"{name} at batch {b} does not score like the CPU session: shape {got.shape} vs "
                           f"{want.shape}, max |diff| {float(diff.max()) if diff.size else 'n/a'} at window {i} "
                           f"(tolerance {ATOL} + {RTOL} x |score|)")
    return float(diff.max()) if diff.size else 0.0


def bench_cuda(
    model_path: str | Path,
    batches: Sequence[int] = BATCHES,
    repeats: int = 5,
    seconds: float = 0.4,
    cpu_threads: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Windows/s per engine and batch size (median of ``repeats`` of ``seconds`` each), ratios, crossovers.

    Raises :class:`ModelError` where the model does not get the CUDA provider.
    """
    path = Path(model_path)
    model = load_model(path, "cuda", 1)
    if model.provider != CUDA:  # load_model(.., "cuda") already refuses a fallback; never time CPU as CUDA
        raise ModelError(f"CUDA requested but the session runs on {model.provider}")
    sess = model.session
    threads = cpu_threads or os.cpu_count() or 1
    cpu_1t = load_model(path, "cpu", 1)
    cpu_all = load_model(path, "cpu", threads)
    meta = model.metadata
    windows = window_maker(meta, seed)

    results: dict[str, dict[str, Any]] = {}
    diffs: dict[str, dict[str, float]] = {}
    for b in batches:
        x = windows(b)
        io_run = iobinding_runner(sess, x)
        res_run, res_fetch = resident_runner(sess, x)
        want = cpu_1t.run(x)[0]
        res_run(x)
        diffs[str(b)] = {name: _check_scores(name, b, got, want) for name, got in (
            ("cuda_run", model.run(x)[0]), ("cuda_iobinding", io_run(x)[0]), ("cuda_resident", res_fetch()[0]))}
        engines: dict[str, Runner] = {"cpu_fp32_1t": cpu_1t.run, "cpu_fp32_all": cpu_all.run, "cuda_run": model.run,
                                      "cuda_iobinding": io_run, "cuda_resident": res_run}
        rates = interleaved_rates(engines, x, repeats, seconds)
        row: dict[str, Any] = {e: summary(v) for e, v in rates.items()}
        for e, base in RATIOS:
            row[f"ratio_{e}_vs_{base}"] = summary(np.asarray(rates[e]) / np.asarray(rates[base]), 2)
        results[str(b)] = row
    return {
        "model": str(path), "model_id": model.model_id, "window": meta.window, "channels": meta.n_channels,
        "device": gpu_info(), "onnxruntime": ort.__version__, "provider": model.provider,
        "cpu_threads": threads, "repeats": repeats, "seconds_per_repeat": seconds,
        "engines": {
            "cpu_fp32_1t": "the daemon's CPU session, 1 thread",
            "cpu_fp32_all": f"the CPU session on {threads} threads",
            "cuda_run": "the daemon's CUDA path: session.run, numpy in and out (host/device copies included)",
            "cuda_iobinding": "I/O binding, host data each call: update_inplace into a device input, outputs "
                              "bound to the device and copied back",
            "cuda_resident": "input already on the device, outputs left there: kernels only (upper bound)",
        },
        "batches": results, "max_score_diff": diffs,
        "crossover": {f"{e}_vs_{base}": crossover_batch(results, e, base) for e, base in CROSSOVERS},
    }
