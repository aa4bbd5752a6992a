"""Per-channel sensor health: the fill of missing values, the limits learned at training, the checks. Pure.

One implementation for the trainer (``fit`` learns the limits with :func:`learn_limits` and stores them in
the model's ``health`` field, :mod:`edge_runtime.contract`), ``replay`` (:func:`fill_block`) and the daemon
(:class:`ChannelHealth`, one per device, fed every sample it receives, in order).

A channel of a device is, after each sample (codes in :data:`STATES`):

- ``missing``: no value (null, NaN, absent from a keyed message) for more than ``fill.limit_samples``
  samples in a row; up to that many its last value is carried forward (``ffill``), afterwards its last
  good value stays in the window (the scorer excludes the channel), or the training mean when it never had one;
- ``out_of_range``: outside ``[min - margin, max + margin]`` (the range seen in training, or the config's) for
  ``range_hold`` samples in a row; the channel stays in the process score unless it is frozen there too, or
  ``health.range_excludes`` (:func:`left_out`);
- ``stuck``: flat (``|x_t - x_{t-1}| <= flat_tol``) for more than ``max_flat_samples`` samples in a row,
  longer than the channel is ever flat in the normal running data (0: not checked);
- ``ok`` otherwise. A missing value takes precedence over out_of_range, that over stuck.

``stale`` is a device state (the device sends nothing for longer than ``stale_after_s``), told by
:func:`is_stale` from times the caller gives. Shapes: ``values`` (n, C) float, one row per sample.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

_less, _greater, _less_equal = np.less, np.greater, np.less_equal
try:  # the C function under np.count_nonzero's Python wrapper (a frame less per call on the hot path)
    from numpy._core.multiarray import count_nonzero as _count  # numpy >= 2
except ImportError:  # pragma: no cover - numpy 1.x
    _count = np.count_nonzero
TILE_ROWS = 4096  # HealthLimits.tiled: bounds kept as rows up to this block size (16 bytes a value)

OK, MISSING, STALE, STUCK, OUT_OF_RANGE = 0, 1, 2, 3, 4
STATES = ("ok", "missing", "stale", "stuck", "out_of_range")  # index = code
FAULTS = STATES[1:]
EXCLUDED = (MISSING, STUCK, OUT_OF_RANGE)  # the faults; left out of the process score: see left_out

FILL_METHODS = ("ffill", "interpolate", "zero")  # offline (trainer, replay); the edge carries forward (ffill)
EDGE_FILL = "ffill"
DEFAULT_FILL_LIMIT = 5  # samples a missing value is carried forward at the edge before the channel is missing
DEFAULT_RANGE_HOLD = 3  # samples in a row outside the range before a channel is out_of_range
DEFAULT_MARGIN = 1.0  # x the training range, on each side: a process excursion stays a process anomaly, a gross value is a sensor fault
MIN_FLAT_SAMPLES = 10  # the shortest stuck limit learned
FLAT_FACTOR = 1.5  # the stuck limit is this times the longest flat run seen in training
FLAT_OFF_SHARE = 0.5  # a channel flat for more than this share of training (a set point) is not checked
LONE_FLAT_MIN = 30  # a flat run this long or longer that holds ...
LONE_FLAT_SHARE = 0.5  # ... at least this share of a channel's flat samples looks like a sensor frozen in training
STALE_PERIODS = 10.0  # stale after this many sample periods without data
DEFAULT_STALE_S = 60.0  # ... or this when the model has no sample period

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
AnyFloat = npt.NDArray[np.floating[Any]]


class HealthError(ValueError):
    """A health document or override that cannot be used (names the field)."""


# -- fill (offline) ------------------------------------------------------------------------------------
def fill_column(col: AnyFloat, method: str) -> F64:
    """Fill NaNs in ``col`` (T,) by ``method`` (:data:`FILL_METHODS`; ``ffill`` back-fills a leading gap);
    raises ValueError when the column is all missing."""
    x: F64 = np.asarray(col, dtype=np.float64)
    missing = np.isnan(x)
    if not missing.any():
        return x
    if missing.all():
        raise ValueError("column has no values at all")
    if method not in FILL_METHODS:
        raise ValueError(f"fill method must be one of {', '.join(FILL_METHODS)}, got {method!r}")
    if method == "zero":
        zeroed: F64 = np.where(missing, 0.0, x)
        return zeroed
    idx = np.arange(x.size)
    good = ~missing
    if method == "interpolate":
        out: F64 = np.interp(idx, idx[good], x[good])
        return out
    last = np.where(good, idx, 0)
    np.maximum.accumulate(last, out=last)
    filled: F64 = x[last]
    first = int(np.argmax(good))
    filled[:first] = x[first]
    return filled


def fill_block(values: AnyFloat, method: str) -> F64:
    """:func:`fill_column` over every column of ``values`` (n, C); ValueError names the first empty column."""
    out: F64 = np.array(values, dtype=np.float64)
    for j in range(out.shape[1]):
        try:
            out[:, j] = fill_column(out[:, j], method)
        except ValueError as exc:
            raise ValueError(f"column {j}: {exc}") from None
    return out


# -- learning ------------------------------------------------------------------------------------------
def _runs_from(flags: npt.NDArray[np.bool_], carry: I64) -> I64:
    """Per sample, how many samples in a row (ending there) have ``flags`` (n, C) set; ``carry`` (C,) is the
    run ending just before the block."""
    n = flags.shape[0]
    idx = np.arange(n, dtype=np.int64)[:, None]
    last_reset = np.where(flags, np.int64(-1), idx)
    np.maximum.accumulate(last_reset, axis=0, out=last_reset)
    runs: I64 = np.where(last_reset < 0, carry[None, :] + idx + 1, idx - last_reset)
    return runs


LEARN_CHUNK_ROWS = 65536  # learn_limits reads long recordings in blocks of this many rows (bounded memory)


def _flat_steps(values: AnyFloat, flat_tol: AnyFloat, chunk: int = LEARN_CHUNK_ROWS) -> tuple[I64, I64]:
    """``(longest run of flat steps, number of flat steps)`` (C,) each, of ``values`` (n, C), in row blocks
    (a run carried across them), so a long recording needs no copy of its size."""
    c = values.shape[1]
    tol = np.asarray(flat_tol, dtype=np.float64)[None, :]
    longest, count, run = np.zeros(c, dtype=np.int64), np.zeros(c, dtype=np.int64), np.zeros(c, dtype=np.int64)
    for lo in range(0, max(values.shape[0] - 1, 0), chunk):
        x = np.asarray(values[lo : lo + chunk + 1], dtype=np.float64)  # one row of overlap: every step once
        flat = np.abs(np.diff(x, axis=0)) <= tol
        runs = _runs_from(flat, run)
        longest = np.maximum(longest, runs.max(axis=0))
        count += flat.sum(axis=0)
        run = runs[-1]
    return longest, count


def longest_flat(values: AnyFloat, flat_tol: AnyFloat) -> I64:
    """The longest run of flat steps (``|diff| <= flat_tol``) of each column of ``values`` (n, C): (C,)."""
    x = np.asarray(values)
    if x.shape[0] < 2:
        return np.zeros(x.shape[1], dtype=np.int64)
    return _flat_steps(x, flat_tol)[0]


def learn_limits(
    values: AnyFloat | Sequence[AnyFloat], sample_period_s: float | None, channels: Sequence[str],
    margin: float = DEFAULT_MARGIN, fill_limit: int = DEFAULT_FILL_LIMIT,
) -> dict[str, Any]:
    """The model's ``health`` document from normal running data ``values`` (n, C), or a sequence of such
    blocks (separate files: flat runs are not joined across them).

    Per channel: the physical range seen (``min``/``max``) with ``margin`` x the range on each side; a
    flat tolerance (1e-6 x the channel's scale); the stuck limit ``max_flat_samples`` (1.5 x the longest
    run of flat samples, at least :data:`MIN_FLAT_SAMPLES`; 0, not checked, for a channel flat more than half
    the time); ``stale_after_s`` from the sample period; the edge fill (ffill up to ``fill_limit`` samples).
    Read in row blocks: the memory it needs does not grow with the recording."""
    blocks = [np.asarray(values)] if isinstance(values, np.ndarray) else [np.asarray(b) for b in values]
    blocks = [b for b in blocks if b.ndim == 2 and b.shape[0]]
    c = len(channels)
    if not blocks or any(b.shape[1] != c for b in blocks):
        raise HealthError(f"learn_limits needs (n, {c}) blocks of values")
    lo = np.min([np.nanmin(b, axis=0) for b in blocks], axis=0).astype(np.float64)
    hi = np.max([np.nanmax(b, axis=0) for b in blocks], axis=0).astype(np.float64)
    scale = np.maximum(np.maximum(np.abs(lo), np.abs(hi)), 1.0)
    tol = 1e-6 * scale
    span = hi - lo
    pad = np.where(span > 0, margin * span, margin * scale)
    stats = [_flat_steps(b, tol) for b in blocks]
    longest = np.max([s[0] for s in stats], axis=0)
    n_steps = sum(max(b.shape[0] - 1, 0) for b in blocks)
    flat_steps = np.sum([s[1] for s in stats], axis=0)
    off = (flat_steps > FLAT_OFF_SHARE * max(n_steps, 1)) | (n_steps == 0)
    limit = np.where(off, 0, np.maximum(MIN_FLAT_SAMPLES, np.ceil(FLAT_FACTOR * longest))).astype(np.int64)
    stale = STALE_PERIODS * sample_period_s if sample_period_s else DEFAULT_STALE_S
    return {
        "fill": {"method": EDGE_FILL, "limit_samples": int(fill_limit)},
        "stale_after_s": float(stale),
        "channels": {
            str(name): {"min": float(lo[j]), "max": float(hi[j]), "margin": float(pad[j]),
                        "flat_tol": float(tol[j]), "max_flat_samples": int(limit[j]),
                        "longest_flat_samples": int(longest[j]), "flat_samples": int(flat_steps[j])}
            for j, name in enumerate(channels)
        },
    }


def check_document(health: Mapping[str, Any], channels: Sequence[str]) -> None:
    """Raise :class:`HealthError` naming the first malformed field of a model's ``health`` document."""
    if not isinstance(health, Mapping):
        raise HealthError("health: must be a JSON object")
    if not health:
        return
    fill = health.get("fill", {})
    if not isinstance(fill, Mapping) or fill.get("method", EDGE_FILL) not in (EDGE_FILL, "none"):
        raise HealthError("health.fill.method: must be 'ffill' or 'none'")
    lim = fill.get("limit_samples", DEFAULT_FILL_LIMIT)
    if type(lim) is not int or lim < 0:
        raise HealthError("health.fill.limit_samples: must be an integer >= 0")
    stale = health.get("stale_after_s")
    if stale is not None and not (_is_num(stale) and stale > 0):
        raise HealthError("health.stale_after_s: must be a number > 0")
    per = health.get("channels", {})
    if not isinstance(per, Mapping):
        raise HealthError("health.channels: must be an object keyed by channel name")
    known = set(channels)
    for name, lim_c in per.items():
        if name not in known:
            raise HealthError(f"health.channels: {str(name)[:40]!r} is not one of the model's channels")
        if not isinstance(lim_c, Mapping):
            raise HealthError(f"health.channels.{name}: must be an object")
        for key in ("min", "max", "margin", "flat_tol"):
            if key in lim_c and not _is_num(lim_c[key]):
                raise HealthError(f"health.channels.{name}.{key}: must be a finite number")
        if "min" in lim_c and "max" in lim_c and lim_c["min"] > lim_c["max"]:
            raise HealthError(f"health.channels.{name}: min > max")
        for key in ("margin", "flat_tol"):
            if key in lim_c and lim_c[key] < 0:
                raise HealthError(f"health.channels.{name}.{key}: must be >= 0")
        k = lim_c.get("max_flat_samples", 0)
        if type(k) is not int or k < 0:
            raise HealthError(f"health.channels.{name}.max_flat_samples: must be an integer >= 0")


