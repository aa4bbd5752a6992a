"""Measure `edgewatch dashboard`'s cost (RSS, CPU) with N simulated devices live and one browser page open.

    .venv/bin/python scripts/dashboard_cost.py --devices 100 --seconds 60

A private Mosquitto, the daemon on models/demo.onnx with alerts.publish_scores on, the simulator at --rate Hz
per device in real time, the dashboard, and (when chromium is installed) one headless page on it. Prints the
dashboard's CPU (% of one core) and RSS (peak and end), the daemon's for comparison, and the score documents
the dashboard received.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_runtime.tools.localbroker import MosquittoBroker, free_port  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--rate", type=float, default=10.0, help="samples/s per device")
    ap.add_argument("--seconds", type=float, default=60.0, help="measured period")
    ap.add_argument("--no-browser", action="store_true")
    a = ap.parse_args()
    py = [sys.executable, "-m", "edge_runtime.cli"]
    broker = MosquittoBroker(log_types=("error",), connection_messages=False).start()
    port = free_port()
    procs: list[subprocess.Popen] = []
    page = None
    try:
        daemon = subprocess.Popen([*py, "run", "--model", str(ROOT / "models/demo.onnx"), "--broker", broker.url,
                                   "--instance", "gw1", "--publish-scores", "--stats-interval-s", "5"],
                                  stderr=subprocess.DEVNULL, cwd=ROOT)
        dash = subprocess.Popen([*py, "dashboard", "--broker", broker.url, "--port", str(port)],
                                stderr=subprocess.DEVNULL, cwd=ROOT)
        procs += [daemon, dash]
        time.sleep(3)
        if not a.no_browser:
            from tests.edge_runtime.integrations.browser import browser_missing, headless_chromium
            if not browser_missing():
                page = headless_chromium()
                page.get(f"http://127.0.0.1:{port}/")
        warm = 15.0
        sim = subprocess.Popen([*py, "simulate", "--broker", broker.url, "--model", str(ROOT / "models/demo.onnx"),
                                "--devices", str(a.devices), "--rate", str(a.rate),
                                "--duration", str(a.seconds + warm + 10), "--random", "2"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        procs.append(sim)
        time.sleep(1.0)
        if sim.poll() is not None:
            raise SystemExit(f"the simulator ended at once (exit {sim.returncode})")
        time.sleep(warm)  # windows fill, every device seen
        ps = {"dashboard": psutil.Process(dash.pid), "daemon": psutil.Process(daemon.pid)}
        cpu0 = {k: p.cpu_times() for k, p in ps.items()}
        s0 = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/state"))["scores_seen"]
        t0 = time.monotonic()
        peak = {k: 0 for k in ps}
        while time.monotonic() - t0 < a.seconds:
            for k, p in ps.items():
                peak[k] = max(peak[k], p.memory_info().rss)
            time.sleep(0.5)
        dt = time.monotonic() - t0
        st = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/state"))
        for k, p in ps.items():
            c = p.cpu_times()
            peak[k] = max(peak[k], p.memory_info().rss)
            cpu = (c.user + c.system - cpu0[k].user - cpu0[k].system) / dt * 100
            print(f"{k}: CPU {cpu:.1f} % of one core, RSS peak {peak[k] / 2**20:.1f} MiB, "
                  f"end {p.memory_info().rss / 2**20:.1f} MiB")
        print(f"devices shown {len(st['devices'])}, score documents {(st['scores_seen'] - s0) / dt:.0f}/s, "
              f"browser page {'open' if page else 'not open'}, {dt:.0f} s measured")
    finally:
        if page is not None:
            page.quit()
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        broker.stop()


if __name__ == "__main__":
    main()
