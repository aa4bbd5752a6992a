"""Operating states: is the machine running, stopped, settling after a start, or somewhere training never was?

Pure and vectorised. The trainer learns a :class:`StateModel` from a status column or a condition
(:func:`learn`) and stores it in the model's ``states`` metadata field; the edge applies it without the column:

- :class:`StateGate` (per sample, at ingest): a sample matching the stopped signature (or failing the
  running condition) is ``stopped``; the first ``settle_samples`` samples after a stop are ``settling``;
  only ``running`` samples are windowed, so a stopped device is not scored and its windows restart when it
  runs again.
- :class:`DistributionCheck` (per window, at scoring): the first ``windows`` windows of a device after it
  starts (or runs again) are held back from the alert logic; when every one of them scores above
  ``factor`` x threshold the device is ``out_of_distribution`` (reported once, no process alerts) until
  ``windows`` windows in a row score below the threshold again. Otherwise the held windows are decided as usual.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

RUNNING = "running"
STOPPED = "stopped"
SETTLING = "settling"
OUT_OF_DISTRIBUTION = "out_of_distribution"
STATES = (RUNNING, STOPPED, SETTLING, OUT_OF_DISTRIBUTION)
GATE_STATES = (RUNNING, STOPPED, SETTLING)  # StateGate.gate's codes

_OPS = (">=", "<=", "==", "!=", ">", "<")
_COND = re.compile(r"^\s*(?P<ch>[^<>=!]+?)\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<v>[-+0-9.eE]+)\s*$")
STOP_BAND_Q = 0.995  # the stopped band of a channel: this quantile of |x - off level| over stopped rows ...
STOP_BAND_MARGIN = 1.5  # ... times this margin
MAX_RUNNING_IN_BAND = 0.02  # a channel tells a stop when at most this share of running rows lie in its band
SETTLE_Z = 4.0  # settled: every channel within this many robust std of its running median ...
SETTLE_HOLD = 10  # ... for this many samples in a row

BoolArray = npt.NDArray[np.bool_]


class StateError(ValueError):
    """A state option or a stored ``states`` document is unusable (one line naming the field)."""


@dataclass(frozen=True)
class Condition:
    """``channel op value`` (``motor_speed_rpm>100``): the rows where it holds are running."""

    channel: str
    op: str
    value: float

    @classmethod
    def parse(cls, text: str) -> Condition:
        m = _COND.match(text)
        if not m:
            raise StateError(f"--running-when {text!r}: expected CHANNEL OP NUMBER, OP one of {' '.join(_OPS)} "
                             "(e.g. 'motor_speed_rpm>100')")
        try:
            value = float(m["v"])
        except ValueError:
            raise StateError(f"--running-when {text!r}: {m['v']!r} is not a number") from None
        if not math.isfinite(value):
            raise StateError(f"--running-when {text!r}: the value must be finite")
        return cls(m["ch"].strip(), m["op"], value)

    def text(self) -> str:
        return f"{self.channel}{self.op}{self.value:g}"

    def holds_value(self, v: float) -> bool:
        """:meth:`holds` of one value (NaN: never), without arrays."""
        c, op = self.value, self.op
        if v != v:
            return False
        return bool(v > c if op == ">" else v >= c if op == ">=" else v < c if op == "<" else v <= c if op == "<="
                    else v == c if op == "==" else v != c)

    def holds(self, column: np.ndarray) -> BoolArray:
        """Where the condition holds over ``column`` (n,) (NaN: never)."""
        v = np.asarray(column, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            if self.op == ">":
                return v > self.value
            if self.op == ">=":
                return v >= self.value
            if self.op == "<":
                return v < self.value
            if self.op == "<=":
                return v <= self.value
            if self.op == "==":
                return np.asarray(v == self.value)
            return np.asarray((v != self.value) & ~np.isnan(v))


def running_from_column(states: Sequence[str] | np.ndarray, running: Sequence[str]) -> BoolArray:
    """``states`` (T,) text cells -> (T,) True where the cell is one of ``running`` (ignoring case and spaces)."""
    want = {r.strip().lower() for r in running}
    cells = np.char.lower(np.char.strip(np.asarray(states, dtype=str)))
    return np.isin(cells, list(want))


def transitions(running: np.ndarray) -> np.ndarray:
    """Indices (k,) of the rows where a stopped stretch ends and running starts (not a file's first row)."""
    r = np.asarray(running, dtype=bool)
    return np.flatnonzero(r[1:] & ~r[:-1]) + 1


def settled(running: np.ndarray, settle: int) -> BoolArray:
    """(T,) running rows that are not within ``settle`` samples after a start (:func:`transitions`)."""
    r = np.asarray(running, dtype=bool)
    out: BoolArray = r.copy()
    for t in transitions(r):
        out[t : t + settle] = False
    return out


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``(start, end)`` (end exclusive) of every stretch where ``mask`` (T,) is True."""
    m = np.concatenate(([False], np.asarray(mask, dtype=bool), [False]))
    d = np.flatnonzero(m[1:] != m[:-1])
    return [(int(a), int(b)) for a, b in zip(d[::2], d[1::2], strict=True)]


@dataclass
class StateModel:
    """The ``states`` field of the model metadata: how the edge tells the operating state from the channels.

    ``condition`` (``"motor_speed_rpm>100"``): the rule given to ``fit``, applied as is at the edge; else the
    learned stopped signature: a sample is stopped when every channel of ``stop_channels`` lies within
    ``stop_tolerance`` of its ``stop_level`` (raw units; empty: no stop can be recognised). ``settle_samples``:
    samples after a start that are not scored. ``source`` says what it was learned from; ``learned`` holds
    what training measured (running share, stops, how well the signature recognises them).
    """

    source: str
    settle_samples: int = 0
    condition: str | None = None
    stop_channels: list[str] = field(default_factory=list)
    stop_level: list[float] = field(default_factory=list)
    stop_tolerance: list[float] = field(default_factory=list)
    learned: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: Any) -> StateModel:
        if not isinstance(doc, dict):
            raise StateError("states: not a JSON object")
        try:
            model = cls(
                source=str(doc.get("source", "")),
                settle_samples=int(doc.get("settle_samples", 0)),
                condition=None if doc.get("condition") is None else str(doc["condition"]),
                stop_channels=[str(c) for c in doc.get("stop_channels", [])],
                stop_level=[float(v) for v in doc.get("stop_level", [])],
                stop_tolerance=[float(v) for v in doc.get("stop_tolerance", [])],
                learned=dict(doc.get("learned", {})),
            )
        except (TypeError, ValueError, OverflowError) as exc:
            raise StateError(f"states: a malformed field: {exc}") from None
        return model

    def validate(self, channels: Sequence[str]) -> None:
        """Raise :class:`StateError` naming the first wrong field (``channels``: the model's)."""
        if self.settle_samples < 0:
            raise StateError(f"states.settle_samples: must be >= 0, got {self.settle_samples}")
        if self.condition is not None:
            cond = Condition.parse(self.condition)
            if cond.channel not in channels:
                raise StateError(f"states.condition: channel {cond.channel!r} is not one of the model's channels")
        k = len(self.stop_channels)
        if len(self.stop_level) != k or len(self.stop_tolerance) != k:
            raise StateError("states: stop_channels, stop_level and stop_tolerance need one entry each")
        unknown = [c for c in self.stop_channels if c not in channels]
        if unknown:
            raise StateError(f"states.stop_channels: {unknown[0]!r} is not one of the model's channels")
        if not all(math.isfinite(v) for v in self.stop_level):
            raise StateError("states.stop_level: values must be finite")
        if not all(math.isfinite(v) and v >= 0 for v in self.stop_tolerance):
            raise StateError("states.stop_tolerance: values must be finite and >= 0")

    def rule(self, channels: Sequence[str]) -> StopRule:
        """The edge's rule over samples of the model's ``channels``."""
        return StopRule.of(self, channels)


@dataclass(frozen=True)
class StopRule:
    """:class:`StateModel` compiled for rows of the model's channels: :meth:`stopped` (vectorised) and
    :meth:`stopped_row` (one plain sample)."""

    index: tuple[int, ...]
    level: np.ndarray  # (k,) float64
    tol: np.ndarray  # (k,) float64
    condition: Condition | None
    cond_index: int
    pairs: tuple[tuple[int, float, float], ...] = ()  # (index, level, tol) per stop channel, for one sample

    @classmethod
    def of(cls, model: StateModel, channels: Sequence[str]) -> StopRule:
        names = list(channels)
        cond = Condition.parse(model.condition) if model.condition is not None else None
        index = tuple(names.index(c) for c in model.stop_channels)
        return cls(index, np.asarray(model.stop_level, np.float64), np.asarray(model.stop_tolerance, np.float64),
                   cond, names.index(cond.channel) if cond else -1,
                   tuple(zip(index, map(float, model.stop_level), map(float, model.stop_tolerance), strict=True)))

    @property
    def active(self) -> bool:
        """False when nothing can be recognised: every sample is running."""
        return self.condition is not None or bool(self.index)

    def stopped(self, values: np.ndarray) -> BoolArray:
        """(n,) True where a row of ``values`` (n, C) is a stopped machine (NaN values never match a stop)."""
        v = np.asarray(values)
        if self.condition is not None:
            return ~self.condition.holds(v[:, self.cond_index])
        if not self.index:
            return np.zeros(v.shape[0], dtype=bool)
        with np.errstate(invalid="ignore"):
            return np.asarray(np.all(np.abs(v[:, list(self.index)] - self.level) <= self.tol, axis=1))

    def stopped_row(self, row: Sequence[float]) -> bool:
        """:meth:`stopped` of one sample (a list of C numbers), without arrays."""
        c = self.condition
        if c is not None:
            return not c.holds_value(row[self.cond_index])
        if not self.pairs:
            return False
        return all(abs(row[i] - lv) <= tl for i, lv, tl in self.pairs)


def learn(values: np.ndarray, running: np.ndarray, channels: Sequence[str], source: str,
          condition: Condition | None = None) -> StateModel:
    """Learn the stopped signature and the settling time from ``values`` (T, C) and ``running`` (T,) bool.

    A channel tells a stop when its stopped rows lie in a narrow band around their median (the
    :data:`STOP_BAND_Q` quantile of the distance, x :data:`STOP_BAND_MARGIN`) that at most
    :data:`MAX_RUNNING_IN_BAND` of the running rows enter. The settling time is the longest stretch after a
    start before every channel stays within :data:`SETTLE_Z` robust std of its running median for
    :data:`SETTLE_HOLD` samples."""
    return learn_many([values], [running], channels, source, condition)


def learn_many(values: Sequence[np.ndarray], running: Sequence[np.ndarray], channels: Sequence[str], source: str,
               condition: Condition | None = None) -> StateModel:
    """:func:`learn` over several files ((T_i, C) and (T_i,) each; transitions are never across files)."""
    xs = [np.asarray(v, dtype=np.float64) for v in values]
    rs = [np.asarray(r, dtype=bool) for r in running]
    x = np.concatenate(xs)
    r = np.concatenate(rs)
    n_run, n_stop = int(r.sum()), int((~r).sum())
    if n_run == 0:
        raise StateError(f"{source}: no running rows in the data")
    learned: dict[str, Any] = {"rows": int(r.size), "running_rows": n_run, "stopped_rows": n_stop,
                               "starts": int(sum(len(transitions(ri)) for ri in rs))}
    out = StateModel(source=source, condition=None if condition is None else condition.text(), learned=learned)
    xr = x[r]
    if n_stop:
        xs_ = x[~r]
        off = np.median(xs_, axis=0)
        band = STOP_BAND_MARGIN * np.quantile(np.abs(xs_ - off), STOP_BAND_Q, axis=0)
        band = np.maximum(band, 1e-6 * np.maximum(1.0, np.abs(off)))
        in_band = (np.abs(xr - off) <= band).mean(axis=0)  # (C,) share of running rows inside each band
        tells = np.flatnonzero(in_band <= MAX_RUNNING_IN_BAND)
        out.stop_channels = [channels[int(i)] for i in tells]
        out.stop_level = [float(off[i]) for i in tells]
        out.stop_tolerance = [float(band[i]) for i in tells]
        if len(tells):
            rule = StopRule.of(out, channels)
            learned["stops_recognised"] = float(rule.stopped(xs_).mean())
            learned["running_taken_for_stopped"] = float(rule.stopped(xr).mean())
    # settling: from each start until every channel stays near its running median
    med = np.median(xr, axis=0)
    q1, q3 = np.quantile(xr, [0.25, 0.75], axis=0)
    spread = np.maximum((q3 - q1) / 1.349, 1e-9 * np.maximum(1.0, np.abs(med)))
    settle = []
    lengths = []
    for xi, ri in zip(xs, rs, strict=True):
        ok = np.all(np.abs(xi - med) <= SETTLE_Z * spread, axis=1) & ri
        for a, b in runs(ri):
            if a == 0:
                continue  # the file starts running: not a start seen in the data
            lengths.append(b - a)
            hold = min(SETTLE_HOLD, b - a)
            seg = ok[a:b].astype(np.int64)
            csum = np.concatenate(([0], np.cumsum(seg)))
            full = np.flatnonzero(csum[hold:] - csum[:-hold] == hold) if b - a >= hold else np.array([], int)
            settle.append(int(full[0]) if full.size else b - a)
    if settle:
        cap = int(np.median(lengths)) // 2
        out.settle_samples = int(min(max(settle), cap))
        learned["settle_per_start"] = settle
    return out


class StateGate:
    """Each device's operating state from its samples, at ingest (pure: no clock, no I/O).

    :meth:`gate_row` / :meth:`gate` say which samples are windowed (running) and report state changes.
    A device is ``running`` until a sample says otherwise. At most ``max_devices`` are tracked (the oldest
    forgotten first; a forgotten device starts again as running)."""

    def __init__(self, rule: StopRule, settle: int, max_devices: int = 10_000) -> None:
        self.rule = rule
        self.settle = int(settle)
        self.max_devices = max_devices
        self.devices: dict[str, list[Any]] = {}  # device -> [state, samples since the last stopped one]

    def state(self, device: str) -> str:
        st = self.devices.get(device)
        return RUNNING if st is None or st[0] is None else str(st[0])

    def counts(self) -> dict[str, int]:
        """Devices per state (``devices_stopped``, ``devices_settling``) for the stats."""
        states = [st[0] for st in self.devices.values()]
        return {"devices_stopped": states.count(STOPPED), "devices_settling": states.count(SETTLING)}

    def _entry(self, device: str) -> list[Any]:
        st = self.devices.get(device)
        if st is None:
            if len(self.devices) >= self.max_devices:
                del self.devices[next(iter(self.devices))]
            st = self.devices[device] = [None, math.inf]  # None: not seen yet (its first state is a change)
        return st

    def forget(self, device: str) -> None:
        self.devices.pop(device, None)

    def gate_row(self, device: str, row: Sequence[float]) -> tuple[bool, str | None]:
        """One sample: ``(windowed, new state or None)``."""
        st = self.devices.get(device) or self._entry(device)
        if self.rule.stopped_row(row):
            st[1] = 0
            new = STOPPED
        else:
            st[1] += 1
            new = RUNNING if st[1] > self.settle else SETTLING
        changed = new if new != st[0] else None
        st[0] = new
        return new == RUNNING, changed

    def gate(self, device: str, values: np.ndarray) -> tuple[npt.NDArray[np.int64], list[tuple[int, str]]]:
        """Samples ``values`` (n, C): ``(code (n,), [(index, new state), ...])``, vectorised; ``code`` indexes
        :data:`GATE_STATES` (0 running: windowed; 1 stopped, 2 settling: not windowed)."""
        st = self._entry(device)
        n = values.shape[0]
        stopped = self.rule.stopped(values)
        idx = np.arange(n)
        last = np.maximum.accumulate(np.where(stopped, idx, -1))
        carry = st[1] if math.isfinite(st[1]) else float(1 << 62)
        since = np.where(last >= 0, idx - last, carry + idx + 1)  # samples since the last stopped one
        code = np.where(stopped, 1, np.where(since > self.settle, 0, 2))  # 0 running, 1 stopped, 2 settling
        prev = -1 if st[0] is None else GATE_STATES.index(st[0])
        change = np.flatnonzero(np.diff(code, prepend=prev))
        st[0] = GATE_STATES[int(code[-1])] if n else st[0]
        st[1] = float(since[-1]) if n and since[-1] < 1 << 61 else (st[1] if not n else math.inf)
        return code, [(int(i), GATE_STATES[int(code[i])]) for i in change]


@dataclass
class _Dist:
    held: list[tuple[Any, int, int]] = field(default_factory=list)  # batches held while deciding
    seen: int = 0  # windows seen since the start
    far: int = 0  # of those, above factor x threshold
    decided: bool = False
    ood: bool = False
    below: int = 0  # windows in a row below the threshold while out of distribution


class DistributionCheck:
    """Out-of-distribution decision per device, over its scored windows (pure; see the module docstring).

    :meth:`update` takes one device's batch of scores with an opaque ``item`` for it and returns what to hand to
    the alert logic, ``[(item, lo, hi), ...]`` slices of held and current batches in order, and the state change
    (``out_of_distribution`` or ``running``) or None. ``windows`` 0 turns the check off."""

    def __init__(self, windows: int, factor: float, max_devices: int = 10_000) -> None:
        self.windows = int(windows)
        self.factor = float(factor)
        self.max_devices = max_devices
        self.devices: dict[str, _Dist] = {}

    def restart(self, device: str) -> None:
        """The device starts again (after a stop): its next ``windows`` windows are checked before any alert."""
        self.devices.pop(device, None)

    def is_out(self, device: str) -> bool:
        d = self.devices.get(device)
        return d is not None and d.ood

    def held(self, device: str) -> int:
        """Windows of ``device`` held while deciding."""
        d = self.devices.get(device)
        return 0 if d is None else sum(b - a for _, a, b in d.held)

    def update(self, device: str, scores: np.ndarray, threshold: float, item: Any
               ) -> tuple[list[tuple[Any, int, int]], str | None]:
        n = len(scores)
        if self.windows <= 0:
            return [(item, 0, n)], None
        d = self.devices.get(device)
        if d is None:
            if len(self.devices) >= self.max_devices:
                del self.devices[next(iter(self.devices))]
            d = self.devices[device] = _Dist()
        elif d.decided and not d.ood:
            return [(item, 0, n)], None  # the common case: in distribution, nothing held
        far_level = self.factor * threshold
        code = np.zeros(n, dtype=np.int8)  # 0 released, 1 held, 2 dropped (out of distribution)
        change: str | None = None
        released: list[tuple[Any, int, int]] = []
        for i, s in enumerate(np.asarray(scores, dtype=np.float64).tolist()):
            if d.ood:
                code[i] = 2
                d.below = d.below + 1 if s < threshold else 0
                if d.below >= self.windows:
                    d.ood, d.decided, change = False, True, RUNNING
            elif not d.decided:
                code[i] = 1
                d.seen += 1
                d.far += s > far_level
                if d.seen >= self.windows:
                    if d.far >= self.windows:  # every window of the start far above the threshold
                        d.ood, d.below, d.held, change = True, 0, [], OUT_OF_DISTRIBUTION
                        code[code == 1] = 2
                    else:
                        d.decided = True
                        released, d.held = d.held, []
                        code[code == 1] = 0
        for a, b in runs(code == 0):
            released.append((item, a, b))
        for a, b in runs(code == 1):
            d.held.append((item, a, b))
        return released, change
