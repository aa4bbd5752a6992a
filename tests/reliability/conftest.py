"""Figures for docs/RELIABILITY.md: each fault test records what it measured.

A test calls ``figure(name, **numbers)``; the numbers are printed in pytest's
terminal summary (``-rA`` not needed) and, when ``EDGEWATCH_FIGURES`` names a
file, written there as JSON (``scripts``-free: ``EDGEWATCH_FIGURES=f.json pytest tests/reliability``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

_FIGURES: dict[str, dict[str, Any]] = {}


@pytest.fixture(autouse=True)
def stop_leftover_daemons() -> Iterator[None]:
    """A daemon subprocess its test did not stop (an assertion failed first) must not outlive the test."""
    from tests.reliability.harness import DaemonProcess

    yield
    while DaemonProcess.started:
        DaemonProcess.started.pop().stop()


@pytest.fixture
def figure() -> Callable[..., None]:
    """``figure("broker_outage", sent=..., lost=...)``: record one test's measured numbers."""

    def record(name: str, **numbers: Any) -> None:
        _FIGURES[name] = numbers

    return record


def pytest_terminal_summary(terminalreporter) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("edgewatch reliability figures")
    for name, nums in sorted(_FIGURES.items()):
        terminalreporter.write_line(f"{name}: " + ", ".join(f"{k}={v}" for k, v in nums.items()))
    out = os.environ.get("EDGEWATCH_FIGURES")
    if out:
        with open(out, "w") as fh:
            json.dump(_FIGURES, fh, indent=2, sort_keys=True)
