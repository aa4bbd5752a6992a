"""Ring-buffer windows: hop, batching equivalence, ordering, gaps, eviction, expiry."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.pipeline.windows import RingWindow, WindowStore
from tests.edge_runtime.onnx_models import sliding_windows


def _series(n: int, c: int = 3) -> tuple[np.ndarray, np.ndarray]:
    ts = 1000.0 + np.arange(n, dtype=np.float64)
    return ts, np.arange(n * c, dtype=np.float32).reshape(n, c)


@pytest.mark.parametrize(("W", "hop"), [(8, 1), (8, 3), (8, 8), (5, 2)])
@pytest.mark.parametrize("chunk", [1, 2, 7, 13, 100])
def test_windows_equal_offline_slicing_for_any_chunking(W: int, hop: int, chunk: int) -> None:
    ts, x = _series(60)
    ring = RingWindow(W, hop, 3, gap_s=5.0)
    got, starts, ends = [], [], []
    for i in range(0, 60, chunk):
        r = ring.push(ts[i : i + chunk], x[i : i + chunk])
        got.append(r.windows)
        starts.append(r.t_start)
        ends.append(r.t_end)
    w = np.concatenate(got)
    want = sliding_windows(x, W, hop)
    np.testing.assert_array_equal(w, want)
    np.testing.assert_array_equal(np.concatenate(starts), ts[np.arange(W, 61, hop) - W])
    np.testing.assert_array_equal(np.concatenate(ends), ts[np.arange(W, 61, hop) - 1])


def test_emitted_windows_are_copies() -> None:
    ts, x = _series(40)
    ring = RingWindow(4, 4, 3, gap_s=5.0)
    first = ring.push(ts[:4], x[:4]).windows
    keep = first.copy()
    ring.push(ts[4:], x[4:])
    np.testing.assert_array_equal(first, keep)


def test_out_of_order_and_duplicates_dropped_and_counted() -> None:
    ring = RingWindow(4, 1, 1, gap_s=100.0)
    ts = np.array([1.0, 2.0, 2.0, 1.5, 3.0, 4.0])
    x = np.arange(6, dtype=np.float32)[:, None]
    r = ring.push(ts, x)
    assert (r.accepted, r.duplicate, r.out_of_order) == (4, 1, 1)
    np.testing.assert_array_equal(r.windows[0, :, 0], [0, 1, 4, 5])
    r2 = ring.push(np.array([3.5]), np.zeros((1, 1), np.float32))
    assert r2.out_of_order == 1 and r2.accepted == 0


def test_gap_restarts_window_never_stitched() -> None:
    ring = RingWindow(4, 1, 1, gap_s=2.0)
    ts = np.array([0, 1, 2, 10, 11, 12, 13, 14], dtype=np.float64)
    x = np.arange(8, dtype=np.float32)[:, None]
    r = ring.push(ts, x)
    assert r.gaps == 1
    np.testing.assert_array_equal(r.windows[:, :, 0], [[3, 4, 5, 6], [4, 5, 6, 7]])
    assert (r.t_start >= 10).all()


def test_gap_across_pushes() -> None:
    ring = RingWindow(3, 1, 1, gap_s=2.0)
    ring.push(np.array([0.0, 1.0]), np.zeros((2, 1), np.float32))
    r = ring.push(np.array([9.0, 10.0, 11.0]), np.ones((3, 1), np.float32))
    assert r.gaps == 1 and r.windows.shape[0] == 1 and (r.windows == 1).all()


def test_unstamped_samples_skip_ordering_check() -> None:
    ring = RingWindow(3, 1, 1, gap_s=5.0)
    r = ring.push(np.array([5.0, 5.0, 5.0]), np.ones((3, 1), np.float32), stamped=False)
    assert r.accepted == 3 and r.windows.shape[0] == 1


def test_store_lru_eviction_and_expiry() -> None:
    store = WindowStore(4, 1, 2, gap_s=10.0, max_devices=2)
    one = (np.array([1.0]), np.zeros((1, 2), np.float32))
    store.push("a", *one, True, now=0.0)
    store.push("b", *one, True, now=1.0)
    store.push("a", np.array([2.0]), np.zeros((1, 2), np.float32), True, now=2.0)  # a most recent
    r = store.push("c", *one, True, now=3.0)
    assert r.evicted == ["b"] and set(store.devices) == {"a", "c"}
    assert store.expire(now=12.5, idle_s=10.0) == ["a"]
    assert list(store.devices) == ["c"]


def test_devices_are_independent() -> None:
    store = WindowStore(4, 2, 1, gap_s=10.0)
    for i in range(8):
        for dev, off in (("x", 0.0), ("y", 100.0)):
            r = store.push(dev, np.array([float(i)]), np.array([[i + off]], np.float32), True, now=float(i))
            if r.windows.size:
                assert r.windows.min() >= off and r.windows.max() < off + 8


def test_single_sample_fast_path_matches_batch_path() -> None:
    rng = np.random.default_rng(0)
    ts = np.cumsum(rng.choice([0.0, -1.0, 1.0, 1.0, 1.0, 9.0], size=300))  # duplicates, reversals, gaps
    x = rng.standard_normal((300, 2)).astype(np.float32)
    a, b = RingWindow(6, 2, 2, gap_s=5.0, capacity=12), RingWindow(6, 2, 2, gap_s=5.0, capacity=12)
    ra = a.push(ts, x)
    rb = [b.push(ts[i : i + 1], x[i : i + 1]) for i in range(300)]
    np.testing.assert_array_equal(ra.windows, np.concatenate([r.windows for r in rb]))
    np.testing.assert_array_equal(ra.t_end, np.concatenate([r.t_end for r in rb]))
    for field in ("accepted", "out_of_order", "duplicate", "gaps"):
        assert getattr(ra, field) == sum(getattr(r, field) for r in rb), field
    assert ra.gaps > 0 and ra.out_of_order > 0 and ra.duplicate > 0 and ra.windows.shape[0] > 5


def test_retune_keeps_buffers_and_uses_the_new_hop() -> None:
    store = WindowStore(4, 4, 1, gap_s=10.0)
    x = np.arange(20, dtype=np.float32)[:, None]
    ts = np.arange(20, dtype=np.float64)
    store.push("warm", ts[:6], x[:6], True, now=0.0)  # window at 4, next due at 8
    store.push("cold", ts[:2], x[:2], True, now=0.0)  # needs 2 more for its first window
    store.retune(hop=1, gap_s=10.0)
    assert store.push("warm", ts[6:7], x[6:7], True, now=1.0).windows[0, :, 0].tolist() == [3, 4, 5, 6]
    assert store.push("cold", ts[2:3], x[2:3], True, now=1.0).windows.shape[0] == 0
    assert store.push("cold", ts[3:4], x[3:4], True, now=1.0).windows[0, :, 0].tolist() == [0, 1, 2, 3]


def test_push_row_matches_push_sample_by_sample() -> None:
    """The daemon's single-sample path (push_row + last_window) gives push()'s windows and drop counts."""
    from edge_runtime.pipeline.windows import ACCEPTED, DUPLICATE, GAP, OUT_OF_ORDER, WINDOW

    ts = np.array([1.0, 2, 3, 3, 2.5, 4, 5, 6, 20, 21, 22, 23, 24, 25, 26, 27, 28], np.float64)
    x = np.arange(ts.size * 2, dtype=np.float32).reshape(-1, 2)
    a, b = RingWindow(4, 2, 2, gap_s=5.0, capacity=8), RingWindow(4, 2, 2, gap_s=5.0, capacity=8)
    for t, row in zip(ts, x, strict=True):
        want = a.push(np.array([t]), row[None])
        code = b.push_row(float(t), row.tolist(), True)
        assert bool(code & OUT_OF_ORDER) == bool(want.out_of_order)
        assert bool(code & DUPLICATE) == bool(want.duplicate)
        assert bool(code & ACCEPTED) == bool(want.accepted)
        assert bool(code & GAP) == bool(want.gaps)
        assert bool(code & WINDOW) == bool(want.windows.shape[0])
        if code & WINDOW:
            w, s, e = b.last_window()
            np.testing.assert_array_equal(w, want.windows)
            np.testing.assert_array_equal(s, want.t_start)
            np.testing.assert_array_equal(e, want.t_end)
