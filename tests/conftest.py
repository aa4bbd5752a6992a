"""Shared fixtures: a real Mosquitto broker per test, SKAB location."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_runtime.tools.localbroker import MosquittoBroker

ROOT = Path(__file__).resolve().parents[1]
SKAB_DIR = Path(os.environ.get("SKAB_DIR", ROOT.parent / "shared" / "data" / "skab"))


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A fresh Mosquitto on a free loopback port (anonymous, no persistence)."""
    broker = MosquittoBroker(workdir=tmp_path / "broker")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator:
    """Build brokers with custom config: ``mosquitto_factory(extra_config=..., persistence=True)``."""
    brokers: list[MosquittoBroker] = []

    def make(**kwargs) -> MosquittoBroker:
        kwargs.setdefault("workdir", tmp_path / f"broker{len(brokers)}")
        b = MosquittoBroker(**kwargs)
        brokers.append(b)
        return b

    try:
        yield make
    finally:
        for b in brokers:
            b.stop()


@pytest.fixture(scope="session")
def demo_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small model trained and exported by the real trainer on synthetic data, once per session.

    Built by ``tests/model_fixtures.py::train_small_model`` (owned by the trainer).
    """
    from tests.model_fixtures import train_small_model

    return train_small_model(tmp_path_factory.mktemp("demo-model"))


LEAK_GRACE_S = 5.0  # a thread a test started may take this long to end after the test before it counts as leaked


@pytest.fixture(autouse=True)
def _no_leaked_threads(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves a thread it started running (a daemon, an MQTT client, a NATS link): a leaked
    thread keeps logging into, and publishing during, the tests after it, which then fail for no fault of
    their own. Threads get up to LEAK_GRACE_S to end."""
    import threading
    import time

    before = {t.ident for t in threading.enumerate()}
    yield
    new = [t for t in threading.enumerate() if t.ident not in before]
    deadline = time.monotonic() + LEAK_GRACE_S
    while new and time.monotonic() < deadline:
        new = [t for t in new if t.is_alive()]
        if new:
            time.sleep(0.05)
    if new:
        pytest.fail(f"{request.node.nodeid} left thread(s) running: {', '.join(sorted(t.name for t in new))}",
                    pytrace=False)
