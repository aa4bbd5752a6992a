"""``input.source`` and ``[nats]``: validation, and the ``edgewatch group`` command's errors (no server needed)."""

from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner

import edge_runtime.cli as cli
from edge_runtime.config import ConfigError, build_config
from edge_runtime.integrations.nats.link import connect_options, worker_name
from edge_runtime.tools.localbroker import free_port


def test_mqtt_stays_the_default_source() -> None:
    assert build_config().source == "mqtt"


def test_server_urls_as_source_mean_nats_with_those_servers() -> None:
    cfg = build_config(overrides={"source": "nats://a:4222,tls://b:4222"})
    assert (cfg.source, cfg.servers) == ("nats", "nats://a:4222,tls://b:4222")


@pytest.mark.parametrize("over,msg", [
    ({"source": "kafka"}, "input.source"),
    ({"source": "nats", "batching": "fill"}, "inference.batching"),
    ({"source": "nats", "topics": ["a/{device}", "b/{device}"]}, "input.topics"),
    ({"source": "nats", "group": "a.b"}, "nats.group"),
    ({"source": "nats", "servers": "mqtt://x:1883"}, "nats.servers"),
    ({"nats_cert_file": "c.pem"}, "nats.nats_cert_file"),
])
def test_bad_nats_settings_name_the_key(over: dict, msg: str) -> None:
    with pytest.raises(ConfigError, match=msg):
        build_config(overrides=over)


def test_worker_name_and_credentials(tmp_path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\nignored\n")
    cfg = build_config(overrides={"source": "nats", "worker": "host 1/a", "nats_user": "worker",
                                  "nats_password_file": str(pw)})
    assert worker_name(cfg) == "host_1_a"
    opts = connect_options(cfg, "w")
    assert (opts["user"], opts["password"], opts["servers"]) == ("worker", "s3cret", ["nats://127.0.0.1:4222"])
    missing = build_config(overrides={"source": "nats", "token_file": str(tmp_path / "none")})
    with pytest.raises(ConfigError, match="nats.token_file"):
        connect_options(missing, "w")


def test_group_command_errors_are_one_line(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    res = CliRunner().invoke(cli.main, ["group", "status", "g", "--servers", f"nats://127.0.0.1:{port}"],
                             env={"EDGEWATCH_CONFIG": ""})
    assert res.exit_code == 69  # EX_UNAVAILABLE: no server
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgewatch group: error: cannot connect to NATS"), res.output
    # nats-py's own error callback would log the refused connection with a traceback on stderr
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.records
    bad = CliRunner().invoke(cli.main, ["group", "create", "a b", "--servers", f"nats://127.0.0.1:{port}"],
                             env={"EDGEWATCH_CONFIG": ""})
    assert bad.exit_code == 2 and "letters, digits" in bad.output


def test_a_worker_stopped_while_no_server_answers_ends_its_link_thread(tmp_path) -> None:
    """nats-py retries a first connect for ever; stop() must still end the link's thread (at once after start,
    before its loop exists, and while it is retrying), or it keeps retrying and logging for the process's life."""
    import time

    from edge_runtime.service.daemon import Daemon
    from tests.edge_runtime.onnx_models import make_metadata, write_model

    model = write_model(tmp_path / "m.onnx", make_metadata(window=4, hop=1, threshold=0.5))
    for pause in (0.0, 0.0, 0.3, 1.2):
        cfg = build_config(overrides=dict(path=str(model), source=f"nats://127.0.0.1:{free_port()}", group="g",
                                          worker="w"))
        d = Daemon(cfg).start()
        time.sleep(pause)
        d.stop()
        link = d.link._thread  # type: ignore[attr-defined]
        assert link is not None and not link.is_alive(), f"link thread alive {pause} s after start"
