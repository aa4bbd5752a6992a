"""Trainer test settings: one torch thread (the box is shared and small nets run fastest that way)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    import torch

    torch.set_num_threads(1)
