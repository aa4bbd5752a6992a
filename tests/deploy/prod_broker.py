"""Start the production Mosquitto config from deploy/mosquitto with its paths moved to a temp folder.

The production file is used as shipped except for what cannot work in a test: listener ports
(free loopback ports instead of 1883/8883), file paths (password, ACL, certificates,
persistence) and the log destination. Every path directive of a kept listener must be given a
replacement, so a new path added to the production file breaks the tests instead of pointing
at /etc.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edge_runtime.tools.localbroker import MosquittoBroker, free_port

ROOT = Path(__file__).resolve().parents[2]
MOSQUITTO_DIR = ROOT / "deploy" / "mosquitto"
PROD_CONF = MOSQUITTO_DIR / "mosquitto.conf"
PROD_ACL = MOSQUITTO_DIR / "acl"

PATH_KEYS = {"password_file", "acl_file", "cafile", "capath", "certfile", "keyfile", "crlfile"}
# Options that belong to the listener above them (per_listener_settings true).
LISTENER_KEYS = PATH_KEYS | {
    "protocol",
    "tls_version",
    "require_certificate",
    "use_identity_as_username",
    "use_subject_as_username",
    "allow_anonymous",
    "max_connections",
    "allow_zero_length_clientid",
    "ciphers",
    "ciphers_tls1.3",
    "mount_point",
    "socket_domain",
    "bind_interface",
}


def derive_config(text: str, ports: dict[int, int], files: dict[str, Path], workdir: Path) -> str:
    """Production config text -> test config text.

    ``ports`` maps production listener ports to test ports; listeners not in it are dropped
    with their options. ``files`` maps path directives to test paths.
    """
    out: list[str] = []
    keep = True
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        if key == "listener":
            port = int(value.split()[0])
            keep = port in ports
            if keep:
                out.append(f"listener {ports[port]} 127.0.0.1")
            continue
        if key in LISTENER_KEYS:
            if not keep:
                continue
        else:
            keep = True  # a global option ends the listener block
        if key in PATH_KEYS:
            if key not in files:
                raise KeyError(f"production config names {key} {value}: the test must rewrite it")
            line = f"{key} {files[key]}"
        elif key == "persistence_location":
            line = f"persistence_location {workdir}/"
        elif key == "log_dest":
            continue
        out.append(line)
    out.append(f"log_dest file {workdir / 'mosquitto.log'}")
    # Run as the current user: as root, Mosquitto would switch to `mosquitto`, which cannot read
    # pytest's private temp folders.
    out.append("user root")
    return "\n".join(out) + "\n"


def make_password_file(path: Path, users: dict[str, str]) -> Path:
    """Write a Mosquitto 2.0 password file (PBKDF2-SHA512 hashes) with the real mosquitto_passwd."""
    path.unlink(missing_ok=True)
    for i, (user, password) in enumerate(users.items()):
        args = ["mosquitto_passwd", "-b"] + (["-c"] if i == 0 else []) + [str(path), user, password]
        subprocess.run(args, check=True, capture_output=True, timeout=30)
    return path


def production_broker(
    workdir: Path, ports: dict[int, int], files: dict[str, Path], wait_port: int
) -> MosquittoBroker:
    """A MosquittoBroker (not started) running the derived production config; ``wait_port`` is
    the production port whose test port start() waits for."""
    workdir.mkdir(parents=True, exist_ok=True)
    broker = MosquittoBroker(port=ports[wait_port], workdir=workdir)
    broker.conf_path.write_text(derive_config(PROD_CONF.read_text(), ports, files, workdir))
    return broker


@contextmanager
def kit_broker(tmp: Path, users: dict[str, str], acl_extra: str = "") -> Iterator[int]:
    """The production config on a free loopback port with the shipped ACL (plus ``acl_extra``) and a password
    file of ``users``, started; yields the port, stops the broker after."""
    acl = tmp / "acl"
    acl.write_text(PROD_ACL.read_text() + acl_extra)
    files = {"password_file": make_password_file(tmp / "passwd", users), "acl_file": acl}
    port = free_port()
    broker = production_broker(tmp / "broker", {1883: port}, files, wait_port=1883)
    broker.start()
    try:
        yield port
    finally:
        broker.stop()


__all__ = ["kit_broker", "PROD_ACL", "PROD_CONF", "derive_config", "free_port", "make_password_file", "production_broker"]
