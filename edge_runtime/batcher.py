"""The bounded hand-off between the MQTT thread and the inference worker, and micro-batching.

The network thread :meth:`WindowQueue.put` s windows (never blocks); the worker
:meth:`WindowQueue.get_batch` es up to ``max_batch`` windows, waiting at most
``max_wait_s`` after the first one arrives (``max_wait_s = 0``: opportunistic batching, the worker
takes whatever is queued at once, so batches grow only while it is busy). The bound is in windows; on overflow
the oldest windows are dropped (``drop_oldest``, default: the freshest data wins)
or the new ones are (``drop_newest``), and :meth:`put` returns how many.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

POLICIES = ("drop_oldest", "drop_newest")


@dataclass
class WindowItem:
    """Windows of one device from one message. ``windows``: (k, W, C) float32; ``t_start``/``t_end``: (k,)."""

    device: str
    windows: np.ndarray
    t_start: np.ndarray
    t_end: np.ndarray
    enqueued: float = 0.0  # time.monotonic() at put

    @property
    def n(self) -> int:
        return int(self.windows.shape[0])

    def split(self, k: int) -> tuple[WindowItem, WindowItem]:
        a = WindowItem(self.device, self.windows[:k], self.t_start[:k], self.t_end[:k], self.enqueued)
        b = WindowItem(self.device, self.windows[k:], self.t_start[k:], self.t_end[k:], self.enqueued)
        return a, b


class WindowQueue:
    """A bounded FIFO of :class:`WindowItem` measured in windows."""

    def __init__(self, max_windows: int = 4096, policy: str = "drop_oldest") -> None:
        if policy not in POLICIES:
            raise ValueError(f"queue policy {policy!r} is not one of {POLICIES}")
        self.max_windows = max_windows
        self.policy = policy
        self._items: deque[WindowItem] = deque()
        self._n = 0
        self._cond = threading.Condition()
        self._closed = False
        self._want = 1  # windows the waiting worker needs before it should be woken (see put)

    def __len__(self) -> int:
        return self._n

    def put(self, item: WindowItem) -> int:
        """Enqueue ``item``; return the number of windows dropped to stay within the bound."""
        dropped = 0
        with self._cond:
            if self.policy == "drop_newest":
                room = self.max_windows - self._n
                if item.n > room:
                    dropped = item.n - max(room, 0)
                    if room <= 0:
                        return dropped
                    item = item.split(room)[0]
            else:
                if item.n > self.max_windows:
                    dropped += item.n - self.max_windows
                    item = item.split(item.n - self.max_windows)[1]
                while self._n + item.n > self.max_windows:
                    over = self._n + item.n - self.max_windows
                    old = self._items[0]
                    if old.n <= over:
                        self._items.popleft()
                        self._n -= old.n
                        dropped += old.n
                    else:
                        self._items[0] = old.split(over)[1]
                        self._n -= over
                        dropped += over
            was_empty = not self._n
            self._items.append(item)
            self._n += item.n
            # Wake the worker only when it can act: the first window arrived, or its batch is full.
            # (One wake-up per window made the worker take the interpreter lock from the MQTT thread
            # once per window just to wait again: see benchmarks/PROFILE.md.)
            if was_empty or self._n >= self._want:
                self._cond.notify()
        return dropped

    def oldest_enqueued(self) -> float | None:
        """``enqueued`` (time.monotonic) of the oldest queued item; None when empty."""
        with self._cond:
            return self._items[0].enqueued if self._items else None

    def clear(self) -> int:
        """Drop everything queued; return the number of windows dropped."""
        with self._cond:
            n = self._n
            self._items.clear()
            self._n = 0
            return n

    def close(self) -> None:
        """Wake the worker; :meth:`get_batch` returns what is left without waiting."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def get_batch(self, max_batch: int, max_wait_s: float, timeout: float | None = None) -> list[WindowItem]:
        """Up to ``max_batch`` windows: wait ``timeout`` for the first, then ``max_wait_s`` to fill up."""
        with self._cond:
            if not self._n and not self._closed:
                self._cond.wait(timeout)
            if not self._n:
                return []
            deadline = time.monotonic() + max_wait_s
            self._want = max_batch
            try:
                while self._n < max_batch and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0 or not self._cond.wait(left):
                        break
            finally:
                self._want = 1
            out: list[WindowItem] = []
            room = max_batch
            while self._items and room > 0:
                it = self._items[0]
                if it.n <= room:
                    self._items.popleft()
                else:
                    it, self._items[0] = it.split(room)
                out.append(it)
                self._n -= it.n
                room -= it.n
            return out


def stack(items: list[WindowItem], out: np.ndarray | None = None) -> np.ndarray:
    """Concatenate the items' windows into one (B, W, C) float32 batch (into ``out[:B]`` when given)."""
    b = sum(it.n for it in items)
    if out is not None and out.shape[0] >= b and out.shape[1:] == items[0].windows.shape[1:]:
        np.concatenate([it.windows for it in items], axis=0, out=out[:b])
        return out[:b]
    return np.concatenate([it.windows for it in items], axis=0)
