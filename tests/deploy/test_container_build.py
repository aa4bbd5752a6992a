"""The container images, built and run for real (opt-in: ``pytest -m container``; root, a few minutes).

Both Dockerfiles are built with buildah (``--isolation chroot``) from a local debootstrap base (no
registry is reachable here). The CPU image is then run unchanged (its own ENTRYPOINT + CMD, the config
mounted at /etc/edgewatch) against a Mosquitto on loopback: it must publish ``online``, raise an alert
on a simulated anomaly, and stop cleanly on SIGTERM; with the shipped example config it must refuse to
start with exit code 78 and a line naming ``model.path``. Sizes and build times are printed (``-s``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.buildah import Container, build, ensure_base, run
from tests.edge_runtime.mqtt_helpers import Collector, wait_until

pytestmark = [pytest.mark.container, pytest.mark.timeout(2400)]
ROOT = Path(__file__).resolve().parents[2]
DEMO_MODEL = ROOT / "models" / "demo.onnx"


@pytest.fixture(scope="module")
def cpu_image() -> str:
    base = ensure_base()
    built = build("Dockerfile.cpu", "localhost/edgewatch:cpu-test", {"PYTHON_IMAGE": base})
    print(f"\nedgewatch:cpu built in {built.seconds:.0f} s, image {built.size_mb:.0f} MB")
    return built.tag


def config_dir(tmp_path: Path, toml: str) -> Path:
    d = tmp_path / "etc-edgewatch"
    d.mkdir()
    shutil.copy(DEMO_MODEL, d / "model.onnx")
    (d / "edgewatch.toml").write_text(toml)
    for f in (d, *d.iterdir()):
        f.chmod(0o755 if f.is_dir() else 0o644)  # the image's user (uid 10001) reads the mount
    return d


def simulate(broker_url: str, *args: str) -> None:
    """Publish the simulator's stream for the demo model (channel names from it), as fast as the broker takes."""
    subprocess.run([sys.executable, "-m", "edge_runtime.cli", "simulate", "--broker", broker_url, "--model",
                    str(DEMO_MODEL), "--rate", "1", "--fast", *args], cwd=ROOT, check=True, capture_output=True,
                   timeout=300)


def test_cpu_image_runs_the_daemon_online_alerts_and_stops_cleanly(cpu_image: str, mosquitto, tmp_path: Path) -> None:
    # The file gives the model (and a broker that is wrong); -e EDGEWATCH_* variables override and add keys.
    etc = config_dir(tmp_path, '[model]\npath = "/etc/edgewatch/model.onnx"\n[mqtt]\nbroker = "mqtt://127.0.0.1:1"\n')
    col = Collector(mosquitto.port, ["edgewatch/ctr/status", "alerts/#"])
    ctr = Container(cpu_image, {etc: "/etc/edgewatch"}, env={"EDGEWATCH_MQTT_BROKER": mosquitto.url,
                                                           "EDGEWATCH_RUNTIME_INSTANCE": "ctr",
                                                           "EDGEWATCH_RUNTIME_STATS_INTERVAL_S": "0"})
    try:
        assert ctr.argv == ["/opt/edgewatch/bin/edgewatch", "run"]
        assert ctr.daemon_process().uids().real == 10001  # the image's USER, not root
        wait_until(lambda: any(d["state"] == "online" for _, d in col.docs("edgewatch/ctr/status")), 60,
                   "the container's online status")
        simulate(mosquitto.url, "--devices", "1", "--duration", "400", "--anomaly", "sim-0:level_shift:200:120")
        wait_until(lambda: any(a["state"] == "raised" and a["device"] == "sim-0" for a in col.alerts()), 60,
                   "a raised alert for sim-0")
        code, out = ctr.stop()
        assert code == 0, out
        assert col.docs("edgewatch/ctr/status")[-1][1]["state"] == "offline"
        assert "Traceback" not in out
    finally:
        ctr.remove()
        col.close()


def test_cpu_image_with_the_shipped_example_config_exits_78_naming_model_path(cpu_image: str, tmp_path: Path) -> None:
    etc = config_dir(tmp_path, (ROOT / "deploy" / "edgewatch.toml").read_text())
    ctr = Container(cpu_image, {etc: "/etc/edgewatch"})
    try:
        code, out = ctr.proc.wait(timeout=60), ctr.proc.stdout.read()
        assert code == 78, out  # EX_CONFIG: systemd's RestartPreventExitStatus / docker's operator must fix it
        assert "edgewatch: error: model.path: no model given: edit [model] path in /etc/edgewatch/edgewatch.toml" in out
    finally:
        ctr.remove()


def test_cuda_image_builds_up_to_onnxruntime_gpu(tmp_path: Path) -> None:
    """Built FROM the same Debian base standing in for nvidia/cuda (unreachable here): what is verified is
    the Dockerfile's own steps, onnxruntime-gpu installing and importing; the CUDA libraries are not in it."""
    base = ensure_base()
    built = build("Dockerfile.cuda", "localhost/edgewatch:cuda-test", {"CUDA_IMAGE": base})
    print(f"\nedgewatch:cuda (Debian base, no CUDA libraries) built in {built.seconds:.0f} s, image {built.size_mb:.0f} MB")
    assert "onnxruntime-gpu" in built.log
    ctr = run(["buildah", "from", built.tag]).stdout.strip().splitlines()[-1]
    try:
        probe = run(["buildah", "run", "--isolation", "chroot", ctr, "--", "/opt/edgewatch/bin/python", "-c",
                     "import onnxruntime as o, importlib.metadata as m; print(m.version('onnxruntime-gpu'), "
                     "'CUDAExecutionProvider' in o.get_available_providers())"]).stdout
        assert probe.split()[-1] == "True", probe
        assert run(["buildah", "run", "--isolation", "chroot", ctr, "--", "/opt/edgewatch/bin/edgewatch",
                    "--version"]).stdout.startswith("edgewatch, version")
    finally:
        run(["buildah", "rm", ctr], check=False)
