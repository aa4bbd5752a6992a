"""A fixed-bucket latency histogram (Prometheus semantics: cumulative ``le`` buckets, a sum and a count). Pure.

:class:`Stats` keeps two: inference time per batch and a window's latency from the arrival of the message that
completed it to its scoring. ``edge_runtime.integrations.metrics_http`` serves them as Prometheus histograms.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass

# Upper bounds in seconds (+Inf implied). Inference of one batch on a gateway CPU: ~0.05 ms .. 100 ms.
INFERENCE_BUCKETS_S: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)
# Arrival to scored: inline batching ~1 ms; a busy inference thread or a stalled model up to seconds.
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)


@dataclass(frozen=True)
class HistogramSnapshot:
    """``counts[i]``: observations <= ``bounds[i]`` (cumulative, as Prometheus ``le`` buckets); ``count``
    includes the +Inf bucket."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    count: int
    sum: float


class Histogram:
    """Counts observations into fixed buckets; :meth:`observe` is thread-safe and O(log buckets)."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        if list(bounds) != sorted(set(bounds)):
            raise ValueError("histogram bounds must be strictly increasing")
        self.bounds = bounds
        self._buckets = [0] * (len(bounds) + 1)  # per bucket, not cumulative; the last one is +Inf
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float, n: int = 1) -> None:
        """Add ``n`` observations of ``value`` (seconds)."""
        i = bisect.bisect_left(self.bounds, value)
        with self._lock:
            self._buckets[i] += n
            self._sum += value * n

    def snapshot(self) -> HistogramSnapshot:
        with self._lock:
            buckets = list(self._buckets)
            total = self._sum
        cumulative: list[int] = []
        run = 0
        for c in buckets[:-1]:
            run += c
            cumulative.append(run)
        return HistogramSnapshot(self.bounds, tuple(cumulative), run + buckets[-1], total)