def lone_flat_stretch(lim: Mapping[str, Any]) -> bool:
    """Did one flat stretch of :data:`LONE_FLAT_MIN` samples or more hold most of a checked channel's flat samples
    in training? A quantised or slow channel is flat in many short runs; one long one is more likely a sensor
    that froze while the training data was recorded, and its stuck limit (1.5 x that run) is loosened by it."""
    if "flat_samples" not in lim:  # a model from before it was stored: not told
        return False
    k, longest, flat = (int(lim.get(key, 0)) for key in ("max_flat_samples", "longest_flat_samples", "flat_samples"))
    return k > 0 and longest >= LONE_FLAT_MIN and longest >= LONE_FLAT_SHARE * flat


def frozen_in_training(health: Mapping[str, Any], sample_period_s: float | None = None) -> list[str]:
    """One warning per channel with a :func:`lone_flat_stretch`, saying what it costs and what to do."""
    out = []
    for name, lim in health.get("channels", {}).items():
        if not lone_flat_stretch(lim):
            continue
        r, k = int(lim["longest_flat_samples"]), int(lim["max_flat_samples"])
        dur = f" ({r * sample_period_s:.3g} s)" if sample_period_s else ""
        out.append(f"channel {name!r} was flat for {r} samples in a row in training{dur}, most of its flat samples "
                   f"in one stretch: a sensor frozen while the data was recorded? Its stuck limit follows that "
                   f"stretch ({k} samples), so the edge will report it stuck only after that long. Cut those rows "
                   f"and fit again, or set [health.channel_limits.{name}] max_flat_samples in the daemon's config")
    return out


