"""Starting a private ``mosquitto`` on a free loopback port: shared by the demo, the benchmarks and the tests.

Pure process plumbing (find the binary, pick a port, wait until it listens, stop it); each user
writes the broker configuration it needs.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time


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
