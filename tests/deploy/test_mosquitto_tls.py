"""The production TLS listener (deploy/mosquitto/mosquitto.conf, port 8883) with generated certificates.

A CA, a server certificate for 127.0.0.1 and client certificates (valid, expired, signed by a
foreign CA) are made with ``cryptography``; the broker runs the shipped listener settings with
the paths moved to tmp, once as shipped (``require_certificate true``) and once with it false.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge_runtime.tools.localbroker import MosquittoBroker
from tests.deploy.mqtt_probe import new_client, try_connect
from tests.deploy.prod_broker import PROD_ACL, PROD_CONF, free_port, make_password_file, production_broker

USERS = {"edgewatch": "daemon-secret", "pump1": "pump1-secret"}
NOW = dt.datetime.now(dt.timezone.utc)


@dataclass
class Pki:
    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path
    client: tuple[Path, Path]
    expired_client: tuple[Path, Path]
    foreign_client: tuple[Path, Path]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = path.with_suffix(".key")
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path.with_suffix(".crt"), key_path


def _ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    cn: str,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    server: bool,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(ca[1], hashes.SHA256()), key


def make_pki(d: Path) -> Pki:
    ca, other = _ca("edgewatch test CA"), _ca("some other CA")
    valid = (NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=30))
    expired = (NOW - dt.timedelta(days=30), NOW - dt.timedelta(days=1))
    server = _write(d / "server", *_leaf("localhost", ca, True, *valid))
    return Pki(
        ca=_write(d / "ca", *ca)[0],
        other_ca=_write(d / "other-ca", *other)[0],
        server_cert=server[0],
        server_key=server[1],
        client=_write(d / "pump1", *_leaf("pump1", ca, False, *valid)),
        expired_client=_write(d / "pump1-expired", *_leaf("pump1", ca, False, *expired)),
        foreign_client=_write(d / "pump1-foreign", *_leaf("pump1", other, False, *valid)),
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def start_tls_broker(tmp: Path, pki: Pki, require_certificate: bool) -> MosquittoBroker:
    port = free_port()
    files = {
        "cafile": pki.ca,
        "certfile": pki.server_cert,
        "keyfile": pki.server_key,
        "password_file": make_password_file(tmp / "passwd", USERS),
        "acl_file": PROD_ACL,
    }
    broker = production_broker(tmp / "broker", {8883: port}, files, wait_port=8883)
    conf = broker.conf_path.read_text()
    assert "require_certificate true" in conf  # as shipped
    if not require_certificate:
        broker.conf_path.write_text(conf.replace("require_certificate true", "require_certificate false"))
    return broker.start()


@pytest.fixture(scope="module")
def mtls(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[MosquittoBroker]:
    broker = start_tls_broker(tmp_path_factory.mktemp("mtls"), pki, require_certificate=True)
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def tls_port(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[int]:
    broker = start_tls_broker(tmp_path_factory.mktemp("tls"), pki, require_certificate=False)
    yield broker.port
    broker.stop()


def attempt(port: int, ca: Path | None, cert: tuple[Path, Path] | None, password: str = USERS["pump1"]):
    client = new_client("pump1", password, mqtt.MQTTv311)
    if ca is not None:
        client.tls_set(
            ca_certs=str(ca),
            certfile=str(cert[0]) if cert else None,
            keyfile=str(cert[1]) if cert else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    outcome = try_connect(client, port)
    client.disconnect()
    return outcome


def test_shipped_listener_is_tls_with_client_certificates() -> None:
    text = PROD_CONF.read_text()
    block = text[text.index("listener 8883") :]
    for line in (
        "cafile ",
        "certfile ",
        "keyfile ",
        "require_certificate true",
        "allow_anonymous false",
        "password_file ",
        "acl_file ",
    ):
        assert f"\n{line}" in block, line


def test_mtls_good_ca_and_client_certificate_connect(mtls: MosquittoBroker, pki: Pki) -> None:
    outcome = attempt(mtls.port, pki.ca, pki.client)
    assert outcome.connected, outcome.reason


@pytest.mark.parametrize(
    "case",
    [
        "no-client-cert",
        "expired-client-cert",
        "client-cert-from-other-ca",
        "wrong-ca",
        "plain-mqtt",
        "good-cert-wrong-password",
    ],
)
def test_mtls_refuses(mtls: MosquittoBroker, pki: Pki, case: str) -> None:
    """Each case differs from the connecting one above in one thing only."""
    args = {
        "no-client-cert": (pki.ca, None),
        "expired-client-cert": (pki.ca, pki.expired_client),
        "client-cert-from-other-ca": (pki.ca, pki.foreign_client),
        "wrong-ca": (pki.other_ca, pki.client),
        "plain-mqtt": (None, None),
        "good-cert-wrong-password": (pki.ca, pki.client),
    }[case]
    password = "wrong" if case == "good-cert-wrong-password" else USERS["pump1"]
    broker_error = (
        "peer did not return a certificate" if case == "no-client-cert" else "certificate verify failed"
    )
    log_before = mtls.log_text().count(broker_error)
    outcome = attempt(mtls.port, *args, password=password)
    assert not outcome.connected, outcome.reason
    if case == "wrong-ca":  # the client refuses the server
        assert "CERTIFICATE_VERIFY_FAILED" in outcome.reason
    elif case.endswith("cert"):  # the broker refuses the client in the handshake
        # The broker may write its log line a moment after the client saw the refusal.
        deadline = time.monotonic() + 5.0
        while mtls.log_text().count(broker_error) <= log_before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert mtls.log_text().count(broker_error) > log_before, mtls.log_text()[-1500:]
    elif case == "good-cert-wrong-password":  # the certificate does not replace the password
        assert outcome.reason == "Not authorized"


def test_tls_without_client_certificate_when_not_required(tls_port: int, pki: Pki) -> None:
    assert attempt(tls_port, pki.ca, None).connected
    assert not attempt(tls_port, pki.other_ca, None).connected