def describe(health: Mapping[str, Any], channels: Sequence[str] = ()) -> list[str]:
    """Lines for ``fit`` and ``inspect``: the fill, the stale limit and each channel's range and stuck limit, in the
    model's ``channels`` order (the stored document's keys are sorted)."""
    if not health:
        return ["sensor health: no limits stored (an older model): the edge checks only the config's limits"]
    fill = health.get("fill", {})
    method, limit = fill.get("method", EDGE_FILL), fill.get("limit_samples", DEFAULT_FILL_LIMIT)
    how = "a missing sample is not filled" if method == "none" else \
        f"a gap of up to {limit} missing samples is filled ({method})"
    lines = [f"sensor health (checked by the edge as it runs): {how}, a channel is stale after "
             f"{health.get('stale_after_s', DEFAULT_STALE_S):g} s without data"]
    per = health.get("channels", {})
    order = [c for c in channels if c in per] + sorted(set(per) - set(channels))
    for name in order:
        lim = per[name]
        k = int(lim.get("max_flat_samples", 0))
        lone = ", one stretch: a sensor frozen in training?" if lone_flat_stretch(lim) else ""
        stuck = f"stuck after {k} flat samples (longest in training {lim.get('longest_flat_samples', '?')}{lone})" \
            if k else "stuck not checked (flat most of the time in training)"
        lo, hi, pad = lim.get("min", -math.inf), lim.get("max", math.inf), lim.get("margin", 0.0)
        seen = f"constant {lo:.6g}" if lo == hi else f"{lo:.6g} .. {hi:.6g}"
        lines.append(f"  {name}: in range {lo - pad:.6g} .. {hi + pad:.6g} (training {seen}, widened by {pad:.3g} on "
                     f"each side); {stuck}")
    return lines


