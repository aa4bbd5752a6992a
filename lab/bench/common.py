"""Shared benchmark helpers: repeat statistics, machine facts, the CPU's measured matmul peak. Edge-safe.

Nothing here imports torch, onnx or the trainer.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata as importlib_metadata
from typing import Any

import numpy as np


def summary(values: list[float] | np.ndarray, digits: int = 1) -> dict[str, Any]:
    """Median of repeats with its spread: ``{"median", "min", "max", "spread_pct", "n"}``.

    ``spread_pct`` is (max - min) / median in percent, the honest range of the repeats.
    """
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return {"median": None, "min": None, "max": None, "spread_pct": None, "n": 0}
    med = float(np.median(a))
    spread = float((a.max() - a.min()) / med * 100.0) if med else 0.0
    return {"median": round(med, digits), "min": round(float(a.min()), digits), "max": round(float(a.max()), digits),
            "spread_pct": round(spread, 1), "n": int(a.size)}


def window_maker(meta: Any, seed: int = 0) -> Callable[[int], np.ndarray]:
    """``windows(b)``: ``b`` random raw windows ``(b, W, C)`` float32 around the model's training mean/std."""
    rng = np.random.default_rng(seed)
    mean = np.asarray(meta.normalisation.mean, np.float32)
    std = np.asarray(meta.normalisation.std, np.float32)

    def windows(b: int) -> np.ndarray:
        return (mean + std * rng.standard_normal((b, meta.window, meta.n_channels))).astype(np.float32)

    return windows


def fmt(s: dict[str, Any] | None, unit: str = "", scale: float = 1.0, digits: int = 0) -> str:
    """``median unit (±spread%, n=5)`` for a :func:`summary` dict."""
    if not s or s.get("median") is None:
        return "n/a"
    return f"{s['median'] * scale:,.{digits}f}{unit} (±{s['spread_pct'] / 2:.0f}%, n={s['n']})"


def percentiles(values: np.ndarray, qs: tuple[float, ...] = (50, 99, 99.9)) -> dict[str, float | None]:
    """``{"p50": ..., "p99": ..., "p99.9": ...}`` of ``values`` (n,); None when empty."""
    a = np.asarray(values, dtype=np.float64)
    return {f"p{q:g}": (round(float(np.percentile(a, q)), 3) if a.size else None) for q in qs}


def _version(dist: str) -> str | None:
    try:
        return importlib_metadata.version(dist)
    except importlib_metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """CPU model, core count, OS, Python and the versions of the packages that matter here."""
    vers = {d: _version(d) for d in ("edgewatch", "numpy", "onnxruntime", "onnxruntime-gpu", "paho-mqtt", "torch")}
    try:
        mosq = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True, timeout=5).stdout.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        mosq = None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": {k: v for k, v in vers.items() if v},
        "mosquitto": mosq,
    }


_PEAK_CODE = """
import json, sys, time
import numpy as np
n = int(sys.argv[1]); secs = float(sys.argv[2])
a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
b = np.random.default_rng(1).standard_normal((n, n)).astype(np.float32)
a @ b
out = []
for _ in range(5):
    k, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < secs / 5:
        a @ b
        k += 1
    out.append(2.0 * n ** 3 * k / (time.perf_counter() - t0) / 1e9)
print(json.dumps(out))
"""


def matmul_peak_gflops(threads: int = 1, n: int = 512, seconds: float = 2.0) -> dict[str, Any]:
    """The CPU's measured float32 peak: a numpy (BLAS) ``n x n`` matmul on ``threads`` threads, in GFLOP/s.

    Runs in a child interpreter so the BLAS thread count can be pinned before numpy loads.
    """
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
        env[var] = str(threads)
    res = subprocess.run([sys.executable, "-c", _PEAK_CODE, str(n), str(seconds)], capture_output=True,
                         text=True, env=env, timeout=120, check=True)
    return {**summary(json.loads(res.stdout.strip().splitlines()[-1]), 2), "threads": threads, "matrix": n}


def trainer_tool(*args: object, timeout: float = 900.0) -> dict[str, Any]:
    """Run ``python -m lab.bench_support ARGS`` in a child process and return its JSON answer.

    The parts of a benchmark that need torch, onnx or the trainer (the PyTorch baseline, fp16 and
    plain-layout variants, untrained models) run there, so this process never imports them.
    Returns ``{"ok": False, "why": ...}`` where the trainer is not installed or the child fails.
    """
    cmd = [sys.executable, "-m", "lab.bench_support", *map(str, args)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"ok": False, "why": f"trainer tool failed: {type(exc).__name__}"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        err = proc.stderr.strip().splitlines()
        if any("No module named 'trainer'" in e for e in err):
            return {"ok": False, "why": "needs the train extra (the trainer is not installed)"}
        return {"ok": False, "why": f"trainer tool exited {proc.returncode}: {(err or ['no output'])[-1][:160]}"}
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError:
        return {"ok": False, "why": f"trainer tool gave no JSON: {lines[-1][:160]}"}


def daemon_messages(meta: Any, devices: int, per_device: int, seed: int,
                    anomaly: Callable[[int, int], bool] | None = None) -> list[tuple[str, bytes]]:
    """JSON messages for ``devices`` devices, one sample each, 1 s apart, at the model's training mean and std;
    ``anomaly(device, i)`` True: that sample 8 std off on every channel."""
    import json

    rng = np.random.default_rng(seed)
    mean, std = np.asarray(meta.normalisation.mean), np.asarray(meta.normalisation.std)
    out = []
    for i in range(per_device):
        for dev in range(devices):
            x = mean + std * rng.standard_normal(meta.n_channels)
            if anomaly is not None and anomaly(dev, i):
                x = x + 8 * std
            out.append((f"sensors/dev{dev}/data", json.dumps({"ts": 1.7e9 + i, "values": x.tolist()}).encode()))
    return out


def feed_daemon(d: Any, msgs: list[tuple[str, bytes]], burst: int) -> tuple[float, float]:
    """Messages through an unstarted daemon's ingest path, scored after every ``burst``: (messages per wall
    second, messages per CPU second of this thread, which leaves out other threads and processes)."""
    import time

    t0, c0 = time.perf_counter(), time.thread_time()
    handle, drain = d.ingest.handle, d.batching.drain
    for i, (topic, payload) in enumerate(msgs, 1):
        handle(topic, payload)
        if i % burst == 0:
            drain()
    drain()
    return len(msgs) / (time.perf_counter() - t0), len(msgs) / max(1e-9, time.thread_time() - c0)


def ratios(num: list[float], den: list[float], prefix: str = "ratio") -> dict[str, float]:
    """``{prefix}_median``, ``_min``, ``_max`` of the pairwise ratios ``num / den``."""
    r = [a / b for a, b in zip(num, den, strict=True)]
    return {f"{prefix}_median": float(np.median(r)), f"{prefix}_min": float(min(r)), f"{prefix}_max": float(max(r))}


def ratio_cell(b: dict[str, Any], prefix: str = "ratio") -> str:
    """``0.98 (0.48-2.01)``: a ratio's median and spread."""
    return f"{b[prefix + '_median']:.2f} ({b[prefix + '_min']:.2f}-{b[prefix + '_max']:.2f})"
