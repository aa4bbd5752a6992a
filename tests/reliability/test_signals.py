"""Issue 20 item 8: a SIGHUP right after start (``systemctl reload`` just after a restart) does not end the
daemon. ``edgewatch run`` as a real subprocess against a real Mosquitto."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.edge_runtime.onnx_models import make_metadata, write_model
from tests.reliability.harness import DaemonProcess, wait_until


def _numpy_loaded(pid: int) -> bool:
    """numpy's C extension is mapped: the daemon's imports have begun (its model is not loaded yet)."""
    try:
        return "_multiarray_umath" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def test_sighup_during_start_up_does_not_kill_the_daemon(mosquitto, tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.onnx", make_metadata(window=16, hop=4))
    log = tmp_path / "daemon.log"
    d = DaemonProcess(["--model", str(model), "--broker", mosquitto.url, "--instance", "hup",
                       "--stats-interval-s", "0"], log).start()
    assert d.proc is not None
    try:
        wait_until(lambda: _numpy_loaded(d.proc.pid) or d.proc.poll() is not None, 30, "daemon importing")
        sent = 0
        t_end = time.monotonic() + 1.5
        while time.monotonic() < t_end and d.proc.poll() is None:  # from the first import to well after start
            d.signal(signal.SIGHUP)
            sent += 1
            time.sleep(0.05)
        assert d.proc.poll() is None, f"the daemon died on SIGHUP (code {d.proc.returncode}): {log.read_text()[-800:]}"
        wait_until(lambda: "connected to" in log.read_text(), 20, "daemon connected")
        assert sent >= 10
    finally:
        code = d.stop()
    assert code == 0, log.read_text()[-800:]
