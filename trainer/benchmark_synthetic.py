"""``edgewatch-train benchmark synthetic``: the same protocol on generated plants. Torch-free data.

Plants (:data:`PLANTS`) from :mod:`edge_runtime.tools.synthetic`: *base* (4 correlated channels),
*drifting normal* (one channel's normal level drifts), *stuck channel* (one channel constant, also
in training), a 50-channel plant with an extra slow cycle and 500 training rows, and a process plant in the way of
the Tennessee Eastman benchmark (:func:`process_plant`: 52 channels, 3-min sampling, analysers that hold their value,
constant set points, 500 training rows, 960 test rows). Each is fitted
once with ``fit``'s defaults on its normal training rows; its test rows get anomalies of each of
the generator's six kinds at each magnitude (one test copy per kind and magnitude), scored like a
SKAB file (:class:`trainer.benchmark.FileRun`), and the clean test rows give its normal recording.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from trainer.benchmark import DETECTORS, FileRun, Protocol, model_summary, normal_report, run_file, scored_run
from trainer.data import DataError, Series
from trainer.evaluate import Outcome, open_model, pooled


@dataclass
class Plant:
    """A generated plant: ``channels`` channels, ``train`` normal training rows, then ``test`` rows."""

    name: str
    channels: int = 4
    train: int = 2000
    test: int = 6000
    drift: float = 0.0  # normal level drift of channel 1, in its std over the whole series
    stuck: bool = False  # channel 2 constant throughout (a stuck sensor, also in training)
    slow_cycle: int = 0  # period (samples) of an extra slow cycle shared by every channel; 0: none
    factors: int = 0  # > 0: a process plant of that many common AR(1) causes and measurement noise (:func:`process_plant`)
    period_s: float = 1.0  # sampling period


PLANTS = (
    Plant("base"),
    Plant("drifting normal", drift=4.0),
    Plant("stuck channel", stuck=True),
    Plant("50 channels, 500 rows", channels=50, train=500, test=6000, slow_cycle=300),
    Plant("process plant: 52 channels, 3-min sampling, 500 rows", channels=52, train=500, test=960, factors=6,
          period_s=180.0),
)
MAGNITUDES = (0.5, 1.0, 2.0)


def process_plant(n: int, channels: int, factors: int, seed: int) -> np.ndarray:
    """A continuous process of ``channels`` measurements (n, C) float64, in the way of the Tennessee Eastman
    benchmark (52 channels, 3-min sampling): ``factors`` common causes (AR(1), phi 0.8, innovation sd 0.3) seen
    through fixed loadings with measurement noise (sd 0.6), two of them wandering slowly (a random walk), every
    channel in its own units and level; the channels from 2/5 to 4/5 of the count are analysers that hold their
    value between samples (every 4th of them 5 rows, the others 2: 15 and 6 min; 16 and 5 of 52), and the last
    three are set points held constant. Needs ``channels`` >= 15 (the analysers end before the set points)."""
    if channels < 15:
        raise ValueError(f"a process plant needs at least 15 channels, got {channels}")
    g = np.random.default_rng([seed, 29])
    loadings = g.normal(0, 1, (channels, factors))
    scale, level = g.uniform(0.1, 50, channels), g.uniform(-100, 3000, channels)
    f = np.zeros((n, factors))
    e = g.normal(0, 0.3, (n, factors))
    for t in range(1, n):
        f[t] = 0.8 * f[t - 1] + e[t]
    f[:, :2] += np.cumsum(g.normal(0, 0.02, (n, 2)), axis=0)
    x = (f @ loadings.T + g.normal(0, 0.6, (n, channels))) * scale + level
    analysers = range(channels * 2 // 5, channels * 4 // 5)
    for i, c in enumerate(analysers):
        hold = 5 if i % 4 == 3 else 2
        x[:, c] = np.repeat(x[::hold, c], hold)[:n]
    x[:, -3:] = level[-3:]
    return x


def plant_normal(p: Plant, seed: int) -> np.ndarray:
    """Normal data (train + test, C) float32 of plant ``p``."""
    from edge_runtime.tools.synthetic import normal_series

    n = p.train + p.test
    if p.factors:
        return process_plant(n, p.channels, p.factors, seed).astype(np.float32)
    x = normal_series(n, p.channels, seed).astype(np.float64)
    sd = x.std(axis=0)
    t = np.arange(n)
    if p.slow_cycle:
        phase = np.random.default_rng([seed, 17]).uniform(0, 2 * np.pi, p.channels)
        x += 1.5 * sd * np.sin(2 * np.pi * t[:, None] / p.slow_cycle + phase)
    if p.drift:
        x[:, 1 % p.channels] += p.drift * sd[1 % p.channels] * t / n
    if p.stuck:
        x[:, 2 % p.channels] = x[0, 2 % p.channels]
    return x.astype(np.float32)


def plant_test(p: Plant, x: np.ndarray, kind: str, magnitude: float, seed: int, count: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """``x`` with ``count`` anomalies of ``kind`` in the test rows, each scaled by ``magnitude``: (x, labels)."""
    from edge_runtime.tools.synthetic import inject, random_anomalies

    avoid = {2 % p.channels} if p.stuck else set(range(p.channels - 3, p.channels)) if p.factors else set()
    # (a process plant's constant set points: an operator moves them, they do not fail)
    out = x.astype(np.float64).copy()
    labels = np.zeros(len(x), dtype=np.int8)
    for i, a in enumerate(random_anomalies(p.test, p.channels, count, seed, 30, 90, kinds=(kind,))):
        chans = tuple(c for c in a.channels if c not in avoid) or (  # else the next channel that may fail
            min(set(range(p.channels)) - avoid, key=lambda c, c0=a.channels[0]: (c - c0) % p.channels),)
        a = type(a)(a.kind, a.start + p.train, a.end + p.train, chans)
        delta = inject(x, a, seed=seed + i).astype(np.float64) - x
        out += magnitude * delta
        labels[a.start : a.end] = 1
    return out.astype(np.float32), labels


GROUPS = ("kind", "plant", "magnitude")


def run_synthetic(
    plants: Sequence[Plant] = PLANTS,
    magnitudes: Sequence[float] = MAGNITUDES,
    protocol: Protocol | None = None,
    workdir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """One default fit per plant on its training rows; every kind x magnitude scored on a test copy.

    The report pools outcomes by each of :data:`GROUPS` (``by[group][detector][value]``) and overall;
    ``normal_recordings`` are each plant's test rows without any anomaly.
    """
    from edge_runtime.tools.synthetic import ANOMALY_KINDS, channel_names

    protocol = protocol or Protocol()
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    tagged: list[tuple[dict[str, Any], str, Outcome]] = []
    normal_runs: list[FileRun] = []
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="edgewatch-synth-") as tmp:
        work = Path(workdir) if workdir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for pi, p in enumerate(plants):
            proto = replace(protocol, train_rows=p.train)
            x = plant_normal(p, protocol.seed + pi)
            base = Series(p.name, x, channel_names(p.channels), None, sample_period_s=p.period_s)
            try:
                run = run_file(base, p.name, "normal", proto, work, pi)
            except DataError as exc:
                errors[p.name] = " ".join(str(exc).split())
                continue
            if progress:
                progress(f"{p.name}: W {run.meta.window}, hop {run.meta.hop}, fit {run.fit_s:.1f} s")
            normal_runs.append(run)
            model = open_model(work / f"model-{pi}.onnx")
            for kind in ANOMALY_KINDS:
                for mag in magnitudes:
                    xt, lab = plant_test(p, x, kind, mag, protocol.seed + 100 * pi)
                    r = scored_run(model, xt, lab, f"{p.name}/{kind}/x{mag}", kind, p.train, p.period_s, run.fit_s)
                    tags = {"plant": p.name, "kind": kind, "magnitude": mag}
                    for det in DETECTORS:
                        o = r.judge(det, proto)
                        tagged.append((tags, det, o))
                        rows.append({**tags, "detector": det, **o.summary()})
    by: dict[str, dict[str, dict[str, Any]]] = {}
    for g in GROUPS:
        by[g] = {}
        for det in DETECTORS:
            values = list(dict.fromkeys(t[g] for t, d, _ in tagged if d == det))
            by[g][det] = {str(v): pooled([o for t, d, o in tagged if d == det and t[g] == v]) for v in values}
    return {
        "protocol": {**asdict(protocol), "policy": asdict(protocol.policy)},
        "plants": [asdict(p) for p in plants],
        "magnitudes": list(magnitudes),
        "by": by,
        "overall": {det: pooled([o for _, d, o in tagged if d == det]) for det in DETECTORS},
        "normal_recordings": normal_report(normal_runs, protocol),
        "models": {r.name: model_summary(r) for r in normal_runs},
        "not_scored": errors,
        "rows": rows,
        "seconds": round(time.perf_counter() - t0, 1),
    }
