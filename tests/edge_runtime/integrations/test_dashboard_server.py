"""edge_runtime.integrations.dashboard.server: routes, read-only, the Server-Sent Events stream, the command.

A real Mosquitto and real HTTP; the browser side is test_dashboard_browser.py."""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from edge_runtime.config import build_config
from edge_runtime.integrations.dashboard.server import Dashboard
from edge_runtime.tools.localbroker import free_port
from tests.edge_runtime.mqtt_helpers import Publisher

ALERT = {"alert_id": "a1", "device": "pump-1", "state": "raised", "seq": 1, "score": 2.5, "threshold": 1.0,
         "window_end": 1.7e9, "time": 1.7e9, "top_channels": [{"name": "Pressure", "share": 0.75}]}


@pytest.fixture
def dash(mosquitto) -> Iterator[Dashboard]:
    d = Dashboard(build_config(None, {"broker": mosquitto.url}), port=0).start()
    try:
        yield d
    finally:
        d.stop()


def _get(port: int, path: str, method: str = "GET") -> tuple[int, str, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request(method, path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, r.getheader("Content-Type") or "", body


def _events(resp: http.client.HTTPResponse) -> Iterator[tuple[str, dict]]:
    name = ""
    for raw in resp:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            yield name, json.loads(line[6:])


def test_routes_serve_the_page_offline_and_refuse_writes(dash) -> None:
    port = dash.server.port
    status, ctype, body = _get(port, "/")
    assert status == 200 and ctype.startswith("text/html") and b"/static/app.js" in body
    assert b"http" not in re.sub(rb'href="#[^"]*"', b"", body).replace(b"http-equiv", b"")  # nothing from the network
    for path in ("/static/app.js", "/static/app.css"):
        status, _, body = _get(port, path)
        body = body.replace(b'"http://www.w3.org/2000/svg"', b"")  # the SVG namespace is a name, not a fetch
        assert status == 200 and b"https://" not in body and b"http://" not in body
    assert _get(port, "/healthz")[0] == 200 and _get(port, "/nope")[0] == 404
    assert json.loads(_get(port, "/api/state")[2])["broker"]["connected"] is True
    for method in ("POST", "PUT", "DELETE"):
        assert _get(port, "/api/state", method)[0] == 501  # read-only: no write path


def test_events_start_with_a_snapshot_then_push_what_changed(dash, mosquitto) -> None:
    c = http.client.HTTPConnection("127.0.0.1", dash.server.port, timeout=10)
    c.request("GET", "/events")
    resp = c.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type") == "text/event-stream"
    events = _events(resp)
    name, snap = next(events)
    assert name == "snapshot" and snap["full"] and snap["open_alerts"] == []
    pub = Publisher(mosquitto.port)
    pub.send("alerts/pump-1", json.dumps(ALERT))
    pub.close()
    name, delta = next(events)
    assert name == "delta" and not delta["full"] and delta["version"] > snap["version"]
    assert [a["alert_id"] for a in delta["open_alerts"]] == ["a1"] and [d["name"] for d in delta["devices"]] == ["pump-1"]
    c.close()


def test_the_command_serves_until_sigterm_and_a_dead_broker_is_one_line(mosquitto) -> None:
    cmd = [sys.executable, "-m", "edge_runtime.cli", "dashboard", "--port", "0"]
    proc = subprocess.Popen([*cmd, "--broker", mosquitto.url], stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert m, line
        assert _get(int(m[1]), "/healthz")[0] == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert proc.stderr.read() == ""
    finally:
        proc.kill()
        proc.wait()
    t0 = time.monotonic()
    res = subprocess.run([*cmd, "--broker", f"mqtt://127.0.0.1:{free_port()}"], capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 69 and time.monotonic() - t0 < 20  # EX_UNAVAILABLE
    assert res.stderr.strip().splitlines() == [res.stderr.strip()] and "cannot connect to broker" in res.stderr
