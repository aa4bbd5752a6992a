"""Per-device sliding windows over a preallocated numpy ring buffer. Pure.

A device's samples go into a ``(capacity, C)`` float32 buffer (``capacity`` >= 2W,
allocated once). A window ``(W, C)`` is due every ``hop`` accepted samples once W
are buffered; all windows due in one push are cut with one fancy-index copy.

Timestamps are checked per sample: a stamped sample whose time is not strictly
after the device's latest one is dropped (``out_of_order`` or ``duplicate``); a
jump larger than ``gap_s`` restarts the window (the buffered samples are
discarded, so no window is ever stitched across a gap). Unstamped samples
(arrival time) skip the ordering check but not the gap check. A device whose
samples stay behind its latest one for ``clock_reset_after`` samples in a row
(a clock that restarted) is reset: its window restarts on the new clock.
A device's ``last_seen`` (idle expiry, LRU eviction) moves only when a sample is accepted (or, while its
messages are all rejected, when one arrives: :meth:`WindowStore.heard`).

Sensor health (:mod:`edge_runtime.pipeline.health`) rides along: a ring keeps the per-device ``health`` state
its owner gives it and counts the plain rows pushed since the owner last checked them (``unchecked``; the
rows are the ring's newest); :meth:`WindowStore.push_samples` returns the shared common result only while
fewer than the ring's ``check_every`` rows wait (the store's when the ring is made; the owner may change it
after each check), so the owner checks a device every ``check_every`` samples.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_runtime.pipeline.decode import Samples

_EMPTY_F = np.zeros(0, dtype=np.float64)
_NO_EVICTIONS: list[str] = []  # shared, never mutated: what push_row returns when no device was evicted

# Flags returned by RingWindow.push_row (decoded into a PushResult by RingWindow.row_result).
ACCEPTED, WINDOW, GAP, OUT_OF_ORDER, DUPLICATE, CLOCK_RESET = 1, 2, 4, 8, 16, 32


GAP_PERIODS = 10.0  # input.gap_s 0: a time step longer than this many sample periods restarts a window


@dataclass
class PushResult:
    """Windows cut by one push. ``windows``: (k, W, C) float32; ``t_start``/``t_end``: (k,) float64 epoch s."""

    windows: np.ndarray
    t_start: np.ndarray
    t_end: np.ndarray
    accepted: int = 0
    out_of_order: int = 0
    duplicate: int = 0
    gaps: int = 0
    clock_resets: int = 0
    evicted: list[str] = field(default_factory=list)


class RingWindow:
    """The window state of one device."""

    def __init__(self, window: int, hop: int, n_channels: int, gap_s: float, capacity: int = 0,
                 clock_reset_after: int = 20) -> None:
        if window < 2 or not 1 <= hop <= window:
            raise ValueError(f"bad window/hop {window}/{hop}")
        self.window = window
        self.hop = hop
        self.n_channels = n_channels
        self.gap_s = gap_s
        self.capacity = max(capacity, 2 * window)
        self.buf = np.zeros((self.capacity, n_channels), dtype=np.float32)  # (capacity, C)
        self.tbuf = np.zeros(self.capacity, dtype=np.float64)  # (capacity,)
        self._offsets = np.arange(-window, 0)  # (W,)
        self._no_windows = np.zeros((0, window, n_channels), dtype=np.float32)  # shared empty result (0, W, C)
        self.fill = 0
        self.to_next = window
        self.last_ts = -np.inf
        self.last_seen = 0.0
        self.clock_reset_after = clock_reset_after
        self.behind = 0  # stamped samples in a row older than last_ts
        self.health: Any = None  # the owner's per-device health state (edge_runtime.pipeline.health)
        self.unchecked = 0  # rows pushed by push_row since the owner's last health check (the newest ones)
        self.check_every = 1 << 62  # unchecked rows after which push_samples hands the owner a check

    def reset(self) -> None:
        """Forget buffered samples (after a gap): the next window needs W fresh samples."""
        self.fill = 0
        self.to_next = self.window
        self.unchecked = 0

    def unchecked_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """The rows pushed since the last health check (``unchecked``, at most ``fill``): ((k, C) view, (k,) ts)."""
        f = self.fill
        k = min(self.unchecked, f)
        return self.buf[f - k : f], self.tbuf[f - k : f]

    def restart_clock(self) -> None:
        """Forget buffered samples and the latest timestamp (the device's clock went back for good)."""
        self.reset()
        self.last_ts = -np.inf
        self.behind = 0

    def push(self, ts: np.ndarray, values: np.ndarray, stamped: bool = True) -> PushResult:
        """Append samples ``ts`` (n,) / ``values`` (n, C); return the windows that became due."""
        if ts.shape[0] == 1:
            return self._push_one(float(ts[0]), values[0], stamped)
        ooo = dup = 0
        if stamped and ts.shape[0]:
            prev = np.maximum.accumulate(np.concatenate(([self.last_ts], ts[:-1])))
            keep = ts > prev
            if not keep.all():
                ooo = int((ts < prev).sum())
                dup = int((ts == prev).sum())
                if not keep.any() and ooo:
                    self.behind += ooo
                    if self.behind >= self.clock_reset_after:  # the clock went back for good: start again
                        self.restart_clock()
                        res = self.push(ts, values, stamped)
                        res.clock_resets += 1
                        return res
                ts, values = ts[keep], values[keep]
            if keep.any():
                self.behind = 0
        n = ts.shape[0]
        out_w: list[np.ndarray] = []
        out_s: list[np.ndarray] = []
        out_e: list[np.ndarray] = []
        gaps = 0
        if n:
            diffs = np.diff(ts, prepend=self.last_ts)
            cuts = np.flatnonzero(diffs > self.gap_s)
            if cuts.size and cuts[0] == 0 and (self.fill == 0 or not np.isfinite(self.last_ts)):
                cuts = cuts[1:]  # nothing buffered (the device's first sample, a restarted clock): not a gap
            bounds = sorted({0, *cuts.tolist(), n})
            for a, b in zip(bounds[:-1], bounds[1:], strict=True):
                if a in cuts:
                    gaps += 1
                    self.reset()
                if b > a:
                    self._append(ts[a:b], values[a:b], out_w, out_s, out_e)
            self.last_ts = max(self.last_ts, float(ts[-1]))
        if out_w:
            res = PushResult(
                np.concatenate(out_w) if len(out_w) > 1 else out_w[0],
                np.concatenate(out_s) if len(out_s) > 1 else out_s[0],
                np.concatenate(out_e) if len(out_e) > 1 else out_e[0],
            )
        else:
            res = PushResult(np.zeros((0, self.window, self.n_channels), np.float32), _EMPTY_F, _EMPTY_F)
        res.accepted, res.out_of_order, res.duplicate, res.gaps = n, ooo, dup, gaps
        return res

    def _push_one(self, t: float, row: Any, stamped: bool) -> PushResult:
        """The single-sample path of :meth:`push` (same results, no temporary arrays)."""
        return self.row_result(self.push_row(t, row, stamped))

    def row_result(self, code: int) -> PushResult:
        """The :class:`PushResult` of one :meth:`push_row` that returned the flags ``code``."""
        res = PushResult(self._no_windows, _EMPTY_F, _EMPTY_F)
        if code & OUT_OF_ORDER:
            res.out_of_order = 1
        elif code & DUPLICATE:
            res.duplicate = 1
        else:
            res.accepted = 1
            res.gaps = 1 if code & GAP else 0
            res.clock_resets = 1 if code & CLOCK_RESET else 0
            if code & WINDOW:
                res.windows, res.t_start, res.t_end = self.last_window()
        return res

    def push_row(self, t: float, row: Any, stamped: bool) -> int:
        """Append one sample (``row``: C numbers, a list or a (C,) array) at epoch ``t``; return flags:
        ``ACCEPTED`` (plus ``GAP`` if the window restarted, ``CLOCK_RESET`` if the clock went back for good,
        ``WINDOW`` if one became due: see :meth:`last_window`), or ``OUT_OF_ORDER`` / ``DUPLICATE`` (dropped)."""
        code = ACCEPTED
        if stamped and t <= self.last_ts:
            if t == self.last_ts:
                return DUPLICATE
            self.behind += 1
            if self.behind < self.clock_reset_after:
                return OUT_OF_ORDER
            self.restart_clock()
            code = ACCEPTED | CLOCK_RESET
        elif self.behind:
            self.behind = 0
        if t - self.last_ts > self.gap_s and self.fill:
            code |= GAP
            self.reset()
        f = self.fill
        if f == self.capacity:
            keep = self.window - 1
            self.buf[:keep] = self.buf[f - keep : f]
            self.tbuf[:keep] = self.tbuf[f - keep : f]
            f = keep
        self.buf[f] = row
        self.tbuf[f] = t
        self.fill = f + 1
        self.unchecked += 1
        if t > self.last_ts:
            self.last_ts = t
        self.to_next -= 1
        if self.to_next == 0:
            self.to_next = self.hop
            code |= WINDOW
        return code

    def last_window(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The window ending at the newest sample: ((1, W, C) float32 copy, t_start (1,), t_end (1,))."""
        f, W = self.fill, self.window
        return self.buf[f - W : f][None].copy(), self.tbuf[f - W : f - W + 1].copy(), self.tbuf[f - 1 : f].copy()

    def _append(self, ts: np.ndarray, values: np.ndarray, out_w: list[np.ndarray], out_s: list[np.ndarray],
                out_e: list[np.ndarray]) -> None:
        W, i, n = self.window, 0, ts.shape[0]
        while i < n:
            if self.fill == self.capacity:  # compact: keep the W-1 samples a future window can need
                keep = W - 1
                self.buf[:keep] = self.buf[self.fill - keep : self.fill]
                self.tbuf[:keep] = self.tbuf[self.fill - keep : self.fill]
                self.fill = keep
            k = min(n - i, self.capacity - self.fill)
            old = self.fill
            self.buf[old : old + k] = values[i : i + k]
            self.tbuf[old : old + k] = ts[i : i + k]
            self.fill = old + k
            first = old + self.to_next
            if first <= self.fill:
                ends = np.arange(first, self.fill + 1, self.hop)  # exclusive end index of each window
                out_w.append(self.buf[ends[:, None] + self._offsets])  # (k, W, C) copy
                out_s.append(self.tbuf[ends - W])
                out_e.append(self.tbuf[ends - 1])
                self.to_next = int(ends[-1]) + self.hop - self.fill
            else:
                self.to_next = first - self.fill
            i += k


DEVICE_OVERHEAD_BYTES = 2048  # a device's Python objects besides its buffers (ring, ids, alert state), measured ~1.5 KB


def merge_results(parts: list[PushResult]) -> PushResult:
    """One :class:`PushResult` of consecutive pushes of one device (windows in order, counts summed)."""
    if len(parts) == 1:
        return parts[0]
    got = [p for p in parts if p.windows.shape[0]]
    first = parts[0]
    res = PushResult(
        np.concatenate([p.windows for p in got]) if got else first.windows,
        np.concatenate([p.t_start for p in got]) if got else first.t_start,
        np.concatenate([p.t_end for p in got]) if got else first.t_end,
    )
    for p in parts:
        res.accepted += p.accepted
        res.out_of_order += p.out_of_order
        res.duplicate += p.duplicate
        res.gaps += p.gaps
        res.clock_resets += p.clock_resets
        res.evicted += p.evicted
    return res


def device_bytes(window: int, n_channels: int) -> int:
    """Memory one device's window state costs: a (2W, C) float32 ring, (2W,) float64 times, objects."""
    return 2 * window * (4 * n_channels + 8) + DEVICE_OVERHEAD_BYTES


def devices_within(budget_bytes: float, window: int, n_channels: int, max_devices: int) -> int:
    """The most devices whose window state fits ``budget_bytes`` (at least 1, at most ``max_devices``)."""
    return max(1, min(max_devices, int(budget_bytes // device_bytes(window, n_channels))))


class WindowStore:
    """Windows of every device, bounded by ``max_devices`` (least recently seen evicted).

    ``last_ts``: the latest timestamp of devices a previous store tracked (after a reload that changed W or
    C), so a sample they send again is still a duplicate."""

    def __init__(
        self, window: int, hop: int, n_channels: int, gap_s: float, max_devices: int = 10_000,
        clock_reset_after: int = 20, last_ts: dict[str, float] | None = None,
    ) -> None:
        self.window, self.hop, self.n_channels, self.gap_s = window, hop, n_channels, gap_s
        self.max_devices = max_devices
        self.clock_reset_after = clock_reset_after
        self.devices: OrderedDict[str, RingWindow] = OrderedDict()
        self._carried = dict(last_ts or {})
        self.one_accepted = PushResult(np.zeros((0, window, n_channels), np.float32), _EMPTY_F, _EMPTY_F, accepted=1)
        self.check_every = 1 << 62  # rows a ring may hold unchecked before push_samples stops returning one_accepted

    def __len__(self) -> int:
        return len(self.devices)

    def last_timestamps(self) -> dict[str, float]:
        """Each device's latest timestamp (for the store that replaces this one)."""
        out = {dev: ring.last_ts for dev, ring in self.devices.items() if np.isfinite(ring.last_ts)}
        return {**self._carried, **out}

    def ring(self, device: str, now: float) -> tuple[RingWindow, list[str]]:
        """``device``'s ring, made if it has none (returns the devices evicted to make room)."""
        return self._ring(device, now)

    def _ring(self, device: str, now: float) -> tuple[RingWindow, list[str]]:
        """``device``'s ring, made (evicting the least recently seen at the cap) if it has none."""
        ring = self.devices.get(device)
        evicted = _NO_EVICTIONS
        if ring is None:
            evicted = []
            while len(self.devices) >= self.max_devices:
                evicted.append(self.devices.popitem(last=False)[0])
            ring = RingWindow(self.window, self.hop, self.n_channels, self.gap_s,
                              clock_reset_after=self.clock_reset_after)
            ring.check_every = self.check_every
            if self._carried:
                ring.last_ts = self._carried.pop(device, -np.inf)
            ring.last_seen = now
            self.devices[device] = ring
        return ring, evicted

    def heard(self, device: str, now: float) -> None:
        """``device`` sends, though nothing it sends decodes (a raised ``rejected`` alert): not idle, not stale."""
        ring = self.devices.get(device)
        if ring is not None:
            self._seen(device, ring, now)

    def _seen(self, device: str, ring: RingWindow, now: float) -> None:
        """A sample of ``device`` was accepted: it is the most recently seen (dropped ones do not count)."""
        if ring.last_seen != now:
            ring.last_seen = now
            self.devices.move_to_end(device)

    def push(self, device: str, ts: np.ndarray, values: np.ndarray, stamped: bool, now: float) -> PushResult:
        """Push samples for ``device`` at monotonic time ``now``; see :meth:`RingWindow.push`."""
        ring, evicted = self._ring(device, now)
        res = ring.push(ts, values, stamped)
        if res.accepted:
            self._seen(device, ring, now)
        res.evicted = list(evicted)
        return res

    def push_samples(self, device: str, samples: Samples, now: float) -> PushResult:
        """Push decoded ``samples`` for ``device`` at monotonic time ``now``. A single plain sample goes straight
        into the ring (no arrays); its common outcome (accepted, no window, no gap, no eviction) is the shared
        :attr:`one_accepted` result, which callers must not modify."""
        ring, evicted = self._ring(device, now)
        if samples.row is not None:
            code = ring.push_row(samples.t, samples.row, samples.stamped)
            if code & ACCEPTED:
                self._seen(device, ring, now)
                if code == ACCEPTED and evicted is _NO_EVICTIONS and ring.unchecked < ring.check_every:
                    return self.one_accepted
            res = ring.row_result(code)
        else:
            res = ring.push(samples.ts, samples.values, samples.stamped)
            if res.accepted:
                self._seen(device, ring, now)
        if evicted:
            res.evicted = list(evicted)
        return res

    def hold(self, device: str, n: int, t_last: float, stamped: bool, now: float) -> PushResult:
        """``n`` samples of ``device`` (the latest at epoch ``t_last``) that are not windowed (the machine is
        stopped or settling, :mod:`edge_runtime.pipeline.states`): its window restarts, its clock and its liveness
        move on (a later sample is not a gap, the device is not idle)."""
        ring, evicted = self._ring(device, now)
        ring.reset()
        if stamped and t_last > ring.last_ts:
            ring.last_ts = t_last
        self._seen(device, ring, now)
        res = PushResult(ring._no_windows, _EMPTY_F, _EMPTY_F, accepted=n)
        if evicted:
            res.evicted = list(evicted)
        return res

    def expire(self, now: float, idle_s: float) -> list[str]:
        """Remove devices not seen for ``idle_s`` seconds (monotonic); return their ids."""
        gone: list[str] = []
        for dev, ring in self.devices.items():  # LRU order: oldest first
            if now - ring.last_seen < idle_s:
                break
            gone.append(dev)
        for dev in gone:
            del self.devices[dev]
        return gone

    def retune(self, hop: int, gap_s: float) -> None:
        """Keep every buffer (same W and C) but use a new hop / gap tolerance (after a model reload)."""
        self.hop, self.gap_s = hop, gap_s
        for ring in self.devices.values():
            ring.hop, ring.gap_s = hop, gap_s
            # before its first window a ring has fill + to_next == W: it still needs W samples in all
            if ring.fill + ring.to_next > ring.window or ring.fill >= ring.window:
                ring.to_next = min(ring.to_next, hop)
