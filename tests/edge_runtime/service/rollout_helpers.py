"""Shared pieces of the rollout tests: keys, fleet daemons, waiting for rollout events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from edge_runtime.service.daemon import Daemon
from edge_runtime.service.signing import generate_keypair
from tests.edge_runtime.mqtt_helpers import Collector, daemon_config, wait_until
from trainer.fleet import Connection


def keypair(tmp: Path, name: str = "ws") -> tuple[Path, Path]:
    priv, pub = tmp / f"{name}.key", tmp / f"{name}.pub"
    generate_keypair(priv, pub)
    return priv, pub


def fleet_config(url: str, model: Path, tmp: Path, name: str, target: str, pub: Path, **overrides: Any):
    return daemon_config(url, model, instance=name, rollout=True, target=target, public_key_file=str(pub),
                         staging_dir=str(tmp / f"staging-{name}"), provider="cpu", **overrides)


@contextmanager
def fleet_daemons(url: str, configs: list) -> Iterator[list[Daemon]]:
    with ExitStack() as stack:
        ds = []
        for cfg in configs:
            d = Daemon(cfg).start()
            stack.callback(d.stop)
            ds.append(d)
        for d in ds:
            wait_until(d.link.connected.is_set, 10, f"{d.instance} connected")
        yield ds


def events(col: Collector, instance: str, kind: str | None = None) -> list[dict[str, Any]]:
    return [doc for _, doc in col.docs(f"edgewatch/{instance}/rollout") if kind is None or doc["event"] == kind]


def wait_event(col: Collector, instance: str, kind: str, timeout: float = 15.0) -> dict[str, Any]:
    wait_until(lambda: events(col, instance, kind), timeout, f"{instance}: {kind}")
    return events(col, instance, kind)[-1]


def conn(url: str) -> Connection:
    return Connection(url)


def retained_status(col: Collector, instance: str) -> dict[str, Any]:
    docs = [json.loads(p) for t, p, _ in list(col.messages) if t == f"edgewatch/{instance}/status" and p]
    return docs[-1]
