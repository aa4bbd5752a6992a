"""The bounded hand-off between the MQTT thread and the inference thread (batching ``opportunistic`` / ``fill``).

The network thread :meth:`WindowQueue.offer` s windows (never blocks, never drops: it places what fits and
hands back the rest) and, outside the ingest lock, :meth:`WindowQueue.wait_room` s for the worker to make
room before placing the rest: back-pressure (see :class:`edge_runtime.service.scorer.ThreadedScoring`).
:meth:`WindowQueue.put` (the bound's drop policy, :class:`edge_runtime.pipeline.batcher.WindowBuffer`) is
left for what still cannot be placed. The worker :meth:`WindowQueue.get_batch` es up to ``max_batch``
windows, waiting at most ``max_wait_s`` after the first one arrives (``max_wait_s = 0``: opportunistic
batching, the worker takes whatever is queued at once, so batches grow only while it is busy).
"""

from __future__ import annotations

import threading
import time

from edge_runtime.pipeline.batcher import WindowBuffer, WindowItem


class WindowQueue:
    """A thread-safe :class:`WindowBuffer`: one producer (the network thread), one consumer (the worker)."""

    def __init__(self, max_windows: int = 4096, policy: str = "drop_oldest") -> None:
        self._buf = WindowBuffer(max_windows, policy)
        self.max_windows = max_windows
        self.policy = policy
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # the worker waits here for windows
        self._room = threading.Condition(lock)  # the producer waits here for room
        self._closed = False
        self._want = 1  # windows the waiting worker needs before it should be woken (see put)
        self.taken = 0  # batches taken so far (the producer tells a stalled worker from a slow one)

    def __len__(self) -> int:
        return self._buf.n

    @property
    def closed(self) -> bool:
        return self._closed

    def _wake_worker(self, was_empty: bool) -> None:
        # Wake the worker only when it can act: the first window arrived, or its batch is full (or the queue
        # is). (One wake-up per window made the worker take the interpreter lock from the MQTT thread
        # once per window just to wait again: see benchmarks/PROFILE.md.)
        n = self._buf.n
        if n and (was_empty or n >= min(self._want, self.max_windows)):
            self._cond.notify()

    def put(self, item: WindowItem) -> int:
        """Enqueue ``item`` under the bound's policy; return the number of windows dropped to stay within it."""
        with self._cond:
            was_empty = not self._buf.n
            dropped = self._buf.put(item)
            self._wake_worker(was_empty)
        return dropped

    def offer(self, item: WindowItem) -> WindowItem | None:
        """Enqueue as much of ``item`` as fits; return the windows that did not (None when all did)."""
        with self._cond:
            room = self.max_windows - self._buf.n
            if room <= 0:
                return item
            rest = None
            if item.n > room:
                item, rest = item.split(room)
            was_empty = not self._buf.n
            self._buf.put(item)  # fits: drops nothing
            self._wake_worker(was_empty)
        return rest

    def wait_room(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s until the queue has room; False when it still has none (or is closed)."""
        with self._cond:
            if self._buf.n >= self.max_windows and not self._closed:
                self._room.wait_for(lambda: self._buf.n < self.max_windows or self._closed, timeout)
            return self._buf.n < self.max_windows and not self._closed

    def oldest_enqueued(self) -> float | None:
        """``enqueued`` (time.monotonic) of the oldest queued item; None when empty."""
        with self._cond:
            return self._buf.oldest_enqueued()

    def clear(self) -> int:
        """Drop everything queued; return the number of windows dropped."""
        with self._cond:
            self._room.notify_all()
            return self._buf.clear()

    def close(self) -> None:
        """Wake the worker (:meth:`get_batch` returns what is left without waiting) and a waiting producer."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            self._room.notify_all()

    def get_batch(self, max_batch: int, max_wait_s: float, timeout: float | None = None) -> list[WindowItem]:
        """Up to ``max_batch`` windows: wait ``timeout`` for the first, then ``max_wait_s`` to fill up (not
        while the queue is full: nothing more can come)."""
        with self._cond:
            if not self._buf.n and not self._closed:
                self._cond.wait(timeout)
            if not self._buf.n:
                return []
            deadline = time.monotonic() + max_wait_s
            self._want = max_batch
            try:
                while self._buf.n < min(max_batch, self.max_windows) and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0 or not self._cond.wait(left):
                        break
            finally:
                self._want = 1
            self.taken += 1
            self._room.notify()
            return self._buf.take(max_batch)
