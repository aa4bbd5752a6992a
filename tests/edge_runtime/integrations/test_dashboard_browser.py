"""`edgewatch dashboard` in a real headless chromium: a private Mosquitto, the daemon on models/demo.onnx, the
simulator with an injected anomaly; the page, loaded before the anomaly, shows it without a reload. And the page
keeps working across a broker restart. Screenshots go to tmp_path (and $EDGEWATCH_SCREENSHOTS when set)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_runtime.config import build_config
from edge_runtime.integrations.dashboard.server import Dashboard
from tests.edge_runtime.integrations.browser import browser_missing, headless_chromium
from tests.edge_runtime.mqtt_helpers import Publisher, running_daemon

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "models" / "demo.onnx"
pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(browser_missing()), reason=browser_missing() or "-")]


@pytest.fixture
def page() -> Iterator:
    drv = headless_chromium()
    try:
        yield drv
    finally:
        drv.quit()


@pytest.fixture
def dashboard(mosquitto) -> Iterator[Dashboard]:
    cfg = build_config(None, {"broker": mosquitto.url, "reconnect_min_s": 1, "reconnect_max_s": 1})
    dash = Dashboard(cfg, port=0).start()
    try:
        yield dash
    finally:
        dash.stop()


def _wait(drv, script: str, timeout: float, what: str):
    """Poll ``script`` (JavaScript returning a value) in the page until it is truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = drv.execute_script(script)
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"the page did not show {what} within {timeout} s; it shows:\n"
                         + drv.find_element("tag name", "body").text[:2000])


def _text(drv, selector: str) -> str:
    """The rendered text of ``selector`` now (rows are re-rendered on every push: no element handles kept)."""
    return drv.execute_script("return document.querySelector(arguments[0])?.innerText ?? ''", selector)


