"""edge_runtime.service.mqtt: the broker URL, the one client factory, connect()'s one-line errors, and the
refusal of ``user:pass@`` in every command that takes a broker URL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from click.testing import CliRunner

from edge_runtime.cli import main
from edge_runtime.config import ConfigError, build_config
from edge_runtime.service.mqtt import (
    BrokerAddress,
    BrokerUrlError,
    ClientOptions,
    MqttConnectError,
    client_options,
    connect,
    make_client,
    parse_broker_url,
)
from edge_runtime.service.paho_buffered import BufferedClient
from edge_runtime.tools.localbroker import free_port


@pytest.mark.parametrize(
    ("url", "host", "port", "tls"),
    [("mqtt://127.0.0.1:1884", "127.0.0.1", 1884, False), ("mqtts://broker", "broker", 8883, True),
     ("mqtt://broker", "broker", 1883, False), ("localhost", "localhost", 1883, False),
     ("10.0.0.2:1999", "10.0.0.2", 1999, False), ("mqtts://[::1]:8884", "::1", 8884, True)],
)
def test_parse_broker_url(url: str, host: str, port: int, tls: bool) -> None:
    assert parse_broker_url(url) == BrokerAddress(host, port, tls)


@pytest.mark.parametrize(("url", "why"), [
    ("http://x:1", "scheme"), ("tcp://x", "scheme"), ("mqtt://", "no host"), ("mqtt://x:99999", "out of range"),
    ("mqtt://x:port", "port"), ("mqtt://user:pw@x:1883", "credentials"), ("mqtts://user@x", "credentials"),
])
def test_parse_broker_url_refuses(url: str, why: str) -> None:
    with pytest.raises(BrokerUrlError, match=why):
        parse_broker_url(url)
    assert issubclass(BrokerUrlError, ConfigError)  # the daemon reports it as a configuration error


def test_factory_builds_the_buffered_client_or_paho_stock() -> None:
    addr = BrokerAddress("127.0.0.1", 1883, False)
    assert isinstance(make_client(addr, ClientOptions()), BufferedClient)
    stock = make_client(addr, ClientOptions(buffered=False))
    assert type(stock) is paho.Client


def test_factory_applies_session_protocol_and_bounds() -> None:
    addr = BrokerAddress("127.0.0.1", 1883, False)
    c = make_client(addr, ClientOptions(client_id="gw", persistent=True, max_queued=7, max_inflight=3))
    assert c._client_id == b"gw" and c._clean_session is False  # paho keeps these private
    assert c._max_queued_messages == 7 and c._max_inflight_messages == 3
    v5 = make_client(addr, ClientOptions(protocol="5"))
    assert v5.protocol == paho.MQTTv5
    assert make_client(addr, ClientOptions(persistent=False))._clean_session is True


def test_factory_tls_needs_readable_ca_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot load TLS files"):
        make_client(BrokerAddress("h", 8883, True), ClientOptions(ca_file=str(tmp_path / "missing.pem")))
    assert make_client(BrokerAddress("h", 8883, True), ClientOptions())._ssl  # system CAs


def test_client_options_from_the_daemon_config(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    cfg = build_config(None, {"username": "edge", "password_file": str(pw), "protocol": "5", "max_outgoing": 9})
    o = client_options(cfg, "id-1", persistent=True)
    assert (o.client_id, o.persistent, o.protocol, o.username, o.password, o.max_queued) == \
        ("id-1", True, "5", "edge", "s3cret", 9)
    assert "s3cret" not in repr(o)


def test_connect_to_a_dead_port_is_one_line() -> None:
    port = free_port()
    with pytest.raises(MqttConnectError, match=f"cannot connect to broker 127.0.0.1:{port}: connection refused: is a broker "
                       "listening there"):
        connect(BrokerAddress("127.0.0.1", port, False), ClientOptions(), timeout=5)


def test_connect_refused_login_and_success(mosquitto_factory, mosquitto) -> None:
    port = free_port()
    closed = mosquitto_factory(port=port, listener_config=f"listener {port} 127.0.0.1\nallow_anonymous false\n")
    closed.start()
    with pytest.raises(MqttConnectError, match=f"broker 127.0.0.1:{port} refused the connection"):
        connect(parse_broker_url(closed.url), ClientOptions(), timeout=5)
    seen: list[str] = []
    c = make_client(parse_broker_url(mosquitto.url), ClientOptions())
    c.on_connect = lambda cl, u, f, rc, p: seen.append(str(rc))  # the caller's callback still runs
    connected = connect(parse_broker_url(mosquitto.url), ClientOptions(), timeout=5, client=c)
    try:
        assert connected is c and c.is_connected() and seen == ["Success"]
    finally:
        c.disconnect()
        c.loop_stop()


CREDENTIALS_URL = "mqtt://user:secret@127.0.0.1:1883"


@pytest.mark.parametrize("args", [
    ["alerts", "--broker", CREDENTIALS_URL, "--timeout", "1"],
    ["simulate", "--broker", CREDENTIALS_URL, "--duration", "1"],
    ["replay", "REC", "--device", "d", "--broker", CREDENTIALS_URL],
])
def test_every_command_refuses_credentials_in_the_url(args: list[str], tmp_path: Path) -> None:
    """The same refusal everywhere: one line, exit 2, the password not echoed."""
    rec = tmp_path / "r.csv"
    rec.write_text("ts,x\n1,1\n2,2\n")
    res = CliRunner().invoke(main, [str(rec) if a == "REC" else a for a in args])
    assert res.exit_code != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "credentials" in lines[0] and "secret" not in res.output, res.output


def test_the_daemon_refuses_credentials_in_the_url(tmp_path: Path) -> None:
    from tests.edge_runtime.onnx_models import write_model

    model = write_model(tmp_path / "m.onnx")
    out = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "run", "--model", str(model), "--broker",
                          CREDENTIALS_URL], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "credentials" in out.stderr and "secret" not in out.stderr and "Traceback" not in out.stderr


DYNSEC = Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")


def test_a_subscription_the_broker_refuses_is_said_and_counted(mosquitto_factory, demo_model_path, tmp_path,
                                                                caplog) -> None:
    """A broker user without read on an input topic: Mosquitto's dynamic security refuses that subscription (0x87;
    nothing ever comes there, which would look like quiet devices); the daemon says which, at ERROR, and counts
    it. (Mosquitto's acl_file grants such a subscription and filters at delivery: no refusal to see.)"""
    import json
    import logging
    import shutil

    from tests.edge_runtime.mqtt_helpers import running_daemon, wait_until

    if not DYNSEC.exists() or shutil.which("mosquitto_ctrl") is None:
        pytest.skip("no Mosquitto dynamic security plugin or mosquitto_ctrl here")
    conf = tmp_path / "dynsec.json"
    subprocess.run(["mosquitto_ctrl", "dynsec", "init", str(conf), "gw", "gw-secret"], check=True,
                   capture_output=True)
    doc = json.loads(conf.read_text())
    doc["roles"][0]["acls"].append({"acltype": "subscribePattern", "topic": "plant/#", "allow": False,
                                    "priority": 10})
    conf.write_text(json.dumps(doc))
    broker = mosquitto_factory(listener_config=None, extra_config=f"plugin {DYNSEC}\nplugin_opt_config_file {conf}")
    broker.start()
    (tmp_path / "pw").write_text("gw-secret\n")
    with caplog.at_level(logging.ERROR), running_daemon(broker.url, demo_model_path, username="gw",
                                                         password_file=str(tmp_path / "pw"),
                                                         topics=["sensors/{device}/data", "plant/{device}/data"]) as d:
        wait_until(lambda: d.stats.counts["subscriptions_refused"] == 1, 10, "the refusal counted")
    lines = [r.getMessage() for r in caplog.records if "refused the subscription" in r.getMessage()]
    assert lines and "plant/+/data" in lines[0] and "sensors/+/data" not in lines[0]
