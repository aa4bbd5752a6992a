"""The bounded hand-off between the MQTT thread and the inference thread (batching ``opportunistic`` / ``fill``).

The network thread :meth:`WindowQueue.put` s windows (never blocks); the worker :meth:`WindowQueue.get_batch` es
up to ``max_batch`` windows, waiting at most ``max_wait_s`` after the first one arrives (``max_wait_s = 0``:
opportunistic batching, the worker takes whatever is queued at once, so batches grow only while it is busy).
Bound and drop policy: :class:`edge_runtime.pipeline.batcher.WindowBuffer`, which this wraps with a condition.
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
        self._cond = threading.Condition()
        self._closed = False
        self._want = 1  # windows the waiting worker needs before it should be woken (see put)

    def __len__(self) -> int:
        return self._buf.n

    def put(self, item: WindowItem) -> int:
        """Enqueue ``item``; return the number of windows dropped to stay within the bound."""
        with self._cond:
            was_empty = not self._buf.n
            dropped = self._buf.put(item)
            # Wake the worker only when it can act: the first window arrived, or its batch is full.
            # (One wake-up per window made the worker take the interpreter lock from the MQTT thread
            # once per window just to wait again: see benchmarks/PROFILE.md.)
            if self._buf.n and (was_empty or self._buf.n >= self._want):
                self._cond.notify()
        return dropped

    def oldest_enqueued(self) -> float | None:
        """``enqueued`` (time.monotonic) of the oldest queued item; None when empty."""
        with self._cond:
            return self._buf.oldest_enqueued()

    def clear(self) -> int:
        """Drop everything queued; return the number of windows dropped."""
        with self._cond:
            return self._buf.clear()

    def close(self) -> None:
        """Wake the worker; :meth:`get_batch` returns what is left without waiting."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def get_batch(self, max_batch: int, max_wait_s: float, timeout: float | None = None) -> list[WindowItem]:
        """Up to ``max_batch`` windows: wait ``timeout`` for the first, then ``max_wait_s`` to fill up."""
        with self._cond:
            if not self._buf.n and not self._closed:
                self._cond.wait(timeout)
            if not self._buf.n:
                return []
            deadline = time.monotonic() + max_wait_s
            self._want = max_batch
            try:
                while self._buf.n < max_batch and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0 or not self._cond.wait(left):
                        break
            finally:
                self._want = 1
            return self._buf.take(max_batch)
