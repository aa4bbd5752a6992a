"""The synthetic suite: generated plants and anomalies, a real (tiny) run through fit, ONNX and the daemon's rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from trainer.benchmark import DETECTORS, EDGEWATCH
from trainer.benchmark_cli import benchmark
from trainer.benchmark_synthetic import PLANTS, Plant, plant_normal, plant_test, process_plant, run_synthetic


def test_plants_drift_and_stick_as_described() -> None:
    p = Plant("p", channels=4, train=500, test=1500, drift=4.0, stuck=True)
    x = plant_normal(p, 0)
    assert x.shape == (2000, 4) and x.dtype == np.float32
    assert np.ptp(x[:, 2]) == 0.0  # the stuck channel
    base = plant_normal(Plant("q", channels=4, train=500, test=1500), 0)
    rise = (x[:, 1] - base[:, 1])[-1] / base[:, 1].std()
    assert 3.5 < rise < 4.5


def test_the_process_plant_holds_its_analysers_and_keeps_its_set_points_constant_and_unfaulted() -> None:
    """The Tennessee-Eastman-like plant: 52 channels in their own units, analysers held between samples (2 and 5
    rows), three constant set points that no injected fault touches."""
    p = next(q for q in PLANTS if q.factors)
    assert (p.channels, p.train, p.test, p.period_s) == (52, 500, 960, 180.0)
    x = plant_normal(p, 0)
    assert x.shape == (1460, 52)
    assert np.all(np.ptp(x[:, -3:], axis=0) == 0) and np.all(np.ptp(x[:, :-3], axis=0) > 0)
    flat = (np.diff(x, axis=0) == 0).mean(axis=0)  # share of steps with no change
    assert np.all(flat[:20] < 0.01) and np.all(flat[20:41] > 0.45)  # continuous channels (float32); analysers held
    assert np.ptp(x.std(axis=0)[:-3]) > 10  # very different scales
    for kind in ("level_shift", "stuck", "spike"):
        xt, lab = plant_test(p, x, kind, 2.0, 0)
        assert lab.sum() > 0 and np.array_equal(xt[:, -3:], x[:, -3:])
    with pytest.raises(ValueError, match="at least 15 channels"):
        process_plant(100, 14, 2, 0)
    assert int((flat[20:41] > 0.7).sum()) == 5  # 5 analysers hold 5 rows (flat 4 steps in 5), 16 hold 2


def test_anomalies_go_in_the_test_rows_scaled_by_the_magnitude() -> None:
    p = Plant("p", channels=4, train=500, test=1500)
    x = plant_normal(p, 0)
    x1, lab = plant_test(p, x, "level_shift", 1.0, 0)
    x2, lab2 = plant_test(p, x, "level_shift", 2.0, 0)
    assert lab.tolist() == lab2.tolist() and lab[:500].sum() == 0 and lab.sum() > 0
    np.testing.assert_allclose(x2 - x, 2 * (x1 - x), rtol=1e-4, atol=1e-3)
    assert not np.any((x1 != x)[lab == 0])  # nothing changes outside the labelled rows


def test_a_tiny_suite_runs_end_to_end(tmp_path: Path) -> None:
    plants = [Plant("tiny", channels=3, train=600, test=1500)]
    rep = run_synthetic(plants, [2.0])
    assert set(rep["by"]["kind"][EDGEWATCH]) == {
        "spike", "level_shift", "drift", "stuck", "noise_burst", "correlation_break"
    }
    for det in DETECTORS:
        o = rep["overall"][det]
        assert o["files"] == 6 and o["events"] == 36
        assert o["tp"] + o["fp"] + o["fn"] + o["tn"] == 6 * 1500  # only the test rows count
    # a level shift of 6 standard deviations (2 x 3) is caught
    assert rep["by"]["kind"][EDGEWATCH]["level_shift"]["event_recall"] >= 0.8
    normal = rep["normal_recordings"][EDGEWATCH]["tiny"]
    assert normal["scored_points"] == 1500 and normal["budget_per_1000"] is not None
    json.dumps(rep)  # JSON-ready


def test_cli_rejects_bad_magnitudes_in_one_line() -> None:
    res = CliRunner().invoke(benchmark, ["synthetic", "--magnitudes", "a,b"])
    assert res.exit_code == 2 and res.output.startswith("edgewatch-train benchmark synthetic: error:") and len(res.output.strip().splitlines()) == 1
