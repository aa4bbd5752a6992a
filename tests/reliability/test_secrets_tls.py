"""Secrets and TLS with the daemon as a real process.

Credentials from a config file, the environment or a password file connect to a broker that
requires them, and the secret never shows in logs (at DEBUG), stats, status or ``--help``; a
world-readable file holding a secret gets a warning. Over TLS (the production listener of
deploy/mosquitto, certificates from tests/deploy) the daemon connects with good certificates
and is refused with a wrong CA or an expired client certificate: one clear log line, backoff,
no crash loop.
"""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_runtime.tools.localbroker import MosquittoBroker, free_port
from tests.deploy.prod_broker import make_password_file
from tests.deploy.test_mosquitto_tls import USERS, Pki, make_pki, start_tls_broker
from tests.edge_runtime.onnx_models import make_metadata, write_model
from tests.reliability.harness import ROOT, Client, DaemonProcess, wait_until

SECRET = "s3cr3t-Pa55-w0rd-7f1e"
MONITOR = ("monitor", "monitor-pw")


@pytest.fixture(scope="module")
def auth_broker(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("auth")
    pw = make_password_file(tmp / "passwd", {"edgewatch": SECRET, MONITOR[0]: MONITOR[1]})
    port = free_port()
    broker = MosquittoBroker(port=port, workdir=tmp / "broker", extra_config="user root",
                             listener_config=f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {pw}\n")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("model") / "m.onnx", make_metadata(window=8, hop=4))


def monitor(port: int, instance: str) -> Client:
    return Client(port, "monitor", (f"edgewatch/{instance}/#",), persistent=False, auth=MONITOR)


@pytest.mark.parametrize("source", ["config_file", "env", "password_file"])
def test_credentials_work_and_never_leak(source: str, auth_broker: MosquittoBroker, model: Path, tmp_path: Path,
                                         figure) -> None:
    instance = f"sec-{source.replace('_', '-')}"
    args = ["--model", str(model), "--broker", auth_broker.url, "--instance", instance, "--username", "edgewatch",
            "--stats-interval-s", "0.3", "--log-level", "DEBUG"]
    env = {}
    if source == "config_file":
        cfg = tmp_path / "edgewatch.toml"
        cfg.write_text(f'[mqtt]\npassword = "{SECRET}"\n')
        cfg.chmod(0o644)  # world-readable: warned about
        args += ["--config", str(cfg)]
    elif source == "env":
        env["EDGEWATCH_MQTT_PASSWORD"] = SECRET
    else:
        pw = tmp_path / "mqtt-password"
        pw.write_text(SECRET + "\n")
        pw.chmod(0o600)
        args += ["--password-file", str(pw)]
    col = monitor(auth_broker.port, instance)
    d = DaemonProcess(args, tmp_path / "daemon.log", env).start()
    try:
        wait_until(lambda: any(doc.get("state") == "online" for _, doc in col.docs(f"edgewatch/{instance}/status")), 20,
                   "online with credentials")
        wait_until(lambda: len(col.docs(f"edgewatch/{instance}/stats")) >= 2, 10, "stats")
    finally:
        assert d.stop() == 0
    col.close()
    log = d.log()
    payloads = b"".join(p for _, p, _, _ in col.messages).decode()
    helps = "".join(subprocess.run([sys.executable, "-m", "edge_runtime.cli", *c, "--help"], cwd=ROOT,
                                   capture_output=True, text=True, timeout=60).stdout for c in (["run"], ["alerts"]))
    assert "connected to" in log
    for where, text in (("log", log), ("stats/status payloads", payloads), ("--help", helps)):
        assert SECRET not in text, where
    assert "--password " not in helps  # no flag that would put it on a command line
    warned = "world-readable" in log
    assert warned == (source == "config_file"), log[-2000:]
    figure(f"secret_{source}", connected=True, secret_in_logs=0, secret_in_payloads=0, world_readable_warning=warned)


def test_wrong_password_refused_clearly_without_leaking(auth_broker: MosquittoBroker, model: Path, tmp_path: Path) -> None:
    wrong = "not-the-pw-9c2b"
    d = DaemonProcess(["--model", str(model), "--broker", auth_broker.url, "--instance", "sec-wrong", "--username",
                       "edgewatch", "--reconnect-min-s", "1", "--reconnect-max-s", "2", "--log-level", "DEBUG"],
                      tmp_path / "daemon.log", {"EDGEWATCH_MQTT_PASSWORD": wrong}).start()
    try:
        wait_until(lambda: "refused" in d.log(), 15, "a refusal log line")
        time.sleep(3.0)
        assert d.proc is not None and d.proc.poll() is None  # keeps trying, does not crash
    finally:
        d.stop()
    log = d.log()
    assert wrong not in log and SECRET not in log
    assert re.search(r"refused.*(not authori[sz]ed|bad user name or password)", log, re.I), log[-2000:]


# -- TLS ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def mtls_broker(tmp_path_factory: pytest.TempPathFactory, pki: Pki):
    broker = start_tls_broker(tmp_path_factory.mktemp("mtls"), pki, require_certificate=True)
    yield broker
    broker.stop()


def tls_daemon(broker: MosquittoBroker, model: Path, tmp_path: Path, ca: Path, cert: tuple[Path, Path], name: str):
    pw = tmp_path / f"{name}.pw"
    pw.write_text(USERS["edgewatch"])
    pw.chmod(0o600)
    args = ["--model", str(model), "--broker", f"mqtts://127.0.0.1:{broker.port}", "--instance", name,
            "--username", "edgewatch", "--password-file", str(pw), "--ca-file", str(ca), "--cert-file", str(cert[0]),
            "--key-file", str(cert[1]), "--reconnect-min-s", "1", "--reconnect-max-s", "2", "--log-interval-s", "1"]
    return DaemonProcess(args, tmp_path / f"{name}.log").start()


def test_tls_good_certificates_connect(mtls_broker: MosquittoBroker, pki: Pki, model: Path, tmp_path: Path, figure) -> None:
    d = tls_daemon(mtls_broker, model, tmp_path, pki.ca, pki.client, "tls-good")
    try:
        connect_s = wait_until(lambda: "connected to 127.0.0.1" in d.log(), 20, "TLS connect")
    finally:
        assert d.stop() == 0
    assert "TLS" in d.log()
    figure("tls_good_certificates", connected=True, connect_s=round(connect_s, 2))


def attempts_seen(broker: MosquittoBroker) -> int:
    """Connection attempts in the broker's log: accepted ones and those failed in the TLS handshake."""
    text = broker.log_text()
    return text.count("New connection from") + text.count("Client connection from")


def tls_failure_line(case: str) -> re.Pattern[str]:
    """The exact log line for a refused TLS connection, built from ``describe_connect_error`` itself.

    wrong CA: the client rejects the broker's certificate in the handshake. Expired client certificate:
    the broker rejects it; with TLS 1.2 the handshake fails (describe_connect_error's SSLError line),
    with TLS 1.3 the alert arrives after the client's handshake, as the close before CONNACK."""
    from edge_runtime.service.mqtt import describe_connect_error

    host = r"broker 127\.0\.0\.1:\d+"
    tail = r"; retrying with backoff$"
    if case == "wrong_ca":
        err = ssl.SSLCertVerificationError(1, "certificate verify failed")
        err.verify_message = "VERIFY"
        why = re.escape(describe_connect_error(err)).replace("VERIFY", r"self[- ]signed certificate in certificate chain")
        return re.compile(rf"WARNING +edge_runtime\.service\.mqtt: \[connect_failed\] cannot connect to {host}: {why}{tail}", re.M)
    err = ssl.SSLError(1, "alert")
    err.reason = "ALERT"
    expired = r"(?:SSLV3|TLSV1)_ALERT_CERTIFICATE_EXPIRED"
    handshake = re.escape(describe_connect_error(err)).replace("ALERT", expired)
    closed = (r"TLS: .*\[SSL: " + expired + r"\] .*certificate expired.*; check mqtt\.cert_file / key_file and "
              r"their validity")
    return re.compile(rf"WARNING +edge_runtime\.service\.mqtt: \[connect_failed\] (?:cannot connect to {host}: {handshake}|"
                      rf"connection to {host} closed before it was accepted: {closed}){tail}", re.M)


def test_tls_failure_lines_are_specific() -> None:
    """The patterns match only their own failure: not the start-up line, not a bare reset, not each other."""
    startup = "2026-01-01 00:00:00,000 INFO    edge_runtime.service.mqtt: connecting to 127.0.0.1:1 (TLS, MQTT 3.1.1)"
    reset = ("2026-01-01 00:00:00,000 WARNING edge_runtime.service.mqtt: [connect_failed] cannot connect to broker "
             "127.0.0.1:1: ConnectionResetError: [Errno 104] Connection reset by peer; retrying with backoff")
    for case in ("wrong_ca", "expired_client_cert"):
        assert not tls_failure_line(case).search(startup + "\n" + reset)


@pytest.mark.parametrize("case", ["wrong_ca", "expired_client_cert"])
def test_tls_refused_with_clear_log_and_backoff(case: str, mtls_broker: MosquittoBroker, pki: Pki,
                                                model: Path, tmp_path: Path, figure) -> None:
    ca, cert = (pki.other_ca, pki.client) if case == "wrong_ca" else (pki.ca, pki.expired_client)
    expect = tls_failure_line(case)
    before = attempts_seen(mtls_broker)
    d = tls_daemon(mtls_broker, model, tmp_path, ca, cert, f"tls-{case}")
    watch_s = 6.0
    try:
        wait_until(lambda: expect.search(d.log()) is not None, 15, f"the {case} TLS failure line")
        time.sleep(watch_s)
        assert d.proc is not None and d.proc.poll() is None  # still alive and retrying: no crash loop
        d.signal(signal.SIGTERM)
        assert d.wait(15) == 0
    finally:
        d.stop()
    attempts = attempts_seen(mtls_broker) - before
    log = d.log()
    assert "connected to 127.0.0.1" not in log
    assert expect.search(log), log[-2000:]
    other = tls_failure_line("expired_client_cert" if case == "wrong_ca" else "wrong_ca")
    assert not other.search(log), log[-2000:]  # the line names this failure, not the other one
    # backoff 1 s doubling to 2 s: a handful of attempts, not thousands
    assert 1 <= attempts <= 2 + watch_s + 8, attempts
    figure(f"tls_refused_{case}", connected=False, attempts_in_window=attempts, window_s=round(watch_s + 2, 1),
           log_line=True)


def test_world_readable_password_file_warned(tmp_path: Path) -> None:
    """The check itself, without a broker: pure function over the files named in the config."""
    from edge_runtime.config import build_config, secret_file_warnings

    pw = tmp_path / "pw"
    pw.write_text("x")
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text('[mqtt]\npassword = "x"\n')
    for mode, warned in ((0o600, False), (0o640, False), (0o644, True), (0o604, True)):
        pw.chmod(mode)
        cfg_file.chmod(mode)
        cfg = build_config(str(cfg_file), {"password_file": str(pw)})
        out = secret_file_warnings(cfg, str(cfg_file))
        assert bool(out) == warned and all("world-readable" in w for w in out)
    nosecret = tmp_path / "plain.toml"
    nosecret.write_text('[mqtt]\nusername = "u"\n')
    nosecret.chmod(0o644)
    assert secret_file_warnings(build_config(str(nosecret), {}), str(nosecret)) == []
    assert os.access(pw, os.R_OK)
