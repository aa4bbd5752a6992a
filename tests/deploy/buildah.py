"""Build and run the container images with Debian's buildah (``--isolation chroot``), for the opt-in
``container`` tests. Needs root; installs buildah/debootstrap with apt-get when they are missing.

The base image is made once by ``deploy/container/make-base.sh`` (debootstrap, cached under
``/var/cache/edgewatch-test``) because no public registry is reachable here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
BASE_TAG = "localhost/edgewatch-base:bookworm"
TOOLS = {"buildah": "buildah", "debootstrap": "debootstrap"}


def need_root_tools(tools: dict[str, str]) -> None:
    """``{binary: Debian package}``: install the missing ones with apt-get, or fail saying what is missing."""
    missing = [pkg for binary, pkg in tools.items() if shutil.which(binary) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail(f"needs root and apt-get to install {missing} (or install them first)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env, capture_output=True)


def ensure_base(tag: str = BASE_TAG, arch: str = "amd64") -> str:
    """The local bookworm + python3 base image (built on first use, then cached)."""
    need_root_tools(TOOLS)
    run([str(ROOT / "deploy" / "container" / "make-base.sh"), tag, arch], timeout=1800)
    return tag


def run(cmd: list[str], timeout: float = 1200, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``cmd``; on failure raise with the tail of its output."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd[:4])} ... exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-4000:]}")
    return proc


@dataclass
class Built:
    """A built image: its tag, build time (s), size (MB) and the build output."""

    tag: str
    seconds: float
    size_mb: float
    log: str


def build(dockerfile: str, tag: str, build_args: dict[str, str], timeout: float = 1800) -> Built:
    """``buildah build --isolation chroot`` of ``deploy/container/<dockerfile>`` with the repository as context."""
    args = [a for k, v in build_args.items() for a in ("--build-arg", f"{k}={v}")]
    run(["buildah", "rmi", "--force", tag], check=False)  # a rebuild leaves no untagged image behind
    t0 = time.monotonic()
    proc = run(["buildah", "build", "--isolation", "chroot", "--layers=false", *args,
                "-f", str(ROOT / "deploy" / "container" / dockerfile), "-t", tag, str(ROOT)], timeout=timeout)
    seconds = time.monotonic() - t0
    return Built(tag, seconds, image_size_mb(tag), proc.stdout + proc.stderr)


_UNITS = {"B": 1e-6, "kB": 1e-3, "KB": 1e-3, "MB": 1.0, "GB": 1e3, "TB": 1e6}


def image_size_mb(tag: str) -> float:
    """The image's unpacked size as ``buildah images`` reports it (``"336 MB"``, decimal units), in MB."""
    number, unit = json.loads(run(["buildah", "images", "--json", tag]).stdout)[0]["size"].split()
    return float(number) * _UNITS[unit]


def image_config(tag: str) -> dict:
    """The OCI image config (``Entrypoint``, ``Cmd``, ``User``, ``Env`` ...)."""
    doc = json.loads(run(["buildah", "inspect", "--type", "image", tag]).stdout)
    return doc["OCIv1"]["config"]


class Container:
    """A working container from ``tag`` running its own ENTRYPOINT + CMD (``buildah run``, host network,
    chroot isolation: the equivalent of ``docker run --network host``), with ``mounts`` ``{host: ctr}`` read-only."""

    def __init__(self, tag: str, mounts: dict[Path, str], env: dict[str, str] | None = None) -> None:
        cfg = image_config(tag)
        self.argv = [*(cfg.get("Entrypoint") or []), *(cfg.get("Cmd") or [])]
        self.name = run(["buildah", "from", tag]).stdout.strip().splitlines()[-1]
        vols = [a for host, ctr in mounts.items() for a in ("-v", f"{host}:{ctr}:ro")]
        envs = [a for k, v in (env or {}).items() for a in ("--env", f"{k}={v}")]
        self.proc = subprocess.Popen(["buildah", "run", "--isolation", "chroot", "--network", "host", *vols, *envs,
                                      self.name, "--", *self.argv],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def daemon_process(self, timeout: float = 30) -> psutil.Process:
        """The image's main process (buildah's chroot helper runs it as a child)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                try:
                    if child.cmdline()[:1] != ["buildah-chroot-exec"] and "edgewatch" in " ".join(child.cmdline()):
                        return child
                except psutil.NoSuchProcess:
                    continue
            time.sleep(0.1)
        raise AssertionError(f"no edgewatch process under buildah run after {timeout}s")

    def stop(self, timeout: float = 20) -> tuple[int, str]:
        """SIGTERM to the daemon itself (what ``docker stop`` sends; ``buildah run`` would SIGKILL it), then
        ``(buildah run's exit code, output)``."""
        if self.proc.poll() is None:
            try:
                self.daemon_process(timeout=5).send_signal(signal.SIGTERM)
            except (AssertionError, psutil.NoSuchProcess):
                self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return self.proc.returncode, out

    def remove(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()
        run(["buildah", "rm", self.name], check=False)
