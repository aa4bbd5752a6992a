"""edge_runtime.pipeline.batcher: the pure bounded buffer (inline batching) and stacking a batch."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.pipeline.batcher import WindowBuffer, WindowItem, stack


def item(dev: str, k: int, start: int = 0) -> WindowItem:
    w = np.arange(start, start + k, dtype=np.float32)[:, None, None] * np.ones((1, 2, 1), np.float32)
    t = np.arange(start, start + k, dtype=np.float64)
    return WindowItem(dev, w, t, t)


def test_stack_into_preallocated_buffer() -> None:
    buf = np.zeros((8, 2, 1), np.float32)
    out = stack([item("a", 2), item("b", 3, 5)], buf)
    assert out.base is buf or out is buf[:5] or np.shares_memory(out, buf)
    assert out[:, 0, 0].tolist() == [0, 1, 5, 6, 7]


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_window_buffer_matches_a_list_of_windows(policy: str) -> None:
    """The pure buffer (inline batching: no lock, no condition) against a plain list of window ids: same
    windows kept, same drops, same order, over random puts and takes."""
    rng = np.random.default_rng(3)
    buf, ref, cap, nxt = WindowBuffer(7, policy), [], 7, 0
    for _ in range(400):
        if rng.random() < 0.6:
            k = int(rng.integers(1, 10))
            ids = list(range(nxt, nxt + k))
            nxt += k
            if policy == "drop_oldest":
                ref += ids
                want_dropped = max(0, len(ref) - cap)
                ref = ref[want_dropped:]
            else:
                room = cap - len(ref)
                want_dropped = max(0, k - room)
                ref += ids[: max(room, 0)]
            assert buf.put(item("d", k, ids[0])) == want_dropped
        else:
            k = int(rng.integers(1, 6))
            got = buf.take(k)
            flat = [int(v) for it in got for v in it.windows[:, 0, 0]]
            assert flat == ref[:k] and sum(it.n for it in got) == len(flat)
            ref = ref[k:]
        assert len(buf) == len(ref)
        assert (buf.oldest_enqueued() is None) == (not ref)
    assert buf.clear() == len(ref) and len(buf) == 0 and buf.take(3) == []


def test_window_buffer_refuses_unknown_policy() -> None:
    with pytest.raises(ValueError, match="drop_random"):
        WindowBuffer(5, "drop_random")
