"""The inference thread's queue (edge_runtime.service.window_queue): bound, policies, waits, wake-ups."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from edge_runtime.pipeline.batcher import WindowItem, stack
from edge_runtime.service.window_queue import WindowQueue


def item(dev: str, k: int, start: int = 0) -> WindowItem:
    w = np.arange(start, start + k, dtype=np.float32)[:, None, None] * np.ones((1, 2, 1), np.float32)
    t = np.arange(start, start + k, dtype=np.float64)
    return WindowItem(dev, w, t, t)


def test_batch_respects_max_and_keeps_order() -> None:
    q = WindowQueue(100)
    q.put(item("a", 3))
    q.put(item("b", 4, 10))
    got = q.get_batch(5, max_wait_s=0.0, timeout=0.0)
    assert [(i.device, i.n) for i in got] == [("a", 3), ("b", 2)]
    assert stack(got)[:, 0, 0].tolist() == [0, 1, 2, 10, 11]
    rest = q.get_batch(5, 0.0, 0.0)
    assert [(i.device, i.n) for i in rest] == [("b", 2)] and rest[0].windows[0, 0, 0] == 12
    assert len(q) == 0


def test_drop_oldest_counts_and_keeps_newest() -> None:
    q = WindowQueue(5, "drop_oldest")
    assert q.put(item("a", 3)) == 0
    assert q.put(item("b", 4, 10)) == 2
    got = q.get_batch(10, 0.0, 0.0)
    assert sum(i.n for i in got) == 5
    assert stack(got)[:, 0, 0].tolist() == [2, 10, 11, 12, 13]
    assert q.put(item("c", 8)) == 3


def test_drop_newest_counts_and_keeps_oldest() -> None:
    q = WindowQueue(5, "drop_newest")
    q.put(item("a", 3))
    assert q.put(item("b", 4, 10)) == 2
    assert q.put(item("c", 1)) == 1
    assert stack(q.get_batch(10, 0.0, 0.0))[:, 0, 0].tolist() == [0, 1, 2, 10, 11]


def test_unknown_policy_refused() -> None:
    with pytest.raises(ValueError):
        WindowQueue(5, "drop_random")


def test_get_batch_waits_to_fill_and_close_wakes() -> None:
    q = WindowQueue(100)
    q.put(item("a", 1))
    threading.Timer(0.05, lambda: q.put(item("b", 1))).start()
    got = q.get_batch(2, max_wait_s=5.0, timeout=1.0)
    assert sum(i.n for i in got) == 2
    threading.Timer(0.05, q.close).start()
    assert q.get_batch(2, 5.0, timeout=5.0) == []


def test_opportunistic_get_batch_takes_what_is_queued_at_once() -> None:
    """max_wait_s = 0 (batching = opportunistic): one queued window is a batch; a backlog forms bigger ones."""
    q = WindowQueue(100)
    q.put(item("a", 1))
    assert sum(i.n for i in q.get_batch(64, 0.0, timeout=1.0)) == 1
    for k in range(5):
        q.put(item("b", 2, 10 * k))
    assert sum(i.n for i in q.get_batch(4, 0.0, timeout=1.0)) == 4
    assert sum(i.n for i in q.get_batch(64, 0.0, timeout=1.0)) == 6


def test_oldest_enqueued_is_the_head_of_the_queue() -> None:
    q = WindowQueue(100)
    assert q.oldest_enqueued() is None
    for t in (5.0, 7.0):
        q.put(WindowItem("d", np.zeros((1, 4, 2), np.float32), np.zeros(1), np.zeros(1), enqueued=t))
    assert q.oldest_enqueued() == 5.0
    q.get_batch(1, 0.0)
    assert q.oldest_enqueued() == 7.0


def test_offer_places_what_fits_and_wait_room_wakes_on_a_take() -> None:
    q = WindowQueue(5)
    assert q.offer(item("a", 3)) is None
    rest = q.offer(item("a", 4, 3))  # 2 fit, 2 handed back, nothing dropped
    assert rest is not None and rest.n == 2 and rest.t_end.tolist() == [5.0, 6.0] and len(q) == 5
    assert q.offer(rest) is rest and q.wait_room(0.05) is False  # full: nothing taken in time
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(q.wait_room(5.0)))
    waiter.start()
    assert [i.n for i in q.get_batch(4, 0.0, 0.0)] == [3, 1]
    waiter.join(5.0)
    assert woke == [True] and q.offer(rest) is None and len(q) == 3
    q.close()
    assert q.wait_room(5.0) is False  # closed: no waiting


def test_fill_does_not_wait_on_a_full_queue() -> None:
    q = WindowQueue(4)
    q.put(item("a", 4))
    got = q.get_batch(64, max_wait_s=5.0, timeout=0.0)  # nothing more can come: taken at once
    assert sum(i.n for i in got) == 4
