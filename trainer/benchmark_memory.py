"""``edgewatch-train benchmark memory``: peak memory of ``fit`` as the recording grows (bounded memory).

Each size is a generated CSV of ``rows`` x ``channels`` (a few common slow factors plus noise, one file), fitted
by ``edgewatch-train fit FILE -q`` in a child process; its peak resident memory comes from the child's own
resource usage (``os.wait4``), its wall time from the clock. The smallest size is the baseline of the same run:
the report gives each size's peak against it and the memory per added row, which is what "bounded" means here
(the recording itself is kept as float32, 4 bytes a value; nothing else should grow with it).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

CHUNK_ROWS = 100_000
CGROUP_ROOT = Path("/sys/fs/cgroup")


class CgroupError(RuntimeError):
    """No memory cgroup can be made here (not Linux, not root, or no memory controller)."""


class MemoryCgroup:
    """A fresh memory cgroup with a hard limit, for one child (``preexec`` moves it in), removed on exit.

    cgroup v1 (``memory.limit_in_bytes``, the memory controller's own hierarchy) or v2 (``memory.max``), below the
    cgroup this process is in. The kernel reclaims file-backed pages (a mapped recording) at the limit and kills
    the child when its anonymous memory alone does not fit.
    """

    def __init__(self, limit_mb: int, root: Path = CGROUP_ROOT) -> None:
        self.limit = limit_mb * 2**20
        try:
            lines = Path("/proc/self/cgroup").read_text().splitlines()
        except OSError as exc:
            raise CgroupError(f"no /proc/self/cgroup ({exc.strerror}): memory limits need Linux") from None
        v1 = next((ln.split(":", 2)[2] for ln in lines if ln.split(":")[1:2] == ["memory"]), None)
        v2 = next((ln.split(":", 2)[2] for ln in lines if ln.startswith("0::")), None)
        name = f"edgewatch-bench-{os.getpid()}"
        controllers = root / "cgroup.controllers"
        if v1 is not None and (root / "memory").is_dir():
            self.dir, self.v2 = root / "memory" / v1.lstrip("/") / name, False
        elif v2 is not None and controllers.exists() and "memory" in controllers.read_text().split():
            self.dir, self.v2 = root / v2.lstrip("/") / name, True
        else:
            raise CgroupError(f"no memory cgroup controller under {root}")

    def __enter__(self) -> MemoryCgroup:
        try:
            self.dir.mkdir()
            (self.dir / ("memory.max" if self.v2 else "memory.limit_in_bytes")).write_text(str(self.limit))
        except OSError as exc:
            self._remove()
            raise CgroupError(f"cannot make a memory cgroup at {self.dir}: {exc.strerror or exc} (root needed)") from None
        return self

    def preexec(self) -> None:
        """Run in the child before it starts: move it into the cgroup."""
        (self.dir / "cgroup.procs").write_text(str(os.getpid()))

    def peak_mb(self) -> float | None:
        """The cgroup's peak charged memory (anonymous and page cache), MB, where the kernel tells it."""
        f = self.dir / ("memory.peak" if self.v2 else "memory.max_usage_in_bytes")
        try:
            return int(f.read_text()) / 2**20
        except (OSError, ValueError):
            return None

    def _remove(self) -> None:
        with contextlib.suppress(OSError):
            self.dir.rmdir()

    def __exit__(self, *exc: object) -> None:
        self._remove()


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


def anon_mb(pid: int) -> float | None:
    """A live process's anonymous resident memory (``RssAnon``: what the OS cannot page back from a file), MB;
    None where ``/proc`` does not say (not Linux, or the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def peak_of_fit(csv: Path, out: Path, extra: list[str] | None = None, every_s: float = 0.05,
                limit_mb: int | None = None) -> dict[str, Any]:
    """Run ``fit`` on ``csv`` in a child; ``{"peak_mb", "peak_anon_mb", "wall_s", "rc"}``. ``peak_mb``: the child's
    max RSS, file-backed pages included (a recording mapped from its temporary file counts there while its pages
    are in memory, though the OS can drop them); ``peak_anon_mb``: the largest ``RssAnon`` seen, sampled every
    ``every_s`` (None off Linux). ``limit_mb``: the child runs in a :class:`MemoryCgroup` of that limit (rc -9:
    killed for memory; ``cgroup_peak_mb``: what the cgroup was charged at most)."""
    with MemoryCgroup(limit_mb) if limit_mb else contextlib.nullcontext() as group:
        r = _run_fit(csv, out, extra, every_s, group)
        if group is not None:
            r.update(limit_mb=limit_mb, cgroup_peak_mb=group.peak_mb(), killed=r["rc"] == -9)
            if r["killed"]:
                r["error"] = f"killed (SIGKILL): out of memory under the {limit_mb} MB limit"
        return r


def _run_fit(csv: Path, out: Path, extra: list[str] | None, every_s: float,
             group: MemoryCgroup | None) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "trainer.cli", "fit", str(csv), "--out", str(out), "-q", *(extra or [])]
    with tempfile.TemporaryFile() as errf:  # a file, not a pipe: a child that writes much cannot block on it
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errf,
                                preexec_fn=group.preexec if group else None)
        anon: float | None = None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            now = anon_mb(proc.pid)
            if now is not None:
                anon = now if anon is None else max(anon, now)
            time.sleep(every_s)
        wall = time.perf_counter() - t0
        proc.returncode = rc = os.waitstatus_to_exitcode(status)
        errf.seek(0)
        err = errf.read().decode(errors="replace").strip()
    per = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return {"peak_mb": usage.ru_maxrss * per / 2**20, "peak_anon_mb": anon, "wall_s": wall, "rc": rc,
            "error": err.splitlines()[-1] if rc and err else None}


def run_memory(rows: list[int], channels: int, workdir: Path, epochs: int | None = None,
               limit_mb: int | None = None) -> dict[str, Any]:
    """Every size in ``rows`` (ascending) fitted once; the smallest is the baseline."""
    sizes = sorted(set(rows))
    out: list[dict[str, Any]] = []
    for n in sizes:
        csv = workdir / f"plant-{n}.csv"
        size = write_plant_csv(csv, n, channels)
        r = peak_of_fit(csv, workdir / f"model-{n}.onnx", ["--epochs", str(epochs)] if epochs else None,
                        limit_mb=limit_mb)
        csv.unlink()
        out.append({"rows": n, "channels": channels, "csv_mb": size / 2**20, **r})
    base = out[0]
    for r in out[1:]:
        r["peak_vs_smallest"] = r["peak_mb"] / base["peak_mb"]
        r["csv_vs_smallest"] = r["csv_mb"] / base["csv_mb"]
        r["bytes_per_added_row"] = (r["peak_mb"] - base["peak_mb"]) * 2**20 / (r["rows"] - base["rows"])
        if r["peak_anon_mb"] is not None and base["peak_anon_mb"] is not None:
            r["anon_bytes_per_added_row"] = ((r["peak_anon_mb"] - base["peak_anon_mb"]) * 2**20
                                             / (r["rows"] - base["rows"]))
    return {"channels": channels, "sizes": out,
            "kept_bytes_per_row": 4 * channels}  # the recording itself, float32