def _is_num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# -- limits as arrays ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class HealthLimits:
    """The checks' limits as (C,) arrays: the allowed range ``lo``..``hi`` (margin applied; +-inf: none),
    ``flat_tol``, ``max_flat`` (0: not checked), ``fill_limit`` in samples, the stale limit in s and
    ``neutral`` (the training mean: the value of a channel that never had one) and ``range_hold`` (samples in a
    row outside the range before a channel is out_of_range)."""

    lo: F64
    hi: F64
    flat_tol: F64
    max_flat: I64
    fill_limit: I64
    stale_after_s: float
    neutral: F64
    range_hold: I64
    tile_rows: int = field(default=TILE_ROWS, compare=False)  # tiled(): the most rows kept (0: none, broadcast)
    _tiles: list[tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], F64]] = field(
        default_factory=list, init=False, compare=False, repr=False)

    def tiled(self, n: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], F64]:
        """``lo``, ``hi`` as float32 and ``flat_tol`` (-1 where no stuck check) as (n, C) rows, shared by every
        device with these limits: a comparison of an (n, C) block with (C,) bounds broadcasts row by row, 3-4x
        slower than with bounds of its own shape. Beyond :attr:`tile_rows` rows, (C,) rows that broadcast."""
        t = self._tiles
        if not t or (t[0][0].shape[0] < n <= self.tile_rows):
            rows = max(1, min(max(n, 2 * t[0][0].shape[0] if t else 128), self.tile_rows))
            with np.errstate(over="ignore"):  # the plain rows are float32: compare them with float32 bounds
                lo32, hi32 = self.lo.astype(np.float32), self.hi.astype(np.float32)
            tol = np.where(self.max_flat == 0, -1.0, self.flat_tol)
            t[:] = [(np.tile(lo32, (rows, 1)), np.tile(hi32, (rows, 1)), np.tile(tol, (rows, 1)))]
        lo, hi, tol = t[0]
        if n > lo.shape[0]:
            return lo[0], hi[0], tol[0]
        return lo[:n], hi[:n], tol[:n]

    @property
    def n_channels(self) -> int:
        return int(self.lo.shape[0])

    @property
    def longest_hold(self) -> int:
        """The largest range hold of any channel (samples)."""
        return int(self.range_hold.max()) if self.range_hold.size else 0

    @property
    def shortest_flat(self) -> int:
        """The smallest stuck limit checked (a large number when none is)."""
        on = self.max_flat[self.max_flat > 0]
        return int(on.min()) if on.size else 1 << 30

    @classmethod
    def build(
        cls, health: Mapping[str, Any], channels: Sequence[str], neutral: Sequence[float],
        sample_period_s: float | None = None, overrides: Mapping[str, Mapping[str, Any]] | None = None,
        fill_limit: int | None = None, stale_after_s: float | None = None, range_hold: int = DEFAULT_RANGE_HOLD,
    ) -> HealthLimits:
        """Limits from a model's ``health`` document (empty: no range or stuck check, the default fill),
        with the config's fill limit and stale limit (None: the model's), its ``range_hold``, and per-channel
        ``overrides`` (the document's channel keys, plus ``fill_limit`` and ``range_hold``) on top."""
        check_document(health, channels)
        c = len(channels)
        lo, hi = np.full(c, -np.inf), np.full(c, np.inf)
        tol, max_flat = np.zeros(c), np.zeros(c, dtype=np.int64)
        fill = health.get("fill", {})
        stored = 0 if fill.get("method") == "none" else int(fill.get("limit_samples", DEFAULT_FILL_LIMIT))
        fills = np.full(c, stored if fill_limit is None else int(fill_limit), dtype=np.int64)
        holds = np.full(c, max(1, int(range_hold)), dtype=np.int64)
        per = dict(health.get("channels", {}))
        for name, o in (overrides or {}).items():
            if name not in channels:
                raise HealthError(f"health.channels: {name[:40]!r} is not one of the model's channels")
            per[name] = {**per.get(name, {}), **o}
        for j, name in enumerate(channels):
            lim = per.get(name, {})
            m = float(lim.get("margin", 0.0))
            if "min" in lim:
                lo[j] = float(lim["min"]) - m
            if "max" in lim:
                hi[j] = float(lim["max"]) + m
            tol[j] = float(lim.get("flat_tol", 0.0))
            max_flat[j] = int(lim.get("max_flat_samples", 0))
            if "fill_limit" in lim:
                fills[j] = int(lim["fill_limit"])
            if "range_hold" in lim:
                holds[j] = max(1, int(lim["range_hold"]))
        return cls(lo, hi, tol, max_flat, fills, stale_limit(health, sample_period_s, stale_after_s),
                   np.asarray(neutral, dtype=np.float64).copy(), holds)


