"""Torch-free synthetic multichannel sensor data with injectable, labelled anomalies.

Normal data: a few latent periodic sources (incommensurate periods, per-seed device
variation) mixed into correlated channels through a mixing matrix, plus channel noise.
Everything is a pure function of ``(seed, absolute time index)``, so a streaming simulator
can generate consecutive chunks (``start=0``, ``start=T``, ...) that join seamlessly.

Anomalies (``end`` exclusive, sample indices) are applied on a copy by :func:`inject`.
Magnitudes are in units of each channel's normal standard deviation.

Run ``python -m edge_runtime.tools.synthetic --help`` to write a CSV.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ANOMALY_KINDS = ("spike", "level_shift", "drift", "stuck", "noise_burst", "correlation_break")
# Sensor faults: the sensor, not the process, is wrong. ``stuck`` (a process-anomaly kind above for the
# benchmarks) is a frozen sensor too; ``dead``: the device sends nothing.
SENSOR_FAULTS = ("freeze", "dropout", "out_of_range", "dead")
STATE_KINDS = ("stop",)  # the machine stops for the span, then runs up again
ALL_KINDS = (*ANOMALY_KINDS, *SENSOR_FAULTS, *STATE_KINDS)
STOP_SETTLE = 20  # samples a stopped machine takes to run up again (apply_stops' settle)
STOP_TAIL = 600  # samples after a stop in which the run-up (and the temperature's warming) still shows
# What a ground-truth row is: a process anomaly, a sensor fault or an operating state.
KIND_CLASS = {**{k: "process" for k in ANOMALY_KINDS}, "stuck": "sensor", **{k: "sensor" for k in SENSOR_FAULTS},
              "stop": "state"}

_BASE_NAMES = (
    "pressure",
    "temperature",
    "vibration",
    "current",
    "flow",
    "voltage",
    "humidity",
    "rpm",
    "torque",
    "level",
)
# Typical offset and spread per base channel, in plausible raw units.
_UNITS = {
    "pressure": (5.0, 0.4),
    "temperature": (60.0, 3.0),
    "vibration": (0.8, 0.15),
    "current": (12.0, 1.5),
    "flow": (120.0, 10.0),
    "voltage": (230.0, 4.0),
    "humidity": (45.0, 5.0),
    "rpm": (1500.0, 80.0),
    "torque": (35.0, 4.0),
    "level": (2.0, 0.3),
}
# Off level of a stopped machine per base channel (raw units); channels not listed keep their values,
# ``temperature`` cools towards ``AMBIENT_C``.
OFF_LEVELS = {"pressure": 0.0, "vibration": 0.02, "current": 0.0, "flow": 0.0, "rpm": 0.0, "torque": 0.0}
AMBIENT_C = 20.0
COOLING_SAMPLES = 400.0  # time constant of the temperature's cooling while stopped and warming after
OUT_OF_RANGE_STD = 25.0  # an out_of_range fault puts the channel this many normal std beyond its mean
_NOISE_BLOCK = 1024  # noise is generated per absolute block of this many samples
_NOISE_REL = 0.12  # channel noise std relative to the periodic signal's spread


@dataclass(frozen=True)
class Anomaly:
    """One injected anomaly: ``kind`` on ``channels`` over samples ``start..end-1``."""

    kind: str
    start: int
    end: int
    channels: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.kind not in ALL_KINDS:
            raise ValueError(f"unknown anomaly kind {self.kind!r}; use one of {', '.join(ALL_KINDS)}")
        if not 0 <= self.start < self.end:
            raise ValueError(f"anomaly span must satisfy 0 <= start < end, got {self.start}..{self.end}")
        if not self.channels:
            raise ValueError("anomaly needs at least one channel")


def channel_names(n_channels: int) -> list[str]:
    """Realistic unique channel names: ``pressure, temperature, ...``, then ``pressure_2``, ..."""
    if n_channels < 1:
        raise ValueError("n_channels must be >= 1")
    names = []
    for i in range(n_channels):
        base = _BASE_NAMES[i % len(_BASE_NAMES)]
        rep = i // len(_BASE_NAMES)
        names.append(base if rep == 0 else f"{base}_{rep + 1}")
    return names


@dataclass(frozen=True)
class _Device:
    periods: np.ndarray  # (S,) samples
    phases: np.ndarray  # (S,)
    mixing: np.ndarray  # (C, S)
    offset: np.ndarray  # (C,)
    scale: np.ndarray  # (C,)


def _device(n_channels: int, seed: int) -> _Device:
    """A device's signature: one shared design per channel count, with small per-seed variation."""
    design = np.random.default_rng([n_channels, 7919])  # the same for every device of this shape
    rng = np.random.default_rng([seed, n_channels, 6151])  # this device's variation
    n_src = 3
    periods = np.array([200.0, 57.0, 23.0]) * rng.uniform(0.97, 1.03, n_src)
    phases = rng.uniform(0, 2 * np.pi, n_src)
    mixing = design.normal(0.0, 1.0, (n_channels, n_src))
    mixing[:, 0] += np.where(design.random(n_channels) < 0.5, -1.5, 1.5)  # a shared slow "load" source
    mixing += rng.normal(0.0, 0.05, mixing.shape)
    mixing /= np.linalg.norm(mixing, axis=1, keepdims=True)
    names = channel_names(n_channels)
    scale = np.array([_UNITS[n.split("_")[0]][1] for n in names]) * rng.uniform(0.95, 1.05, n_channels)
    offset = np.array([_UNITS[n.split("_")[0]][0] for n in names]) + scale * rng.uniform(
        -0.1, 0.1, n_channels
    )
    return _Device(periods, phases, mixing, offset, scale)


