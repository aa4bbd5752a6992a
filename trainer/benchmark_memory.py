"""``edgewatch-train benchmark memory``: peak memory of ``fit`` as the recording grows (bounded memory).

Each size is a generated CSV of ``rows`` x ``channels`` (a few common slow factors plus noise, one file), fitted
by ``edgewatch-train fit FILE -q`` in a child process; its peak resident memory comes from the child's own
resource usage (``os.wait4``), its wall time from the clock. The smallest size is the baseline of the same run:
the report gives each size's peak against it and the memory per added row, which is what "bounded" means here
(the recording itself is kept as float32, 4 bytes a value; nothing else should grow with it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

CHUNK_ROWS = 100_000


def write_plant_csv(path: Path, rows: int, channels: int, seed: int = 0) -> int:
    """A CSV of ``rows`` x ``channels`` normal data (3 slow common factors + noise), written in chunks; its bytes."""
    rng = np.random.default_rng([seed, channels])
    periods, phases = np.array([400.0, 1300.0, 77.0]), rng.uniform(0, 6, 3)
    load = rng.normal(0, 1, (channels, 3))
    offset = rng.uniform(10, 100, channels)
    with path.open("w") as f:
        f.write(",".join(f"ch{i}" for i in range(channels)) + "\n")
        for lo in range(0, rows, CHUNK_ROWS):
            t = np.arange(lo, min(rows, lo + CHUNK_ROWS))[:, None]
            x = np.sin(2 * np.pi * t / periods + phases) @ load.T + 0.1 * rng.standard_normal((len(t), channels))
            np.savetxt(f, x + offset, fmt="%.5g", delimiter=",")
    return path.stat().st_size


def peak_of_fit(csv: Path, out: Path, extra: list[str] | None = None) -> dict[str, Any]:
    """Run ``fit`` on ``csv`` in a child; ``{"peak_mb", "wall_s", "rc"}`` (peak: the child's max RSS)."""
    cmd = [sys.executable, "-m", "trainer.cli", "fit", str(csv), "--out", str(out), "-q", *(extra or [])]
    with tempfile.TemporaryFile() as errf:  # a file, not a pipe: a child that writes much cannot block on it
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errf)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = rc = os.waitstatus_to_exitcode(status)
        errf.seek(0)
        err = errf.read().decode(errors="replace").strip()
    per = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return {"peak_mb": usage.ru_maxrss * per / 2**20, "wall_s": wall, "rc": rc,
            "error": err.splitlines()[-1] if rc and err else None}


def run_memory(rows: list[int], channels: int, workdir: Path, epochs: int | None = None) -> dict[str, Any]:
    """Every size in ``rows`` (ascending) fitted once; the smallest is the baseline."""
    sizes = sorted(set(rows))
    out: list[dict[str, Any]] = []
    for n in sizes:
        csv = workdir / f"plant-{n}.csv"
        size = write_plant_csv(csv, n, channels)
        r = peak_of_fit(csv, workdir / f"model-{n}.onnx", ["--epochs", str(epochs)] if epochs else None)
        csv.unlink()
        out.append({"rows": n, "channels": channels, "csv_mb": size / 2**20, **r})
    base = out[0]
    for r in out[1:]:
        r["peak_vs_smallest"] = r["peak_mb"] / base["peak_mb"]
        r["csv_vs_smallest"] = r["csv_mb"] / base["csv_mb"]
        r["bytes_per_added_row"] = (r["peak_mb"] - base["peak_mb"]) * 2**20 / (r["rows"] - base["rows"])
    return {"channels": channels, "sizes": out,
            "kept_bytes_per_row": 4 * channels}  # the recording itself, float32