def stale_limit(health: Mapping[str, Any], sample_period_s: float | None, stale_after_s: float | None = None) -> float:
    """Seconds without data after which a device is stale: ``stale_after_s`` (the config's), else the model's
    ``health`` document's, else :data:`STALE_PERIODS` sample periods, else :data:`DEFAULT_STALE_S`."""
    default = STALE_PERIODS * sample_period_s if sample_period_s else DEFAULT_STALE_S
    return float(stale_after_s or health.get("stale_after_s") or default)


# -- the checks ----------------------------------------------------------------------------------------
class ChannelHealth:
    """One device's channel states, updated incrementally over the samples it receives, in order."""

    __slots__ = ("limits", "prev", "flat_run", "miss_run", "out_run", "codes", "flat_runs", "miss_runs", "out_runs",
                 "inside", "inside_before", "quiet", "settled", "_unchecked", "_short", "_tol_checked",
                 "_tiles_n", "_tiles")

    def __init__(self, limits: HealthLimits) -> None:
        c = limits.n_channels
        self.limits = limits
        self.prev = np.full(c, np.nan)  # (C,) the last value after the fill (NaN: never had one)
        self.flat_run = np.zeros(c, dtype=np.int64)  # (C,) flat samples in a row ending at prev
        self.miss_run = np.zeros(c, dtype=np.int64)  # (C,) missing samples in a row ending at prev
        self.out_run = np.zeros(c, dtype=np.int64)  # (C,) samples in a row outside the range, ending at prev
        self.codes: U8 = np.zeros(c, dtype=np.uint8)  # (C,) the state after the last sample
        self.flat_runs: I64 = np.zeros((0, c), dtype=np.int64)  # (n, C) flat samples in a row, of the last update
        self.miss_runs: I64 | None = None  # (n, C) missing samples in a row, of the last update (None: none missing)
        self.out_runs: I64 = np.zeros((0, c), dtype=np.int64)  # (n, C) samples in a row outside the range, ditto
        self.inside = np.full(c, np.nan)  # (C,) the last value inside the range (NaN: none yet)
        self.inside_before = self.inside  # (C,) the same as it was before the last update
        self.settled = False  # checked once and every channel ok, no missing or out-of-range run going on
        self.quiet = False  # settled and no flat run going on either (check_plain's cheapest path applies)
        self._unchecked = limits.max_flat == 0  # (C,) channels without a stuck check
        self._short = limits.shortest_flat  # the shortest stuck limit checked
        self._tiles_n = 1  # the block size of _tiles, this device's last HealthLimits.tiled (its blocks repeat)
        self._tiles = limits.tiled(1)
        # check_plain counts flat steps of the channels with a stuck check only (-1: never flat); tiled's row
        self._tol_checked = self._tiles[2][0]

    def widen(self, lo: AnyFloat, hi: AnyFloat) -> None:
        """Widen the allowed range to include ``lo``..``hi`` (C,) (a range learnt on site, margin applied)."""
        lim = self.limits
        self.limits = HealthLimits(np.minimum(lim.lo, lo), np.maximum(lim.hi, hi), lim.flat_tol, lim.max_flat,
                                   lim.fill_limit, lim.stale_after_s, lim.neutral, lim.range_hold,
                                   tile_rows=0)  # this device's own limits: no tiles (memory), bounds broadcast
        self._tiles_n = -1

    def check_plain(self, values: npt.NDArray[np.float32]) -> U8 | None:
        """:meth:`update` for rows without a missing value (``values`` (n, C), not modified). None when every
        channel stays ok (the common case: a few numpy operations on the block's bounds and steps); otherwise
        the codes of :meth:`update`.

        Exact: while :attr:`quiet` no flat run is going on, so no channel can get stuck within a block shorter
        than the shortest stuck limit, and one that moved on the last step ends with no flat run. Otherwise, with
        no fault, missing or out-of-range run going on, a block inside the range only needs its flat runs
        counted (carried from the last block) against the stuck limits: flat runs of quantised or slow channels
        then stay on this path instead of a full :meth:`update`; and when the block has fewer flat steps than
        the shortest limit less the longest run going on, and every channel moved on its last step, no run can
        reach a limit and none goes on. Flat runs are counted for the channels with a stuck check only."""
        n = values.shape[0]
        if n != self._tiles_n:
            self._tiles, self._tiles_n = self.limits.tiled(n), n
        lo, hi, tol = self._tiles
        # np.count_nonzero, not .any(): a reduction costs microseconds on a block this small
        if _count(_less(values, lo)) or _count(_greater(values, hi)):
            return self.update(values)
        if self.quiet and n < self._short:  # too short to get stuck in: only the last step matters
            last = values[-1].astype(np.float64)
            moved = _greater(np.abs(last - (values[-2] if n > 1 else self.prev)), self._tol_checked)
            if _count(moved) == moved.shape[0]:
                self.prev = self.inside = last
                return None
            return self.update(values)
        if not self.settled:
            return self.update(values)
        x = np.concatenate((self.prev[None, :], values), dtype=np.float64)  # (n + 1, C) the last block's last row first
        step = x[1:] - x[:-1]
        flat = _less_equal(np.abs(step, out=step), tol)  # (n, C) each row's step from the one before
        n_flat = _count(flat)
        if not n_flat or (n_flat + int(self.flat_run.max()) <= self._short and not _count(flat[-1])):
            # no run can reach a stuck limit in this block, and every channel moved on its last step
            self.flat_run[:] = 0
            self.prev = self.inside = x[-1]
            self.quiet = True
            return None
        runs = _runs_from(flat, self.flat_run)
        if _count(runs > self.limits.max_flat):
            return self.update(values)
        self.flat_run = runs[-1].copy()
        self.prev = self.inside = x[-1]
        self.quiet = not _count(self.flat_run)
        return None

    def update(self, values: npt.NDArray[np.float32]) -> U8:
        """Check (and fill, in place) ``values`` (n, C) float32, NaN where a value is missing; return the
        state codes (n, C) uint8 after each sample (:data:`STATES`). Missing values are carried forward
        (the last value), then the last good one stays; a channel that never had one gets ``neutral``."""
        lim = self.limits
        n = values.shape[0]
        x = values.astype(np.float64)
        miss = np.isnan(x)
        any_miss = bool(miss.any())
        if any_miss:
            miss_run = _runs_from(miss, self.miss_run)
            idx = np.arange(n, dtype=np.int64)[:, None]
            last_good = np.where(miss, np.int64(-1), idx)
            np.maximum.accumulate(last_good, axis=0, out=last_good)
            carried = np.where(np.isnan(self.prev), lim.neutral, self.prev)
            from_block = np.take_along_axis(x, np.maximum(last_good, 0), axis=0)
            x = np.where(miss, np.where(last_good < 0, carried[None, :], from_block), x)
            values[miss] = x[miss]
            self.miss_run = miss_run[-1].copy()
        else:
            miss_run = None
            self.miss_run[:] = 0
        prev = np.where(np.isnan(self.prev), x[0], self.prev)
        steps = np.abs(np.diff(x, axis=0, prepend=prev[None, :]))
        flat = steps <= lim.flat_tol[None, :]
        flat_run = _runs_from(flat, self.flat_run)
        stuck = (flat_run > lim.max_flat[None, :]) & (lim.max_flat[None, :] > 0)
        beyond = (x < lim.lo[None, :]) | (x > lim.hi[None, :])
        out_run = _runs_from(beyond, self.out_run)
        self.inside_before = self.inside
        inside = ~beyond
        if inside.any():
            last = n - 1 - np.argmax(inside[::-1], axis=0)  # (C,) the last row inside the range
            self.inside = np.where(inside.any(axis=0), x[last, np.arange(x.shape[1])], self.inside)
        oor = out_run >= lim.range_hold[None, :]
        codes = np.where(oor, np.uint8(OUT_OF_RANGE), np.where(stuck, np.uint8(STUCK), np.uint8(OK)))
        if miss_run is not None:
            # a carried value (the last one) is checked as that value; past the fill limit the channel is missing
            codes = np.where(miss & (miss_run > lim.fill_limit[None, :]), np.uint8(MISSING), codes)
        out: U8 = codes.astype(np.uint8)
        self.prev = x[-1].copy()
        self.flat_run = flat_run[-1].copy()
        self.flat_runs = flat_run
        self.out_run = out_run[-1].copy()
        self.out_runs = out_run
        self.miss_runs = miss_run
        self.codes = out[-1].copy()
        self.settled = not (self.codes.any() or self.miss_run.any() or self.out_run.any())
        self.quiet = self.settled and not self.flat_run[~self._unchecked].any()
        return out

    def excluded(self) -> npt.NDArray[np.bool_]:
        """(C,) True where the channel is missing, stuck or out of range now."""
        c = self.codes
        mask: npt.NDArray[np.bool_] = (c == MISSING) | (c == STUCK) | (c == OUT_OF_RANGE)
        return mask


