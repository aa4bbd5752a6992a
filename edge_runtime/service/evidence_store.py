"""The evidence store on disk: one ``.npz`` per alert in ``alerts.evidence_dir``, bounded by size and age.

:class:`EvidenceStore` writes, lists, reads and evicts files (oldest first past ``max_bytes`` or ``max_age_s``).
A file is written whole to a temporary name and renamed, so a crash leaves the old file or the new one, never
half of one; a file that cannot be read back (cut short, not ours) is removed when found, counted
(``evidence_corrupt``) and logged. A full disk or an unwritable folder is counted (``evidence_write_error``)
and logged (rate-limited): the daemon keeps scoring and alerting without evidence.

:class:`Evidence` is the daemon's part: an :class:`~edge_runtime.pipeline.evidence.EvidenceRecorder` fed by the
scorer (under its own lock) and a writer thread, so compressing and writing never happens on the MQTT network
thread; a full write queue drops the episode (``evidence_queue_full``). An episode is written at its raise (what
came before) and again when finished (margin after the clear), so a crash loses at most the part since the raise.

File layout (``numpy.load``): ``ts`` (n,) epoch s, ``values`` (n, C) raw samples; ``win_end`` (k,), ``win_score``
(k,), ``win_error`` (k, C) the windows' scores and per-channel errors; ``exp_start`` / ``exp_end`` (m,) and
``expected`` (m, W, C) float32: the model's reconstruction (the channels' units) of the windows that raised or
updated the alert, with each window's first and last sample time; ``meta`` a JSON string (``version``, alert id,
device, model id, threshold, channels, units, times, the alert messages' summaries). Version 1 files (no
``version`` in meta, no expected curves) still load: :func:`decode` gives them empty curve arrays.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.pipeline.evidence import EXPECTED, Episode, EvidenceRecorder, merge_resumed, no_expected
from edge_runtime.pipeline.stats import RateLimitedLog, Stats

log = logging.getLogger(__name__)

SUFFIX = ".npz"
ARRAYS = ("ts", "values", "win_end", "win_score", "win_error")


class EvidenceError(LookupError):
    """No evidence for that alert id, or its file cannot be read."""


def file_name(alert_id: str) -> str:
    """A file name for ``alert_id`` (device ids are already ``[A-Za-z0-9_.:@-]``; ``/`` and ``\\0`` refused)."""
    safe = "".join(ch if ch.isalnum() or ch in "_.:@-" else "_" for ch in alert_id)[:200]
    return (safe if safe.strip(".") else "_") + SUFFIX


@dataclass(frozen=True)
class Entry:
    alert_id: str
    path: Path
    size: int
    mtime: float
    meta: dict[str, Any]


def encode(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> bytes:
    """One episode as ``.npz`` bytes (compressed)."""
    buf = io.BytesIO()
    named: dict[str, Any] = {"meta": np.array(json.dumps(meta, allow_nan=False)), **arrays}
    np.savez_compressed(buf, **named)
    return buf.getvalue()


def decode(data: bytes | os.PathLike[str] | str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(meta, arrays)`` of an evidence file (a path or its bytes); ValueError when it is not one."""
    src: Any = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        with np.load(src, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"][()]))
            arrays = {k: z[k] for k in ARRAYS}
            arrays.update({k: z[k] for k in EXPECTED if k in z.files})
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise ValueError(f"not an evidence file: {str(exc)[:120] or type(exc).__name__}") from None
    except Exception as exc:  # noqa: BLE001 - zipfile.BadZipFile and friends from a damaged file
        raise ValueError(f"not an evidence file: {type(exc).__name__}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("alert_id"), str):
        raise ValueError("not an evidence file: no alert_id in its meta")
    if "expected" not in arrays:  # version 1: no expected curves
        arrays.update(exp_start=np.zeros(0), exp_end=np.zeros(0),
                      expected=no_expected(int(arrays["values"].shape[1]) if arrays["values"].ndim == 2 else 0))
    return meta, arrays


class EvidenceStore:
    """The files of one folder, at most ``max_bytes`` in all and none older than ``max_age_s`` (0: no age limit)."""

    def __init__(self, folder: str | os.PathLike[str], max_bytes: int = 4 << 20, max_age_s: float = 7 * 86400.0,
                 stats: Stats | None = None, rl: RateLimitedLog | None = None,
                 clock: Any = time.time) -> None:
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.stats = stats or Stats()
        self.rl = rl or RateLimitedLog(log)
        self._clock = clock
        self._lock = threading.Lock()
        self.index: dict[str, Entry] = {}
        self.usable = self._scan()

    def _scan(self) -> bool:
        """Read the folder (made when missing): every readable file indexed, unreadable ones removed."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            names = sorted(p for p in self.folder.iterdir() if p.suffix == SUFFIX and p.is_file())
            for stale in self.folder.glob("*.tmp"):  # a write cut short by a crash
                stale.unlink(missing_ok=True)
        except OSError as exc:
            self._write_error("cannot use the evidence folder", exc)
            return False
        for p in names:
            self._index_file(p)
        self.evict()
        return True

    def _index_file(self, p: Path) -> Entry | None:
        try:
            meta, _ = decode(p)
            st = p.stat()
        except (ValueError, OSError) as exc:
            self.stats.drop("evidence_corrupt")
            self.rl.log(logging.WARNING, "evidence_corrupt", "evidence file %s is unreadable (%s): removed",
                        p.name, str(exc)[:120])
            with contextlib.suppress(OSError):
                p.unlink(missing_ok=True)
            return None
        e = Entry(meta["alert_id"], p, st.st_size, st.st_mtime, meta)
        self.index[e.alert_id] = e
        return e

    def _write_error(self, what: str, exc: OSError) -> None:
        self.stats.drop("evidence_write_error")
        self.rl.log(logging.WARNING, "evidence_write_error", "%s %s: %s (alerts go on without evidence)",
                    what, self.folder, exc.strerror or exc)

    def write(self, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> bool:
        """Write (or replace) one alert's file, then evict past the bounds. False when it could not be written. Its
        ``samples`` and ``windows`` are those of ``arrays`` (an episode's samples after its end are cut there)."""
        alert_id = str(meta["alert_id"])
        meta = {**meta, "samples": int(len(arrays["ts"])), "windows": int(len(arrays["win_end"]))}
        data = encode(meta, arrays)
        if len(data) > self.max_bytes:
            self.stats.drop("evidence_too_big")
            self.rl.log(logging.WARNING, "evidence_too_big", "evidence of %s is %d bytes, more than "
                        "alerts.evidence_max_bytes %d: not kept", alert_id, len(data), self.max_bytes)
            return False
        path = self.folder / file_name(alert_id)
        tmp = path.with_suffix(".tmp")
        with self._lock:
            try:
                if not self.usable:
                    self.folder.mkdir(parents=True, exist_ok=True)
                    self.usable = True
                with open(tmp, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, path)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)
                self._write_error("cannot write evidence to", exc)
                return False
            self.index[alert_id] = Entry(alert_id, path, len(data), self._clock(), dict(meta))
            self.stats.incr("evidence_written")
            self._evict_locked(keep=alert_id)
        return True

    def evict(self) -> int:
        """Remove the oldest files past ``max_bytes`` and those older than ``max_age_s``; how many."""
        with self._lock:
            return self._evict_locked()

    def _evict_locked(self, keep: str = "") -> int:
        now = self._clock()
        by_age = sorted(self.index.values(), key=lambda e: e.mtime)
        total = sum(e.size for e in by_age)
        n = 0
        for e in by_age:
            too_old = self.max_age_s > 0 and now - e.mtime > self.max_age_s
            if not too_old and (total <= self.max_bytes or e.alert_id == keep):
                continue
            try:
                e.path.unlink(missing_ok=True)
            except OSError as exc:
                self._write_error("cannot remove old evidence from", exc)
                continue
            del self.index[e.alert_id]
            total -= e.size
            n += 1
        if n:
            self.stats.incr("evidence_evicted", n)
        return n

    def total_bytes(self) -> int:
        with self._lock:
            return sum(e.size for e in self.index.values())

    def entries(self) -> list[Entry]:
        """Every alert kept, oldest first."""
        with self._lock:
            return sorted(self.index.values(), key=lambda e: e.mtime)

    def read_bytes(self, alert_id: str) -> bytes:
        e = self.index.get(alert_id)
        if e is None:
            raise EvidenceError(f"no evidence for alert {alert_id!r} ({len(self.index)} alert(s) kept; the oldest go "
                                "past alerts.evidence_max_mb or evidence_max_age_s)")
        try:
            return e.path.read_bytes()
        except OSError as exc:
            raise EvidenceError(f"cannot read {e.path}: {exc.strerror or exc}") from None

    def read(self, alert_id: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        try:
            return decode(self.read_bytes(alert_id))
        except ValueError as exc:
            raise EvidenceError(f"{alert_id}: {exc}") from None


STOP = object()


class Evidence:
    """The daemon's evidence: records what the scorer sees (any thread, under one lock) and writes episodes on
    its own thread. ``queue_max``: episodes waiting to be written at most (beyond: ``evidence_queue_full``)."""

    def __init__(self, store: EvidenceStore, recorder: EvidenceRecorder, stats: Stats, queue_max: int = 64) -> None:
        self.store = store
        self.recorder = recorder
        self.stats = stats
        self._lock = threading.Lock()
        self._q: queue.Queue[Any] = queue.Queue(queue_max)
        self._thread: threading.Thread | None = None

    def start(self) -> list[threading.Thread]:
        self._thread = threading.Thread(target=self._run, name="edgewatch-evidence", daemon=True)
        self._thread.start()
        return [self._thread]

    def observe(self, device: str, windows: np.ndarray, t_start: np.ndarray, t_end: np.ndarray,
                scores: np.ndarray, errors: np.ndarray, alerts: Sequence[Mapping[str, Any]], model_id: str,
                threshold: float, channels: Sequence[str], units: Mapping[str, str],
                expected: Mapping[int, np.ndarray] | None = None) -> None:
        with self._lock:
            opened, finished = self.recorder.observe(device, windows, t_start, t_end, scores, errors, alerts,
                                                     model_id, threshold, channels, units, expected)
            if not opened and not finished:  # the hot path: nothing to write
                return
            snapshots = [ep.snapshot() for ep in [*finished, *opened]]  # made into files on the writer thread
        for snap in snapshots:
            self._submit(snap)

    def resume(self, device: str, alert_id: str, anomalous_since: float, model_id: str, threshold: float,
               channels: Sequence[str], units: Mapping[str, str]) -> None:
        """An alert adopted after a restart: recorded on from here and, when written, joined to the file its
        raise wrote (on the writer thread; a start of its own when that file is gone)."""
        with self._lock:
            self.recorder.resume(device, alert_id, anomalous_since, model_id, threshold, channels, units)

    def finish_quiet(self, devices: list[str]) -> None:
        """Devices gone quiet: their cleared episodes written now (:meth:`EvidenceRecorder.finish_quiet`)."""
        with self._lock:
            snaps = [ep.snapshot() for ep in map(self.recorder.finish_quiet, devices) if ep is not None]
        for snap in snaps:
            self._submit(snap)

    def forget(self, device: str, reason: str) -> None:
        with self._lock:
            ep = self.recorder.forget(device, reason)
            snap = None if ep is None else ep.snapshot()
        if snap is not None:
            self._submit(snap)

    def _submit(self, snap: Episode | tuple[dict[str, Any], dict[str, np.ndarray]]) -> None:
        try:
            self._q.put_nowait(snap)
        except queue.Full:
            self.stats.drop("evidence_queue_full")
            alert_id = snap.alert_id if isinstance(snap, Episode) else snap[0].get("alert_id")
            self.store.rl.log(logging.WARNING, "evidence_queue_full", "evidence writer behind: evidence of %s "
                              "not written", alert_id)

    def defer(self, fn: Any) -> bool:
        """Run ``fn()`` on the writer thread (an evidence request); False when its queue is full."""
        try:
            self._q.put_nowait(fn)
        except queue.Full:
            return False
        return True

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is STOP:
                return
            try:
                self._write(item)
            except Exception:  # noqa: BLE001 - a bug here must not end the writer
                log.exception("writing evidence failed")

    def _write(self, item: Any) -> None:
        if callable(item):
            item()
            return
        meta, arrays = (item.meta(), item.arrays()) if isinstance(item, Episode) else item
        if meta.get("resumed") and not meta.get("restarts"):  # its start is in the file its raise wrote
            with contextlib.suppress(EvidenceError):  # gone (evicted, unreadable): this part alone
                meta, arrays = merge_resumed(self.store.read(str(meta["alert_id"])), (meta, arrays))
        self.store.write(meta, arrays)

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is still open (marked ``stopped``) and what waits, then end the writer."""
        with self._lock:
            snaps = []
            for ep in self.recorder.open_episodes():
                meta = ep.meta()
                if not ep.cleared_end:
                    meta["reason"], meta["complete"] = "stopped", False
                snaps.append((meta, ep.arrays()))
        for snap in snaps:
            self._submit(snap)
        if self._thread is None:
            while not self._q.empty():
                item = self._q.get_nowait()
                if not callable(item):
                    self._write(item)
            return
        try:
            self._q.put(STOP, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the writer took everything queued (tests)."""
        deadline = time.monotonic() + timeout
        while not self._q.empty() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        return self._q.empty()