def _shot(drv, tmp_path: Path, name: str) -> Path:
    out = tmp_path / name
    drv.save_screenshot(str(out))
    if os.environ.get("EDGEWATCH_SCREENSHOTS"):
        Path(os.environ["EDGEWATCH_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(out, Path(os.environ["EDGEWATCH_SCREENSHOTS"]) / name)
    assert out.stat().st_size > 10_000  # a rendered page, not a blank
    return out


def test_an_injected_anomaly_appears_live_with_its_channels(mosquitto, dashboard, page, tmp_path: Path) -> None:
    with running_daemon(mosquitto.url, DEMO, instance="gw1", publish_scores=True, stats_interval_s=1.0):
        page.get(f"http://127.0.0.1:{dashboard.server.port}/")
        _wait(page, "return document.querySelector('#conn').dataset.state === 'up'", 10, "the broker connected")
        _wait(page, "return document.querySelector('#gateways tr[data-instance=gw1]')", 10, "the gateway gw1")
        assert _text(page, "#open-empty") == "No open alert."
        page.execute_script("window.__loaded_once = true")  # gone if the page reloads
        sim = subprocess.run(
            [sys.executable, "-m", "edge_runtime.cli", "simulate", "--broker", mosquitto.url, "--model", str(DEMO),
             "--devices", "3", "--rate", "10", "--duration", "40", "--speed", "8",
             "--anomaly", "sim-1:level_shift:20:10", "--anomaly", "sim-2:dropout:15:25"],  # no value to the end
            cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert sim.returncode == 0, sim.stderr
        row = _wait(page, "return document.querySelector('#open-alerts tr[data-device=\"sim-1\"]')?.innerText",
                    20, "an open alert for sim-1")
        assert page.execute_script("return window.__loaded_once") is True  # pushed, not reloaded
        assert "%" in row and "gw1" in row, row  # top channels with shares, the gateway
        _wait(page, "return document.querySelectorAll('#devices tbody tr').length === 3", 10, "three devices")
        assert page.execute_script(
            "return document.querySelector('#devices tr[data-device=\"sim-1\"] .badge').textContent") == "raised"
        assert page.execute_script("return document.querySelectorAll('#devices svg polyline.score').length") == 3
        assert page.execute_script("return document.querySelector('#devices tr[data-device=\"sim-1\"] circle.above')")
        assert "raised" in _text(page, "#log tbody")
        # sensor health from the retained health documents: sim-0 healthy, sim-2's frozen channel stuck
        assert _text(page, "#devices tr[data-device=\"sim-0\"] td.health") == "ok"
        cell = _wait(page, "const c = document.querySelector('#devices tr[data-device=\"sim-2\"] td.health');"
                     " return c && c.innerText.includes('missing') && c.innerText", 10, "sim-2 missing a channel")
        assert cell.split()[0] in ("fault", "degraded"), cell
        gw = _text(page, "#gateways tr[data-instance=gw1]")
        assert "online" in gw and "CPUExecutionProvider" in gw, gw
        heads = page.execute_script("return [...document.querySelectorAll('#gateways th')].map(h => h.innerText)")
        cells = page.execute_script("return [...document.querySelectorAll('#gateways tr[data-instance=gw1] td')]"
                                    ".map(c => c.innerText)")
        assert cells[heads.index("drops")] == "0" and cells[heads.index("lost out")] == "0", (heads, cells)
        _shot(page, tmp_path, "dashboard-fleet.png")
        page.execute_script("document.querySelector('#devices tr[data-device=\"sim-1\"] a').click()")
        _wait(page, "return !document.querySelector('#device').hidden", 5, "the device page")
        assert page.execute_script("return document.querySelectorAll('#dev-chart svg polyline.score').length") == 1
        assert "%" in _text(page, "#dev-channels tbody")
        # issue 19: measured vs expected of the current alert's top channels (the reconstruction, raw units)
        assert "current alert" in _text(page, "#dev-channels-note") and "expected" in _text(page, "#dev-channels-note")
        cells = page.execute_script(
            "return [...document.querySelectorAll('#dev-channels tbody tr')].map(r => [r.dataset.channel,"
            " r.querySelector('.measured').textContent, r.querySelector('.expected').textContent,"
            " r.querySelector('.direction').textContent])")
        assert cells and all(m != "-" and e != "-" and d in ("high", "low") for _, m, e, d in cells), cells
        float(cells[0][1].split()[0]), float(cells[0][2].split()[0])  # numbers, as the payload carries them
        _shot(page, tmp_path, "dashboard-device.png")
        # per-channel sensor health on the device page: sim-1 every channel ok, sim-2 its dropped-out ones missing
        states = "return [...document.querySelectorAll('#dev-health tbody tr')].map(r => r.children[1].innerText)"
        assert set(page.execute_script(states)) == {"ok"}, page.execute_script(states)
        page.execute_script("location.hash = '#/device/sim-2'")
        _wait(page, states + ".includes('missing')", 5, "sim-2's missing channels")
        assert "missing" in _text(page, "#dev-sensor-log tbody") and "raised" in _text(page, "#dev-sensor-log tbody")


def test_the_page_keeps_working_across_a_broker_restart(mosquitto, dashboard, page, tmp_path: Path) -> None:
    alert = {"alert_id": "a1", "device": "pump-1", "state": "raised", "seq": 1, "score": 2.5, "threshold": 1.0,
             "window_end": 1.7e9, "time": 1.7e9, "instance": "gw", "top_channels": [{"name": "Pressure", "share": 0.75}]}
    page.get(f"http://127.0.0.1:{dashboard.server.port}/")
    _wait(page, "return document.querySelector('#conn').dataset.state === 'up'", 10, "the broker connected")
    page.execute_script("window.__loaded_once = true")
    mosquitto.stop()
    _wait(page, "return document.querySelector('#conn').dataset.state === 'down'", 10, "the broker lost")
    assert "reconnecting" in _text(page, "#conn")
    _shot(page, tmp_path, "dashboard-broker-down.png")
    time.sleep(1.0)
    mosquitto.start()
    _wait(page, "return document.querySelector('#conn').dataset.state === 'up'", 15, "the broker reconnected")
    pub = Publisher(mosquitto.port)
    pub.send("alerts/pump-1", json.dumps(alert))
    pub.close()
    _wait(page, "return document.querySelector('#open-alerts tr[data-device=\"pump-1\"]')", 10,
          "the alert published after the restart")
    assert page.execute_script("return window.__loaded_once") is True
