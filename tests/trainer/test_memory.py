"""trainer/memory.py: large freed buffers go back to the OS (glibc's mmap threshold fixed)."""

from __future__ import annotations

import ctypes.util
import sys

import pytest

from trainer import memory


@pytest.mark.skipif(not sys.platform.startswith("linux") or "musl" in (ctypes.util.find_library("c") or ""),
                    reason="glibc only")
def test_the_threshold_is_fixed_once_and_reports_it() -> None:
    assert memory.return_large_buffers() is True
    assert memory.return_large_buffers() is True  # idempotent: a second call changes nothing


def test_elsewhere_it_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_done", False)
    monkeypatch.setattr(sys, "platform", "darwin")
    assert memory.return_large_buffers() is False
