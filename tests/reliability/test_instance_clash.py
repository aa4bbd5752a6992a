"""Issue 20 item 9: two daemons with the same instance name (gateways cloned from one image share the host
name, the default) flapped and split the data without a word. The retained status now names its owner
(host:pid:run); a daemon that sees an ``online`` status of its instance from another owner, published after
it started, warns loudly: an ERROR line (rate-limited) and the ``instance_conflicts`` counter in its stats.
It does not refuse to run (a fleet cloned by mistake would otherwise go dark at once).

Real Mosquitto, two in-process daemons, a really exported ONNX file."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edge_runtime.service.daemon import Daemon
from tests.edge_runtime.mqtt_helpers import daemon_config, running_daemon, wait_until
from tests.edge_runtime.onnx_models import make_metadata, write_model


def test_a_second_daemon_with_the_same_instance_name_is_reported(mosquitto, tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    model = write_model(tmp_path / "m.onnx", make_metadata(window=16, hop=4))
    caplog.set_level(logging.ERROR)
    with running_daemon(mosquitto.url, model, instance="clone") as first:
        second = Daemon(daemon_config(mosquitto.url, model, instance="clone")).start()
        try:
            wait_until(lambda: first.stats.counts["instance_conflicts"] + second.stats.counts["instance_conflicts"] > 0,
                       15, "the clash noticed")
        finally:
            second.stop()
        assert first.owner != second.owner
    assert any("same instance name" in r.getMessage() for r in caplog.records)


def test_one_daemon_restarting_is_not_a_clash(mosquitto, tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.onnx", make_metadata(window=16, hop=4))
    with running_daemon(mosquitto.url, model, instance="solo"):
        pass
    with running_daemon(mosquitto.url, model, instance="solo") as again:  # the first run's status is retained
        wait_until(lambda: again.link.connected.is_set(), 5, "connected")
        import time

        time.sleep(1.0)
        assert again.stats.counts["instance_conflicts"] == 0
