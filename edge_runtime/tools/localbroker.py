"""A private ``mosquitto`` on a free loopback port: the one starter used by the demo, the lab and the tests.

:class:`MosquittoBroker` writes a config (listener, queue bound, log, optional persistence and extra lines),
starts the process, waits until it listens and stops it; it never touches the system broker on 1883.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

VERBOSE_LOG = ("error", "warning", "notice", "information")


class BrokerError(RuntimeError):
    """Mosquitto is not installed or did not start."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    """True once something accepts TCP connections on ``host:port``; False after ``timeout`` s or if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def mosquitto_binary() -> str | None:
    """The ``mosquitto`` broker binary, if installed (PATH, or /usr/sbin where Debian puts it)."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


def terminate(proc: subprocess.Popen | None, timeout: float = 10.0) -> int | None:
    """SIGTERM ``proc``, SIGKILL it after ``timeout`` s; its exit code (None when there was none)."""
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    proc.terminate()
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


class MosquittoBroker:
    """One ``mosquitto`` process with a generated config file (``workdir/mosquitto.conf``).

    ``extra_config`` lines are appended (``password_file``, ``acl_file``, more ``listener`` blocks, tuning);
    ``listener_config`` replaces the default anonymous loopback listener. With ``persistence=True`` the broker
    keeps sessions and queued QoS 1 messages across :meth:`restart`. ``log_types`` and
    ``connection_messages``: what the log (``log_path``) records; a benchmark keeps it to errors.
    """

    def __init__(
        self,
        port: int | None = None,
        extra_config: str = "",
        persistence: bool = False,
        workdir: Path | None = None,
        max_queued_messages: int = 100000,
        listener_config: str | None = None,
        log_types: tuple[str, ...] = VERBOSE_LOG,
        connection_messages: bool = True,
        log_path: Path | None = None,
    ) -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise BrokerError("the mosquitto binary is not installed: run scripts/setup.sh (it installs it) "
                              "or `apt-get install -y mosquitto`")
        self.binary = binary
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="edgewatch-mosq-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.persistence = persistence
        self.log_path = log_path or self.workdir / "mosquitto.log"
        self.conf_path = self.workdir / "mosquitto.conf"
        listener = listener_config if listener_config is not None else (
            f"listener {self.port} {self.host}\nallow_anonymous true\n"
        )
        lines = [
            # As root, mosquitto drops to the `mosquitto` user and then cannot write its log or
            # persistence file in 0700 temp folders: stay root (a private broker only).
            "user root" if os.geteuid() == 0 and "user " not in extra_config else "",
            "per_listener_settings false",
            listener.rstrip("\n"),
            f"max_queued_messages {max_queued_messages}",
            "max_inflight_messages 100",
            "sys_interval 1",
            f"log_dest file {self.log_path}",
            *(f"log_type {t}" for t in log_types),
            f"connection_messages {'true' if connection_messages else 'false'}",
        ]
        if persistence:
            lines += ["persistence true", f"persistence_location {self.workdir}/", "autosave_interval 1"]
        lines.append(extra_config)
        self.conf_path.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0, detach: bool = False) -> MosquittoBroker:
        """Start and wait until it listens; ``detach``: its own session (outlives this process's Ctrl-C)."""
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf_path)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=detach)
        if not wait_port(self.host, self.port, timeout, self.proc):
            self.stop()
            raise BrokerError(f"mosquitto did not start on {self.host}:{self.port}: {self.log_text()[-2000:]}")
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
