"""Micro-batching: windows of many devices in one bounded FIFO, taken out in batches of up to ``max_batch``. Pure.

:class:`WindowBuffer` holds :class:`WindowItem` s (the windows one message completed for one device) and is
bounded in windows: on overflow the oldest windows are dropped (``drop_oldest``, default: the freshest data
wins) or the new ones are (``drop_newest``); :meth:`WindowBuffer.put` returns how many. It does no locking:
in inline batching producer and consumer are the network thread; the inference thread's queue
(:class:`edge_runtime.service.window_queue.WindowQueue`) wraps it with a condition variable.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

POLICIES = ("drop_oldest", "drop_newest")

F32Array = npt.NDArray[np.float32]
FloatArray = npt.NDArray[np.float64]


@dataclass
class WindowItem:
    """Windows of one device from one message. ``windows``: (k, W, C) float32; ``t_start``/``t_end``: (k,);
    ``excluded``: (C,) bool, the channels left out of the score (sensor faults), or None."""

    device: str
    windows: F32Array
    t_start: FloatArray
    t_end: FloatArray
    enqueued: float = 0.0  # time.monotonic() at put
    excluded: npt.NDArray[np.bool_] | None = None

    @property
    def n(self) -> int:
        return int(self.windows.shape[0])

    def split(self, k: int) -> tuple[WindowItem, WindowItem]:
        a = WindowItem(self.device, self.windows[:k], self.t_start[:k], self.t_end[:k], self.enqueued, self.excluded)
        b = WindowItem(self.device, self.windows[k:], self.t_start[k:], self.t_end[k:], self.enqueued, self.excluded)
        return a, b


class WindowBuffer:
    """A bounded FIFO of :class:`WindowItem` measured in windows (not thread-safe)."""

    def __init__(self, max_windows: int = 4096, policy: str = "drop_oldest") -> None:
        if policy not in POLICIES:
            raise ValueError(f"queue policy {policy!r} is not one of {POLICIES}")
        self.max_windows = max_windows
        self.policy = policy
        self._items: deque[WindowItem] = deque()
        self.n = 0  # windows held

    def __len__(self) -> int:
        return self.n

    def put(self, item: WindowItem) -> int:
        """Append ``item``; return the number of windows dropped to stay within the bound."""
        dropped = 0
        if self.policy == "drop_newest":
            room = self.max_windows - self.n
            if item.n > room:
                dropped = item.n - max(room, 0)
                if room <= 0:
                    return dropped
                item = item.split(room)[0]
        else:
            if item.n > self.max_windows:
                dropped += item.n - self.max_windows
                item = item.split(item.n - self.max_windows)[1]
            while self.n + item.n > self.max_windows:
                over = self.n + item.n - self.max_windows
                old = self._items[0]
                if old.n <= over:
                    self._items.popleft()
                    self.n -= old.n
                    dropped += old.n
                else:
                    self._items[0] = old.split(over)[1]
                    self.n -= over
                    dropped += over
        self._items.append(item)
        self.n += item.n
        return dropped

    def take(self, max_batch: int) -> list[WindowItem]:
        """Up to ``max_batch`` windows from the front (an item is split when it does not fit)."""
        out: list[WindowItem] = []
        room = max_batch
        items = self._items
        while items and room > 0:
            it = items[0]
            if it.n <= room:
                items.popleft()
            else:
                it, items[0] = it.split(room)
            out.append(it)
            self.n -= it.n
            room -= it.n
        return out

    def oldest_enqueued(self) -> float | None:
        """``enqueued`` of the oldest item; None when empty."""
        return self._items[0].enqueued if self._items else None

    def clear(self) -> int:
        """Drop everything; return the number of windows dropped."""
        n = self.n
        self._items.clear()
        self.n = 0
        return n


def stack(items: list[WindowItem], out: F32Array | None = None) -> F32Array:
    """Concatenate the items' windows into one (B, W, C) float32 batch (into ``out[:B]`` when given)."""
    b = sum(it.n for it in items)
    if out is not None and out.shape[0] >= b and out.shape[1:] == items[0].windows.shape[1:]:
        np.concatenate([it.windows for it in items], axis=0, out=out[:b])
        return out[:b]
    return np.concatenate([it.windows for it in items], axis=0)
