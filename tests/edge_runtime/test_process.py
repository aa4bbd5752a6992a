"""The daemon as a process: SIGHUP reload, SIGTERM clean exit with retained offline status, exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import onnxruntime as ort
import pytest

from tests.edge_runtime.mqtt_helpers import Collector, Publisher, wait_until
from tests.edge_runtime.onnx_models import make_metadata, series, write_model

ROOT = Path(__file__).resolve().parents[2]
CPU_ONLY = "CUDAExecutionProvider" not in ort.get_available_providers()


def edgewatch(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edge_runtime.cli", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def status_docs(col: Collector) -> list[dict]:
    return [d for _, d in col.docs("edgewatch/proc/status")]


def test_sighup_reload_then_sigterm_exits_0_with_offline_retained(mosquitto, tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.onnx", make_metadata(model_id="v1"))
    col = Collector(mosquitto.port, ["edgewatch/proc/status", "alerts/#"])
    proc = edgewatch("run", "--model", str(model), "--broker", mosquitto.url, "--instance", "proc",
                     "--watch-interval-s", "0", "--stats-interval-s", "0", "--log-format", "json")
    try:
        wait_until(lambda: any(d["state"] == "online" for d in status_docs(col)), 20, "online status")
        assert status_docs(col)[-1]["model_id"] == "v1"
        write_model(model, make_metadata(model_id="v2"))
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: status_docs(col)[-1].get("model_id") == "v2", 10, "online status with v2")
        pub = Publisher(mosquitto.port)
        x = series(40)
        for i in range(40):
            pub.send("sensors/p/data", json.dumps({"ts": 1e9 + i, "values": x[i].tolist()}))
        pub.close()
        time.sleep(0.3)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
        assert proc.returncode == 0, out
        assert time.monotonic() - t0 < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    col.close()
    lines = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
    assert lines and all({"time", "level", "message"} <= set(ln) for ln in lines)
    msgs = [ln["message"] for ln in lines]
    assert any("model reloaded (SIGHUP): v1 -> v2" in m for m in msgs)
    assert any(m.startswith("stats: messages=40 samples=40") for m in msgs)
    late = Collector(mosquitto.port, ["edgewatch/proc/status"])
    wait_until(lambda: bool(late.messages), 5, "retained status")
    topic, payload, retained = late.messages[0]
    assert retained and json.loads(payload)["state"] == "offline" and json.loads(payload)["reason"] == "stopped"
    late.close()


def test_sigkill_leaves_offline_by_last_will(mosquitto, tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.onnx")
    col = Collector(mosquitto.port, ["edgewatch/proc/status"])
    proc = edgewatch("run", "--model", str(model), "--broker", mosquitto.url, "--instance", "proc",
                     "--keepalive-s", "5")
    try:
        wait_until(lambda: any(d["state"] == "online" for d in status_docs(col)), 20, "online status")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
    wait_until(lambda: status_docs(col)[-1]["state"] == "offline", 10, "last will")
    assert status_docs(col)[-1]["reason"] == "connection lost"
    col.close()


@pytest.mark.skipif(not CPU_ONLY, reason="needs the CPU-only onnxruntime build")
def test_explicit_cuda_on_cpu_only_build_exits_65_with_one_line(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.onnx")
    proc = edgewatch("run", "--model", str(model), "--provider", "cuda")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 65  # EX_DATAERR: the model cannot run as asked
    assert "CUDA requested" in out and "Traceback" not in out


@pytest.mark.skipif(not CPU_ONLY, reason="needs the CPU-only onnxruntime build")
def test_auto_provider_logs_cpu_and_why(mosquitto, tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.onnx")
    proc = edgewatch("run", "--model", str(model), "--broker", mosquitto.url, "--instance", "proc")
    try:
        col = Collector(mosquitto.port, ["edgewatch/proc/status"])
        wait_until(lambda: any(d["state"] == "online" for d in status_docs(col)), 20, "online")
        assert status_docs(col)[-1]["provider"] == "CPUExecutionProvider"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    col.close()
    line = next(ln for ln in out.splitlines() if "provider CPUExecutionProvider" in ln)
    assert "no CUDA provider" in line and "running on CPU" in line
