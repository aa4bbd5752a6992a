"""A real Mosquitto broker process on a free loopback port, for tests.

Used by the ``mosquitto`` fixture in ``conftest.py`` and by anything that needs
a private broker with its own configuration (auth, TLS, ACL, persistence,
restarts). Never touches the system broker on 1883.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


class MosquittoBroker:
    """One ``mosquitto`` process with a generated config file.

    ``extra_config`` lines are appended to the config (e.g. ``password_file``,
    ``acl_file``, extra ``listener`` blocks). With ``persistence=True`` the
    broker keeps sessions and queued QoS 1 messages across :meth:`restart`.
    The default listener allows anonymous clients unless ``extra_config``
    says otherwise via ``allow_anonymous false``.
    """

    def __init__(
        self,
        port: int | None = None,
        extra_config: str = "",
        persistence: bool = False,
        workdir: Path | None = None,
        max_queued_messages: int = 100000,
        listener_config: str | None = None,
    ) -> None:
        binary = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
        )
        if binary is None:
            raise RuntimeError(
                "the mosquitto binary is not installed: run scripts/setup.sh (it installs it) "
                "or `apt-get install -y mosquitto`"
            )
        self.binary = binary
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="edgewatch-mosq-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.persistence = persistence
        self.log_path = self.workdir / "mosquitto.log"
        self.conf_path = self.workdir / "mosquitto.conf"
        listener = listener_config if listener_config is not None else (
            f"listener {self.port} {self.host}\nallow_anonymous true\n"
        )
        lines = [
            # As root, mosquitto drops to the `mosquitto` user and then cannot write its log or
            # persistence file in pytest's 0700 temp folders: stay root (tests only).
            "user root" if os.geteuid() == 0 and "user " not in extra_config else "",
            "per_listener_settings false",
            listener.rstrip("\n"),
            f"max_queued_messages {max_queued_messages}",
            "max_inflight_messages 100",
            "sys_interval 1",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if persistence:
            lines += ["persistence true", f"persistence_location {self.workdir}/", "autosave_interval 1"]
        lines.append(extra_config)
        self.conf_path.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> MosquittoBroker:
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_port(self.host, self.port, timeout)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"mosquitto did not start: {self.log_text()[-2000:]}") from None
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        if down_s:
            time.sleep(down_s)
        self.start()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
