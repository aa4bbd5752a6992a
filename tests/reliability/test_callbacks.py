"""Issue 20 item 1: no exception in a paho callback ends the network thread; a malformed retained state is
refused and counted; a daemon whose network thread is gone stops with a failure (the CLI exits 70).

Real Mosquitto, an in-process daemon, a really exported ONNX file."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from edge_runtime.service.paho_buffered import network_thread_alive
from tests.edge_runtime.mqtt_helpers import Publisher, running_daemon, wait_until
from tests.edge_runtime.onnx_models import make_metadata, series, write_model

W, HOP = 16, 4
MALFORMED_STATES = [
    b'{"device":"x","seq":1e999}',  # int(inf): OverflowError
    b"[" * 100_000,  # RecursionError in the JSON parser
    b'{"device":"x","seq":1e999,"state":"raised","instance":"test"}',
    b'{"device":["x"],"seq":1,"state":"raised","instance":"test"}',  # wrong types
    b'{"device":"x","seq":"7","state":"raised","instance":"test"}',
    b'{"device":"x","seq":true,"state":"raised","instance":"test"}',
    b"\xff\xfe not utf-8",
]


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return write_model(tmp_path / "m.onnx", make_metadata(window=W, hop=HOP, threshold=0.5))


def test_malformed_retained_states_are_refused_and_the_daemon_keeps_reading(mosquitto, model: Path) -> None:
    pub = Publisher(mosquitto.port)
    infos = [pub.client.publish(f"alerts/x{i}/state", payload, qos=1, retain=True)  # one retained message a topic
             for i, payload in enumerate(MALFORMED_STATES)]
    for info in infos:  # on the broker before the daemon subscribes (pub.flush waits only for pub.send's)
        info.wait_for_publish(10)
        assert info.is_published()
    with running_daemon(mosquitto.url, model, log_interval_s=3600.0) as d:
        wait_until(lambda: d.stats.drops["bad_state"] >= len(MALFORMED_STATES), 30, "states refused")
        x = series(40, seed=3)
        for i in range(40):
            pub.send("sensors/dev1/data", json.dumps({"ts": 1_700_000_000 + i, "values": x[i].tolist()}))
        pub.flush()
        wait_until(lambda: d.stats.counts["samples"] >= 40, 10, "samples read after the malformed states")
        assert network_thread_alive(d.link.client)
        assert d.stats.drops["bad_state"] == len(MALFORMED_STATES)
        assert d.tracker.devices.keys() <= {"dev1"}  # nothing adopted from the malformed documents
        assert d.failure == ""
    pub.close()


def test_an_exception_in_any_callback_is_counted_and_the_thread_lives_on(mosquitto, model: Path) -> None:
    with running_daemon(mosquitto.url, model, log_interval_s=3600.0) as d:
        link = d.link

        def boom(*args: object) -> None:
            raise OverflowError("injected")

        link._on_connected = boom  # runs inside on_connect
        # The connection drops under paho's own thread, which reconnects by itself: on_disconnect, then on_connect ->
        # boom. (A disconnect() and reconnect() from this thread raced paho's thread: a timeout once in a loaded CI.)
        sock = link.client.socket()
        assert sock is not None
        sock.shutdown(socket.SHUT_RDWR)
        wait_until(lambda: d.stats.drops["internal_error"] >= 1, 30, "callback error counted")
        assert network_thread_alive(link.client)
        wait_until(link.connected.is_set, 10, "connected again")
        pub = Publisher(mosquitto.port)
        pub.send("sensors/dev2/data", "1,2,3,4")
        pub.close()
        wait_until(lambda: d.stats.counts["samples"] >= 1, 10, "a sample after the callback error")


def test_a_daemon_whose_network_thread_is_gone_stops_with_a_failure(mosquitto, model: Path) -> None:
    with running_daemon(mosquitto.url, model) as d:
        d.link.client.loop_stop()  # the network thread ends, as an escaped exception would end it
        assert d.wait(5.0), "the daemon noticed that its network thread is gone"
        assert "network thread" in d.failure
        assert d.stats_doc()["connected"] is False


def test_edgewatch_run_exits_70_when_the_network_thread_is_gone(mosquitto, model: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from edge_runtime.cli import EXIT_SOFTWARE, main
    from edge_runtime.service.daemon import Daemon

    start = Daemon.start

    def start_then_lose_the_thread(self: Daemon) -> Daemon:
        start(self)
        wait_until(self.link.connected.is_set, 10, "connected")
        self.link.client.loop_stop()  # as an exception escaping a callback would end it
        return self

    monkeypatch.setattr(Daemon, "start", start_then_lose_the_thread)
    res = CliRunner().invoke(main, ["run", "--model", str(model), "--broker", mosquitto.url, "--instance", "z",
                                    "--stats-interval-s", "0"])
    assert res.exit_code == EXIT_SOFTWARE == 70, res.output
    assert "network thread" in res.output