def _noise(n_steps: int, n_channels: int, seed: int, start: int) -> np.ndarray:
    """Standard normal noise (T, C), a pure function of (seed, absolute index)."""
    out = np.empty((n_steps, n_channels))
    first, last = start // _NOISE_BLOCK, (start + n_steps - 1) // _NOISE_BLOCK
    pos = 0
    for block in range(first, last + 1):
        rng = np.random.default_rng([seed, n_channels, block, 104729])
        chunk = rng.standard_normal((_NOISE_BLOCK, n_channels))
        lo = max(start, block * _NOISE_BLOCK) - block * _NOISE_BLOCK
        hi = min(start + n_steps, (block + 1) * _NOISE_BLOCK) - block * _NOISE_BLOCK
        out[pos : pos + hi - lo] = chunk[lo:hi]
        pos += hi - lo
    return out


def normal_series(n_steps: int, n_channels: int = 4, seed: int = 0, start: int = 0) -> np.ndarray:
    """Normal multichannel data for absolute samples ``start..start+n_steps-1``: (T, C) float32."""
    if n_steps < 0 or start < 0:
        raise ValueError("n_steps and start must be >= 0")
    if n_steps == 0:
        return np.zeros((0, n_channels), dtype=np.float32)
    dev = _device(n_channels, seed)
    t = np.arange(start, start + n_steps, dtype=np.float64)[:, None]  # (T, 1)
    sources = np.sin(2 * np.pi * t / dev.periods + dev.phases)  # (T, S)
    signal = sources @ dev.mixing.T  # (T, C), correlated channels
    signal = signal / 0.9  # roughly unit spread
    noisy = signal + _NOISE_REL * _noise(n_steps, n_channels, seed, start)
    return (dev.offset + dev.scale * noisy).astype(np.float32)


def _channel_std(x: np.ndarray) -> np.ndarray:
    std = x.std(axis=0)
    return np.where(std > 0, std, 1.0)


