"""What is kept around every alert: raw samples from before the raise to after the clear, and every window's
errors in between. Pure (times are the stream's, given with the windows).

:class:`EvidenceRecorder` sees each device's scored windows and the alerts they caused. Per device it keeps a
small bounded ring of recent raw samples and window errors (the pre-raise margin); a raise opens an
:class:`Episode` with what the ring holds from ``margin_s`` before ``anomalous_since``; its windows are appended
until ``margin_s`` after the clear, then the episode is finished and handed back (the service writes it).

Raw samples are taken from the windows: each window's samples not covered by the device's previous window.
A window carries only its first and last timestamps, so the samples' times inside a window are spaced evenly
between the two (exact for a regularly sampled sensor).

The model's expected curve: for the windows that raise or update the alert (reconstructed already for the
alert's measured/expected detail: no extra inference), their full reconstruction (W, C) in the channels' units,
at most ``max_expected`` per alert (its raise and first updates; the rest counted in ``expected_dropped``).

Record format (:data:`VERSION`): 1 had no expected curves and no ``version`` in its meta; 2 adds ``exp_start``
(m,), ``exp_end`` (m,) (each curve's window's first and last sample time) and ``expected`` (m, W, C).
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]

VERSION = 2  # the evidence record's format (meta "version"; absent: 1, without expected curves)
EXPECTED = ("exp_start", "exp_end", "expected")  # the arrays version 2 adds


@dataclass
class Episode:
    """One alert's evidence. ``ts`` (n,) / ``values`` (n, C) raw samples; ``win_end`` (k,), ``win_score`` (k,),
    ``win_error`` (k, C) its windows' scores and per-channel errors; ``exp_start`` / ``exp_end`` (m,) and
    ``expected`` (m, W, C): the model's reconstruction of its raise/update windows; ``events``: its
    raise/update/clear alerts (a few fields each)."""

    alert_id: str
    device: str
    model_id: str
    threshold: float
    channels: list[str]
    units: dict[str, str]
    anomalous_since: float
    raised_end: float  # window_end of the raising window
    margin_s: float
    cleared_end: float = 0.0  # window_end of the clearing window (0: still raised)
    reason: str = ""  # why it was finished early (evicted, expired, reload, stopped, superseded)
    resumed: bool = False  # an alert adopted after a restart: the file on disk holds its start (merged at writing)
    samples_dropped: int = 0  # samples beyond max_samples, not kept
    expected_dropped: int = 0  # expected curves beyond max_expected, not kept
    _ts: list[Any] = field(default_factory=list)  # (n,) times, or (first, spacing) of a run of rows (made at arrays())
    _values: list[F32] = field(default_factory=list)
    _win: list[tuple[Any, Any, Any]] = field(default_factory=list)
    n_samples: int = 0
    n_windows: int = 0
    _exp: list[tuple[float, float, F32]] = field(default_factory=list)  # (window start, end, curve (W, C))
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def finish_at(self) -> float:
        """Stream time after which the episode has all it keeps (inf while raised)."""
        return self.cleared_end + self.margin_s if self.cleared_end else math.inf

    def add(self, ts: F64, values: F32, win_end: F64, win_score: F64, win_error: F32, max_samples: int) -> None:
        room = max(0, max_samples - self.n_samples)
        if ts.shape[0] > room:
            self.samples_dropped += ts.shape[0] - room
            ts, values = ts[:room], values[:room]
        if ts.shape[0]:
            self._ts.append(ts)
            self._values.append(values)
            self.n_samples += ts.shape[0]
        wroom = max(0, max_samples - self.n_windows)
        if win_end.shape[0] and wroom:
            k = min(wroom, win_end.shape[0])
            self._win.append((win_end[:k], win_score[:k], win_error[:k]))
            self.n_windows += k

    def add_run(self, t: float, dt: float, rows: F32, max_samples: int) -> None:
        """A run of rows spaced ``dt`` from ``t`` (the hot path: kept as is, times made at :meth:`arrays`)."""
        room = max(0, max_samples - self.n_samples)
        if rows.shape[0] > room:
            self.samples_dropped += rows.shape[0] - room
            rows = rows[:room]
        if rows.shape[0]:
            self._ts.append((t, dt))
            self._values.append(rows)
            self.n_samples += rows.shape[0]

    def add_windows(self, win_end: Any, win_score: Any, win_error: Any, max_samples: int) -> None:
        k = min(max(0, max_samples - self.n_windows), len(win_end))
        if k:
            self._win.append((win_end[:k], win_score[:k], win_error[:k]))
            self.n_windows += k

    def add_expected(self, t0: float, t1: float, curve: F32, max_expected: int) -> None:
        """The model's reconstruction ``curve`` (W, C) of the window from ``t0`` to ``t1``."""
        if len(self._exp) >= max_expected:
            self.expected_dropped += 1
        else:
            self._exp.append((t0, t1, curve))

    def snapshot(self) -> Episode:
        """A copy that later additions do not change (lists of references copied: cheap), for another thread
        to turn into :meth:`meta` and :meth:`arrays`."""
        return dataclasses.replace(self, _ts=list(self._ts), _values=list(self._values), _win=list(self._win),
                                   _exp=list(self._exp), events=list(self.events))

    def arrays(self) -> dict[str, np.ndarray]:
        """``ts``, ``values``, ``win_end``, ``win_score``, ``win_error`` (samples after ``finish_at`` cut),
        ``exp_start``, ``exp_end``, ``expected`` (m, W, C; (0, 0, C) without curves)."""
        c = len(self.channels)
        ts = np.concatenate([t if isinstance(t, np.ndarray) else t[0] + t[1] * np.arange(v.shape[0])
                             for t, v in zip(self._ts, self._values, strict=True)]) if self._ts else np.zeros(0)
        values = np.concatenate(self._values) if self._values else np.zeros((0, c), np.float32)
        keep = ts <= self.finish_at
        we = np.concatenate([w[0] for w in self._win]).astype(np.float64) if self._win else np.zeros(0)
        ws = np.concatenate([w[1] for w in self._win]).astype(np.float64) if self._win else np.zeros(0)
        wc = (np.concatenate([w[2] for w in self._win]).astype(np.float32) if self._win
              else np.zeros((0, c), np.float32))
        wkeep = we <= self.finish_at
        exp = self._exp
        return {"ts": ts[keep], "values": values[keep], "win_end": we[wkeep], "win_score": ws[wkeep],
                "win_error": wc[wkeep],
                "exp_start": np.array([e[0] for e in exp], np.float64),
                "exp_end": np.array([e[1] for e in exp], np.float64),
                "expected": np.stack([e[2] for e in exp]).astype(np.float32) if exp else no_expected(c)}

    def meta(self) -> dict[str, Any]:
        """The JSON part: ids, model, threshold, times, what it holds."""
        # the alert's own peak (a clear's peak_score): a raise's or an update's score is only its score then
        peak = max((max(float(e.get("score") or 0.0), float(e.get("peak_score") or 0.0)) for e in self.events),
                   default=0.0)
        return {"version": VERSION, "alert_id": self.alert_id, "device": self.device, "model_id": self.model_id,
                "threshold": self.threshold, "channels": list(self.channels), "units": dict(self.units),
                "anomalous_since": self.anomalous_since, "raised_end": self.raised_end,
                "cleared_end": self.cleared_end or None, "complete": bool(self.cleared_end) and not self.reason,
                "reason": self.reason or None, "margin_s": self.margin_s, "samples": self.n_samples,
                "samples_dropped": self.samples_dropped, "windows": self.n_windows, "peak_score": peak,
                "expected_windows": len(self._exp), "expected_dropped": self.expected_dropped,
                "events": list(self.events), **({"resumed": True} if self.resumed else {})}


