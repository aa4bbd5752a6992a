"""A real Mosquitto broker process on a free loopback port, for tests.

Used by the ``mosquitto`` fixture in ``conftest.py`` and by anything that needs
a private broker with its own configuration (auth, TLS, ACL, persistence,
restarts). Never touches the system broker on 1883.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from edge_runtime.localbroker import free_port, mosquitto_binary, terminate, wait_port

__all__ = ["MosquittoBroker", "free_port"]


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
        binary = mosquitto_binary()
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
        if not wait_port(self.host, self.port, timeout, self.proc):
            self.stop()
            raise RuntimeError(f"mosquitto did not start: {self.log_text()[-2000:]}")
        return self

    def stop(self) -> None:
        terminate(self.proc)
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
