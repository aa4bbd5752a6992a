"""Profile the daemon's hot path with py-spy while it drains queued single-sample (or batched) messages.

    .venv/bin/python lab/profile_daemon.py [--messages 40000] [--batch 1] [--no-checks] [--out benchmarks/profile.txt]

Queues the messages for the daemon's persistent session on a private Mosquitto, then runs the real
daemon (``lab.bench.procs daemon``) under ``py-spy record --threads --format raw`` until every
window is scored, and prints the top functions by self time and by inclusive time per thread as
Markdown (the tables in benchmarks/PROFILE.md). Needs py-spy (dev tool, not an edge dependency).
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from edge_runtime.service.model import load_model
from lab.bench.broker import bench_broker, prime_session
from lab.bench.ingest import daemon_config, device_names, expected_windows, publish_all


def summarise(raw: Path, top: int = 15) -> str:
    """Markdown tables of self and inclusive sample shares per thread from py-spy raw (collapsed) output."""
    self_t: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    incl: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    totals: collections.Counter = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        head = frames[0]
        if head.startswith("thread ("):
            thread = head.split(": ", 1)[1] if ": " in head else head
            frames = frames[1:]
        else:
            thread = "?"
        k = int(n)
        totals[thread] += k
        if frames:
            self_t[thread][_short(frames[-1])] += k
        for f in {_short(f) for f in frames}:
            incl[thread][f] += k
    out = []
    for thread, tot in totals.most_common(3):
        out.append(f"\n**thread {thread}** ({tot} samples)\n")
        out.append("| self % | function | | incl % | function |\n|---:|---|---|---:|---|")
        s = self_t[thread].most_common(top)
        i = [x for x in incl[thread].most_common(top + 10) if "threading.py" not in x[0]][:top]
        for a, b in zip(s, i, strict=False):
            out.append(f"| {a[1] / tot * 100:.1f} | `{a[0]}` | | {b[1] / tot * 100:.1f} | `{b[0]}` |")
    return "\n".join(out)


def _short(frame: str) -> str:
    name, _, loc = frame.partition(" (")
    loc = loc.rstrip(")")
    path, _, line = loc.rpartition(":")
    for marker in ("site-packages/", "edge_runtime/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1] if marker != "edge_runtime/" else "edge_runtime/" + path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/demo.onnx")
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--messages", type=int, default=40000)
    ap.add_argument("--batch", type=int, default=1, help="samples per message")
    ap.add_argument("--out", default="", help="also keep the raw py-spy output here")
    ap.add_argument("--no-checks", action="store_true", help="the daemon without its sensor checks (health.sensor_checks off)")
    a = ap.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    m = load_model(a.model, "cpu", 1)
    samples = a.messages // a.devices * a.batch
    with bench_broker() as broker, tempfile.TemporaryDirectory() as tmp:
        cid = "bench-profile"
        prime_session(broker.host, broker.port, cid)
        publish_all(broker, device_names(a.devices), samples, m.n_channels, a.batch)
        over = {"sensor_checks": False} if a.no_checks else {}
        args = {"config": daemon_config(broker, a.model, cid, **over), "expect_messages": a.devices * -(-samples // a.batch),
                "expect_windows": a.devices * expected_windows(samples, m.window, m.metadata.hop)}
        raw = Path(a.out or Path(tmp) / "raw.txt")
        res = subprocess.run([spy, "record", "--threads", "--format", "raw", "--rate", "250", "-o", str(raw), "--",
                              sys.executable, "-m", "lab.bench.procs", "daemon", json.dumps(args)],
                             capture_output=True, text=True, check=True)
        result = json.loads([ln for ln in res.stdout.splitlines() if ln.startswith("{")][-1])
        print(f"daemon drained {result['stats']['messages']} messages ({a.batch} sample(s) each) in "
              f"{result['seconds']} s: {result['msg_rate']} msg/s, {result['sample_rate']} samples/s under py-spy "
              f"(windows scored {result['stats']['windows_scored']}, drops {result['stats']['drops']})")
        print(summarise(raw))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
