"""``edgewatch dashboard``: the MQTT subscription, a read-only HTTP server with Server-Sent Events, the command.

Routes (GET and HEAD only; any other method is refused with 501, there is no write path):
``/`` the page, ``/static/<file>`` its script and style, ``/api/state`` the whole view as JSON,
``/events`` a Server-Sent Events stream (``snapshot`` first, then ``delta`` at most every ``push_s``
seconds while something changes, a comment every 15 s otherwise), ``/healthz``.
The browser's ``EventSource`` reconnects on its own; the MQTT link reconnects with backoff and the
page shows that it is down meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import click

from edge_runtime.config import Config
from edge_runtime.integrations.dashboard.view import FleetView, Topics
from edge_runtime.tools.prefix_option import daemon_prefix_option
from edge_runtime.tools.watch import Subscription, WatchError

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
FILES = {"/": ("index.html", "text/html; charset=utf-8"),
         "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
         "/static/app.css": ("app.css", "text/css; charset=utf-8")}
KEEPALIVE_S = 15.0
MAX_STREAMS = 32


class DashboardServer:
    """The HTTP side: serves the page and pushes ``view``'s changes to every open ``/events`` stream."""

    def __init__(self, view: FleetView, bind: str = "127.0.0.1", port: int = 8080, push_s: float = 0.5) -> None:
        self.view = view
        self.push_s = push_s
        self.stopping = threading.Event()
        self.streams = 0
        self._streams_lock = threading.Lock()
        self.httpd = ThreadingHTTPServer((bind, port), self._handler_class())
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread: threading.Thread | None = None

    def start(self) -> DashboardServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="dashboard-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        with self.view._changed:  # wake the streams so they end
            self.view._changed.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "edgewatch-dashboard"

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("%s " + format, self.address_string(), *args)

            def do_HEAD(self) -> None:
                self.do_GET(head=True)

            def do_GET(self, head: bool = False) -> None:
                path = self.path.split("?", 1)[0]
                if path in FILES:
                    name, ctype = FILES[path]
                    return self._send(HTTPStatus.OK, (STATIC / name).read_bytes(), ctype, head)
                if path == "/api/state":
                    body = json.dumps(server.view.delta(0, time.time())).encode()
                    return self._send(HTTPStatus.OK, body, "application/json", head)
                if path == "/healthz":
                    return self._send(HTTPStatus.OK, b"ok\n", "text/plain", head)
                if path == "/events" and not head:
                    return server.stream(self)
                self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain", head)

            def _send(self, status: HTTPStatus, body: bytes, ctype: str, head: bool) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.send_header("X-Content-Type-Options", "nosniff")
                self.send_header("Content-Security-Policy", "default-src 'self'; img-src 'self' data:")
                self.end_headers()
                if not head:
                    self.wfile.write(body)

        return Handler

    def stream(self, h: BaseHTTPRequestHandler) -> None:
        """One Server-Sent Events stream until the client goes away or the server stops."""
        with self._streams_lock:
            if self.streams >= MAX_STREAMS:
                h.send_error(HTTPStatus.SERVICE_UNAVAILABLE, f"at most {MAX_STREAMS} open pages")
                return
            self.streams += 1
        try:
            h.send_response(HTTPStatus.OK)
            h.send_header("Content-Type", "text/event-stream")
            h.send_header("Cache-Control", "no-store")
            h.send_header("Connection", "close")
            h.end_headers()
            h.close_connection = True
            snap = self.view.delta(0, time.time())
            h.wfile.write(b"retry: 2000\n" + _event("snapshot", snap))
            h.wfile.flush()
            v, last_write = snap["version"], time.monotonic()
            while not self.stopping.is_set():
                if self.view.wait_change(v, KEEPALIVE_S) and not self.stopping.is_set():
                    d = self.view.delta(v, time.time())
                    v = d["version"]
                    h.wfile.write(_event("delta", d))
                    self.stopping.wait(self.push_s)  # at most one push per push_s: changes pile up meanwhile
                elif time.monotonic() - last_write >= KEEPALIVE_S:
                    h.wfile.write(b": keepalive\n\n")
                else:
                    continue
                h.wfile.flush()
                last_write = time.monotonic()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the page was closed
        finally:
            with self._streams_lock:
                self.streams -= 1


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class Dashboard:
    """The MQTT subscription feeding a :class:`FleetView` and the :class:`DashboardServer` showing it."""

    def __init__(self, cfg: Config, bind: str = "127.0.0.1", port: int = 8080, history_s: float = 300.0) -> None:
        self.view = FleetView(Topics.from_config(cfg), history_s=history_s, on_skip=self._on_skip)
        self.server = DashboardServer(self.view, bind, port)
        filters = [(f, 1) for f in self.view.topics.filters()]
        self.sub = Subscription(cfg, filters, self._on_message, self._notify, client_prefix="edgewatch-dashboard")
        self._skip_notes: dict[str, float] = {}

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        self.view.ingest(topic, payload, retained, time.time())

    def _notify(self, line: str) -> None:
        log.warning("%s", line)
        self.view.set_broker(self.sub.connected, self.sub.where, line, time.time())

    def _on_skip(self, topic: str, why: str) -> None:
        root = topic.split("/", 1)[0]
        now = time.monotonic()
        if now - self._skip_notes.get(root, -1e18) >= 10.0:  # one line per topic root per 10 s; all counted
            self._skip_notes[root] = now
            log.warning("skipped a message on %s: %s (%d skipped so far)", topic, why, self.view.skipped)

    def start(self) -> Dashboard:
        """Connect to the broker (raises WatchError on a failed first connect), then serve."""
        self.sub.start()
        self.view.set_broker(True, self.sub.where, "connected", time.time())
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()
        self.sub.close()


@click.command("dashboard")
@click.option("--broker", default=None, help="Broker URL (mqtt:// or mqtts://); overrides the config's.  "
              "[default: mqtt://127.0.0.1:1883]")
@click.option("--config", "config_file", type=click.Path(),
              help="Take broker, TLS, auth and topics from this config (the daemon's); flags override it.")
@daemon_prefix_option
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="HTTP port (0: any free one, printed).")
@click.option("--bind", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface; the page has no login).")
@click.option("--history", "history_s", type=click.FloatRange(10, 3600), default=300.0, show_default=True,
              help="Seconds of score history per device (stream time).")
def dashboard_command(broker: str | None, config_file: str | None, topic_prefix: str | None, port: int, bind: str,
                      history_s: float) -> None:
    """Serve a live, read-only web view of gateways, devices, scores and alerts (reads MQTT)."""
    from edge_runtime.cli import EXIT_UNAVAILABLE, config_from_flags, fail
    from edge_runtime.config import ConfigError

    logging.basicConfig(level=logging.WARNING, format="edgewatch dashboard: %(message)s", stream=sys.stderr)
    cfg = config_from_flags(config_file, {"broker": broker, "prefix": topic_prefix})
    try:
        dash = Dashboard(cfg, bind, port, history_s)
    except OSError as exc:
        fail(f"cannot listen on {bind}:{port}: {exc.strerror or exc}", EXIT_UNAVAILABLE)
    except ConfigError as exc:
        fail(str(exc), exc.exit_code)
    try:
        dash.start()
    except WatchError as exc:
        dash.server.httpd.server_close()
        fail(str(exc), exc.exit_code)
    click.echo(f"edgewatch dashboard: http://{bind}:{dash.server.port}/ (broker {dash.sub.where}; Ctrl-C stops)",
               err=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        while not stop.wait(0.5):
            pass
    dash.stop()