def is_stale(now: float, last_sample: float, limits: HealthLimits) -> bool:
    """True when a device's last sample (``last_sample``, same clock as ``now``) is older than the stale limit."""
    return now - last_sample > limits.stale_after_s


def left_out(codes: U8, flat_runs: I64 | None, limits: HealthLimits, range_excludes: bool = False
             ) -> npt.NDArray[np.bool_]:
    """(n, C) True where a channel is left out of the process score after each sample: missing or stuck, and out of
    range only when it is also frozen (flat past its stuck limit: a failed sensor's gross value that stays, which
    the range check's precedence codes ``out_of_range``) or with ``range_excludes`` (``health.range_excludes``).
    An out-of-range value that moves is a reading: it stays in the score. ``flat_runs`` (n, C): the checks' own."""
    out: npt.NDArray[np.bool_] = (codes == MISSING) | (codes == STUCK)
    oor: npt.NDArray[np.bool_] = codes == OUT_OF_RANGE
    if range_excludes:
        out |= oor
        return out
    if flat_runs is not None and oor.any():
        frozen = (flat_runs > limits.max_flat[None, :]) & (limits.max_flat[None, :] > 0)
        out |= oor & frozen
    return out


def renormalised_score(channel_error: AnyFloat, excluded: npt.NDArray[np.bool_],
                       weight: AnyFloat | None = None, power: float = 1.0) -> npt.NDArray[np.float64]:
    """The process score without the ``excluded`` channels: ``channel_error`` (k, C), ``excluded`` (k, C) or
    (C,), ``weight`` (C,) the model's channel weights (0: screened out; None: all kept), ``power`` the model's
    ``scoring.power``. Returns (k,): ``(sum(channel_error over healthy channels) / C * n_kept /
    n_kept_healthy) ** (1 / power)`` (the model's ``score`` when nothing is excluded; 0 when no kept channel is
    healthy). See :mod:`edge_runtime.contract`."""
    ce = np.asarray(channel_error, dtype=np.float64)
    healthy = ~np.broadcast_to(excluded, ce.shape)
    kept = np.ones(ce.shape[1], dtype=bool) if weight is None else np.asarray(weight) > 0
    n_kept = max(int(kept.sum()), 1)
    n_ok = (healthy & kept[None, :]).sum(axis=1)
    total = np.where(healthy, ce, 0.0).sum(axis=1)
    out: npt.NDArray[np.float64] = np.where(n_ok > 0, total / ce.shape[1] * n_kept / np.maximum(n_ok, 1), 0.0)
    if power != 1:
        out = np.maximum(out, 0.0) ** (1.0 / power)
    return out