def no_expected(n_channels: int) -> F32:
    """``expected`` of a record without curves: (0, 0, C)."""
    return np.zeros((0, 0, n_channels), np.float32)


def merge_resumed(old: tuple[Mapping[str, Any], Mapping[str, np.ndarray]],
                  new: tuple[Mapping[str, Any], Mapping[str, np.ndarray]]
                  ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """An alert's evidence across a restart: the file its raise wrote (``old``: meta, arrays) and what the
    resumed episode recorded since (``new``), as one (``restarts`` counts the joins). Different channels (another
    model): ``new`` alone."""
    (om, oa), (nm, na) = old, new
    if list(om.get("channels", [])) != list(nm.get("channels", [])):
        return dict(nm), dict(na)
    meta = dict(nm)
    for key in ("anomalous_since", "raised_end", "threshold", "model_id"):
        if om.get(key) is not None:
            meta[key] = om[key]
    for key in ("samples", "samples_dropped", "windows", "expected_dropped"):
        meta[key] = int(om.get(key) or 0) + int(nm.get(key) or 0)
    meta["peak_score"] = max(float(om.get("peak_score") or 0.0), float(nm.get("peak_score") or 0.0))
    meta["events"] = [*om.get("events", []), *nm.get("events", [])]
    meta["restarts"] = int(om.get("restarts") or 0) + 1
    meta["resumed"] = True
    arrays = {k: np.concatenate([np.asarray(oa[k]), np.asarray(na[k])]) for k in na if k not in EXPECTED}
    parts = [a for a in (oa, na) if EXPECTED[0] in a and len(a[EXPECTED[0]])]  # an old file has none
    shapes = {np.asarray(a["expected"]).shape[1:] for a in parts}
    if len(shapes) > 1:  # another window length: the resumed part's alone
        parts = [na]
    empty: dict[str, np.ndarray] = {"exp_start": np.zeros(0), "exp_end": np.zeros(0),
                                    "expected": no_expected(len(meta.get("channels", [])))}
    for k in EXPECTED:
        arrays[k] = np.concatenate([np.asarray(a[k]) for a in parts]) if parts else empty[k]
    meta["expected_windows"] = int(arrays["exp_start"].shape[0])
    return meta, arrays


EVENT_FIELDS = ("event", "seq", "alert_id", "score", "severity", "window_start", "window_end", "summary",
                "top_channels", "out_of_range", "time", "duration_s", "peak_score", "reason")


# a run of a device's raw samples: (time of the first, spacing, rows (n, C)); times materialised only when kept
Chunk = tuple[float, float, F32]


def _times(chunk: Chunk) -> F64:
    t, dt, rows = chunk
    return t + dt * np.arange(rows.shape[0], dtype=np.float64)


@dataclass
class _Device:
    last_t: float = -math.inf
    ring: deque[Chunk] = field(default_factory=deque)
    ring_n: int = 0
    wring: deque[tuple[F64, F64, F32]] = field(default_factory=deque)
    wring_n: int = 0
    episode: Episode | None = None


class EvidenceRecorder:
    """Per-device pre-raise rings and open episodes. ``margin_s``: kept before ``anomalous_since`` and after the
    clear; ``ring_samples``: samples (and windows) a device's ring holds at most; ``max_samples``: an episode's
    bound (samples beyond it are counted in ``samples_dropped``); ``max_expected``: the expected curves (the model's
    reconstruction of raise/update windows) an episode keeps (beyond: ``expected_dropped``).

    Per scored window (the hot path) it only slices the window's new rows and appends them to a ring: sample
    times are kept as (first, spacing) and made into arrays when an episode takes them."""

    def __init__(self, margin_s: float = 60.0, ring_samples: int = 512, max_samples: int = 20_000,
                 max_expected: int = 16) -> None:
        self.margin_s = margin_s
        self.ring_samples = ring_samples
        self.max_samples = max_samples
        self.max_expected = max_expected
        self.devices: dict[str, _Device] = {}

    def observe(self, device: str, windows: np.ndarray, t_start: np.ndarray, t_end: np.ndarray,
                scores: np.ndarray, errors: np.ndarray, alerts: Sequence[Mapping[str, Any]], model_id: str,
                threshold: float, channels: Sequence[str], units: Mapping[str, str],
                expected: Mapping[int, F32] | None = None) -> tuple[list[Episode], list[Episode]]:
        """One device's scored windows (``windows`` (k, W, C), ``t_*`` / ``scores`` (k,), ``errors`` (k, C)) and
        the alerts they caused, in time order; ``expected``: window index -> the model's reconstruction (W, C) in
        the channels' units, for the windows that raised or updated (matched to the alerts by ``window_end``).
        Returns ``(opened, finished)`` episodes."""
        d = self.devices.get(device)
        if d is None:
            d = self.devices[device] = _Device()
        if windows.shape[0] == 0:
            return [], []
        chunks = self._new_rows(d, windows, t_start.tolist(), t_end.tolist())
        wend, wscore, werr = t_end, scores, errors
        opened: list[Episode] = []
        finished: list[Episode] = []
        if d.episode is not None:
            for t, dt, rows in chunks:
                d.episode.add_run(t, dt, rows, self.max_samples)
            d.episode.add_windows(wend, wscore, werr, self.max_samples)
        self._push(d, chunks, wend, wscore, werr)
        for a in alerts:
            event = a.get("event") or ("raise" if a.get("state") == "raised" else "clear")
            ep = d.episode
            if event == "raise":
                if ep is not None:  # a new alert while the last one's post-clear margin runs: finish it now
                    ep.reason = ep.reason if ep.cleared_end else "superseded"
                    finished.append(ep)
                ep = d.episode = self._open(d, device, a, model_id, threshold, channels, units)
                opened.append(ep)
            elif ep is None:
                continue  # an alert of an episode this recorder never saw open (adopted after a restart)
            elif event == "clear":
                ep.cleared_end = float(a.get("window_end", d.last_t))
                if a.get("reason"):
                    ep.reason = str(a["reason"])
            if expected and event != "clear":
                self._expected(ep, a, expected, t_start, t_end)
            ep.events.append({f: a[f] for f in EVENT_FIELDS if f in a})
        ep = d.episode
        if ep is not None and d.last_t >= ep.finish_at:
            finished.append(ep)
            d.episode = None
        return opened, finished

    def _expected(self, ep: Episode, alert: Mapping[str, Any], expected: Mapping[int, F32], t_start: np.ndarray,
                  t_end: np.ndarray) -> None:
        """The curve of the window that made ``alert`` (the one ending at its ``window_end``), into ``ep``."""
        end = alert.get("window_end")
        for i, curve in expected.items():
            if float(t_end[i]) == end:
                ep.add_expected(float(t_start[i]), float(t_end[i]), np.asarray(curve, np.float32),
                                self.max_expected)
                return

    def resume(self, device: str, alert_id: str, anomalous_since: float, model_id: str, threshold: float,
               channels: Sequence[str], units: Mapping[str, str]) -> Episode | None:
        """An alert adopted after a restart (still raised): an episode that goes on recording it (``resumed``:
        the store merges it into the file its raise wrote, if that is still there). None when the device has
        one open already."""
        d = self.devices.get(device)
        if d is None:
            d = self.devices[device] = _Device()
        if d.episode is not None:
            return None
        d.episode = Episode(alert_id, device, model_id, float(threshold), list(channels), dict(units),
                            anomalous_since, anomalous_since, self.margin_s, resumed=True)
        return d.episode

    @staticmethod
    def _new_rows(d: _Device, windows: np.ndarray, t0: list[float], t1: list[float]) -> list[Chunk]:
        """Each window's rows after the device's last sample (times spaced evenly between its first and last)."""
        w = windows.shape[1]
        last = d.last_t
        out: list[Chunk] = []
        for i, (a, b) in enumerate(zip(t0, t1, strict=True)):
            dt = (b - a) / (w - 1) if w > 1 else 0.0
            if b <= last:  # the device's clock went back (a reset): the whole window is new
                last = -math.inf
            # sample j is at a + j dt: new from the first j with a + j dt > last
            n = w if a > last or dt <= 0 else w - min(w, int((last - a) / dt + 1e-6) + 1)
            if n > 0:
                out.append((b - (n - 1) * dt, dt, np.array(windows[i, w - n :], dtype=np.float32)))
            last = b
        d.last_t = last
        return out

    def _open(self, d: _Device, device: str, alert: Mapping[str, Any], model_id: str, threshold: float,
              channels: Sequence[str], units: Mapping[str, str]) -> Episode:
        since = float(alert.get("anomalous_since") or alert.get("window_end") or d.last_t)
        ep = Episode(str(alert.get("raised_alert_id") or alert.get("alert_id")), device, model_id, float(threshold),
                     list(channels), dict(units), since, float(alert.get("window_end", d.last_t)), self.margin_s)
        # from the margin before anomalous_since, or the raising window's start if earlier (its expected curve's
        # samples are all there when the margin is shorter than a window)
        lo = min(since - self.margin_s, float(alert.get("window_start", math.inf)))
        c = len(channels)
        if d.ring:  # the ring as one run of rows, then what is within the margin
            ts = np.concatenate([_times(ch) for ch in d.ring])
            rows = np.concatenate([ch[2] for ch in d.ring])
            keep = ts >= lo
            ep.add(ts[keep], rows[keep], np.zeros(0), np.zeros(0), np.zeros((0, c), np.float32), self.max_samples)
        if d.wring:
            we, ws, wc = (np.concatenate([np.asarray(w[j]) for w in d.wring]) for j in range(3))
            keep = we >= lo
            ep.add(np.zeros(0), np.zeros((0, c), np.float32), we[keep].astype(np.float64),
                   ws[keep].astype(np.float64), wc[keep].astype(np.float32), self.max_samples)
        return ep

    def _push(self, d: _Device, chunks: list[Chunk], wend: Any, wscore: Any, werr: Any) -> None:
        """Into the device's ring, trimmed to its newest ``ring_samples`` rows (so the margin before a raise is
        ``margin_s`` or what ``ring_samples`` holds, whichever is shorter)."""
        most = self.ring_samples
        for ch in chunks:
            d.ring.append(ch)
            d.ring_n += ch[2].shape[0]
        while d.ring_n > most:
            t, dt, rows = d.ring[0]
            cut = d.ring_n - most
            if cut >= rows.shape[0]:
                d.ring.popleft()
                d.ring_n -= rows.shape[0]
            else:
                d.ring[0] = (t + cut * dt, dt, rows[cut:])
                d.ring_n -= cut
        d.wring.append((wend, wscore, werr))
        d.wring_n += len(wend)
        while d.wring_n > most:
            we, ws, wc = d.wring[0]
            cut = d.wring_n - most
            if cut >= len(we):
                d.wring.popleft()
                d.wring_n -= len(we)
            else:
                d.wring[0] = (we[cut:], ws[cut:], wc[cut:])
                d.wring_n -= cut

    def forget(self, device: str, reason: str) -> Episode | None:
        """Drop a device's ring; its open episode, finished with ``reason`` (None when it had none)."""
        d = self.devices.pop(device, None)
        if d is None or d.episode is None:
            return None
        ep = d.episode
        if not ep.cleared_end:
            ep.reason, ep.cleared_end = reason, d.last_t
        return ep

    def finish_quiet(self, device: str) -> Episode | None:
        """``device`` went quiet (stale): its cleared episode, if one waits for the margin after its clear, is
        finished with what it has (its data ends there: no more is coming); a raised one stays open."""
        d = self.devices.get(device)
        if d is None or d.episode is None or not d.episode.cleared_end:
            return None
        ep, d.episode = d.episode, None
        return ep

    def open_episodes(self) -> list[Episode]:
        return [d.episode for d in self.devices.values() if d.episode is not None]