def inject(x: np.ndarray, anomaly: Anomaly, seed: int = 0) -> np.ndarray:
    """Return a copy of ``x`` (T, C) with ``anomaly`` applied (magnitudes relative to channel std)."""
    x = np.array(x, dtype=np.float32, copy=True)
    t, c = x.shape
    if anomaly.end > t:
        raise ValueError(f"anomaly end {anomaly.end} is past the series length {t}")
    if any(not 0 <= ch < c for ch in anomaly.channels):
        raise ValueError(f"anomaly channels {anomaly.channels} out of range for {c} channels")
    rng = np.random.default_rng([seed, anomaly.start, 31337])
    s, e = anomaly.start, anomaly.end
    n = e - s
    std = _channel_std(x)
    for ch in anomaly.channels:
        sign = 1.0 if rng.random() < 0.5 else -1.0
        sd = float(std[ch])
        if anomaly.kind == "spike":
            k = max(1, n // 8)
            idx = s + rng.choice(n, size=min(k, n), replace=False)
            x[idx, ch] += (sign * rng.uniform(6.0, 9.0, idx.size) * sd).astype(np.float32)
        elif anomaly.kind == "level_shift":
            x[s:e, ch] += sign * 3.0 * sd
        elif anomaly.kind == "drift":
            x[s:e, ch] += (sign * np.linspace(0.0, 4.0, n) * sd).astype(np.float32)
        elif anomaly.kind == "stuck":
            x[s:e, ch] = x[s, ch]
        elif anomaly.kind == "noise_burst":
            x[s:e, ch] += (rng.normal(0.0, 2.0 * sd, n)).astype(np.float32)
        elif anomaly.kind == "correlation_break":
            seg = x[s:e, ch]
            mean = float(x[:, ch].mean())
            x[s:e, ch] = 2 * mean - seg  # mirrored: same marginal spread, broken correlation
    return x


def apply_stops(x: np.ndarray, names: Sequence[str], stops: Sequence[tuple[int, int]], settle: int = 20,
                seed: int = 0) -> np.ndarray:
    """A copy of ``x`` (T, C) in which the machine stops over each ``(start, end)`` (end exclusive): channels with
    an :data:`OFF_LEVELS` entry sit at it (with a little noise) and run up over about ``settle`` samples after the
    stop; ``temperature`` cools towards :data:`AMBIENT_C` and warms again; the others keep their values."""
    out = np.array(x, dtype=np.float64, copy=True)
    t = out.shape[0]
    rng = np.random.default_rng([seed, 2718])
    std = _channel_std(np.asarray(x, dtype=np.float64))
    f_off = np.zeros(t)  # 1 while stopped, decaying to 0 over the run-up
    f_cool = np.zeros(t)  # the temperature's share of the way to ambient
    for a, b in stops:
        if not 0 <= a < b <= t:
            raise ValueError(f"stop {a}..{b} must lie in 0..{t}")
    for a, b in sorted(stops):
        k = np.arange(b - a)
        start_cool = f_cool[a - 1] if a else 0.0
        f_off[a:b] = 1.0
        f_cool[a:b] = 1.0 - (1.0 - start_cool) * np.exp(-k / COOLING_SAMPLES)
        after = np.arange(t - b)
        tau = max(1.0, settle / 3.0)
        f_off[b:] = np.maximum(f_off[b:], np.exp(-after / tau) * (after < 6 * tau))
        f_cool[b:] = np.maximum(f_cool[b:], f_cool[b - 1] * np.exp(-after / (COOLING_SAMPLES / 4)))
    for c, name in enumerate(names):
        base = name.split("_")[0]
        if base in OFF_LEVELS:
            off = OFF_LEVELS[base] + 0.01 * std[c] * rng.standard_normal(t)
            out[:, c] = off * f_off + out[:, c] * (1.0 - f_off)
        elif base == "temperature":
            out[:, c] = AMBIENT_C * f_cool + out[:, c] * (1.0 - f_cool)
    return out.astype(np.float32)


def sensor_fault(x: np.ndarray, kind: str, start: int, end: int, channels: Sequence[int]) -> np.ndarray:
    """A copy of ``x`` (T, C) with a sensor fault on ``channels`` over ``start..end-1``: ``freeze`` holds the value
    before the fault, ``dropout`` is NaN (no value), ``out_of_range`` sits :data:`OUT_OF_RANGE_STD` std beyond
    the channel's mean. (``dead``, a device that sends nothing, is the simulator's to apply.)"""
    if kind not in SENSOR_FAULTS or kind == "dead":
        raise ValueError(f"sensor_fault: {kind!r} is not one of freeze, dropout, out_of_range")
    out = np.array(x, dtype=np.float32, copy=True)
    std = _channel_std(np.asarray(x, dtype=np.float64))
    for c in channels:
        if kind == "freeze":
            out[start:end, c] = out[max(0, start - 1), c]
        elif kind == "dropout":
            out[start:end, c] = np.nan
        else:
            out[start:end, c] = float(np.mean(x[:, c]) + OUT_OF_RANGE_STD * std[c])
    return out


def apply(x: np.ndarray, anomaly: Anomaly, names: Sequence[str], seed: int = 0) -> np.ndarray:
    """A copy of ``x`` (T, C) with ``anomaly`` of any kind (:data:`ALL_KINDS`): a process anomaly (:func:`inject`),
    a sensor fault (:func:`sensor_fault`; ``dead`` leaves the values: the simulator sends nothing) or a stop
    (:func:`apply_stops`, :data:`STOP_SETTLE`)."""
    a = anomaly
    if a.kind in ANOMALY_KINDS:
        return inject(x, a, seed=seed)
    if a.kind == "stop":
        return apply_stops(x, names, [(a.start, a.end)], settle=STOP_SETTLE, seed=seed)
    if a.kind == "dead":
        return np.array(x, dtype=np.float32, copy=True)
    return sensor_fault(x, a.kind, a.start, a.end, a.channels)


def random_anomalies(
    n_steps: int,
    n_channels: int,
    count: int,
    seed: int = 0,
    min_len: int = 20,
    max_len: int = 80,
    kinds: Sequence[str] = ANOMALY_KINDS,
) -> list[Anomaly]:
    """``count`` non-overlapping anomalies spread over ``n_steps``, kinds cycled in order."""
    if count <= 0:
        return []
    if not 1 <= min_len <= max_len:
        raise ValueError("need 1 <= min_len <= max_len")
    slot = n_steps // count
    if slot < max_len + 2:
        raise ValueError(f"{count} anomalies of up to {max_len} samples do not fit in {n_steps} steps")
    rng = np.random.default_rng([seed, 4242])
    out = []
    for i in range(count):
        length = int(rng.integers(min_len, max_len + 1))
        lo = i * slot + 1
        start = int(rng.integers(lo, lo + slot - length))
        kind = kinds[i % len(kinds)]
        if kind == "correlation_break" or n_channels == 1:
            chans: tuple[int, ...] = (int(rng.integers(n_channels)),)
        else:
            k = int(rng.integers(1, min(2, n_channels) + 1))
            chans = tuple(sorted(int(v) for v in rng.choice(n_channels, size=k, replace=False)))
        out.append(Anomaly(kind, start, start + length, chans))
    return out


def labelled_series(
    n_steps: int, n_channels: int, anomalies: Sequence[Anomaly], seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Normal data with ``anomalies`` injected: ``x`` (T, C) float32, ``labels`` (T,) int8 (1 = anomalous)."""
    x = normal_series(n_steps, n_channels, seed)
    labels = np.zeros(n_steps, dtype=np.int8)
    for i, a in enumerate(anomalies):
        x = inject(x, a, seed=seed + i)
        labels[a.start : a.end] = 1
    return x, labels


def write_csv(
    path: Path,
    x: np.ndarray,
    channels: Sequence[str],
    labels: np.ndarray | None = None,
    period_s: float = 1.0,
    t0: float = 1_700_000_000.0,
) -> None:
    """Write ``x`` (T, C) as CSV: ``timestamp`` (epoch seconds), channels, optional ``anomaly``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", *channels, *(["anomaly"] if labels is not None else [])])
        for i, row in enumerate(x):
            cells = [f"{t0 + i * period_s:.3f}", *(f"{v:.6g}" for v in row)]
            if labels is not None:
                cells.append(str(int(labels[i])))
            w.writerow(cells)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m edge_runtime.tools.synthetic OUT.csv``: write synthetic (optionally labelled) data."""
    p = argparse.ArgumentParser(prog="python -m edge_runtime.tools.synthetic", description=main.__doc__)
    p.add_argument("out", type=Path, help="CSV file to write")
    p.add_argument("--steps", type=int, default=20000, help="number of samples (default 20000)")
    p.add_argument("--channels", type=int, default=4, help="number of channels (default 4)")
    p.add_argument("--seed", type=int, default=0, help="device seed (default 0)")
    p.add_argument("--start", type=int, default=0, help="absolute index of the first sample (default 0)")
    p.add_argument("--anomalies", type=int, default=0, help="number of injected anomalies (default 0)")
    p.add_argument("--period", type=float, default=1.0, help="sample period in seconds (default 1.0)")
    a = p.parse_args(argv)
    if a.steps < 1 or a.channels < 1:
        p.error("--steps and --channels must be >= 1")
    names = channel_names(a.channels)
    try:
        if a.anomalies:
            anomalies = random_anomalies(a.steps, a.channels, a.anomalies, seed=a.seed)
            x, labels = labelled_series(a.steps, a.channels, anomalies, seed=a.seed)
        else:
            x, labels = normal_series(a.steps, a.channels, a.seed, a.start), None
    except ValueError as exc:
        p.error(str(exc))
    write_csv(a.out, x, names, labels, period_s=a.period, t0=1_700_000_000.0 + a.start * a.period)
    return 0


if __name__ == "__main__":
    sys.exit(main())
