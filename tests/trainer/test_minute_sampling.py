"""A plant sampled every 3 minutes: fit reads the period from the timestamps, the model and its health limits carry
it, and evaluate reports delays and alert rates in seconds of that clock (issue 12: sampling from 1 s to minutes)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from edge_runtime.service.model import load_model
from edge_runtime.tools.synthetic import normal_series
from trainer.cli import main

PERIOD_S = 180.0


def _write(path: Path, x: np.ndarray, labels: np.ndarray | None = None) -> None:
    t0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
    head = "timestamp," + ",".join(f"ch{i}" for i in range(x.shape[1])) + (",anomaly" if labels is not None else "")
    rows = [head]
    for i, row in enumerate(x):
        ts = (t0 + timedelta(seconds=PERIOD_S * i)).isoformat().replace("+00:00", "Z")
        rows.append(",".join([ts, *(f"{v:.5f}" for v in row)] + ([str(int(labels[i]))] if labels is not None else [])))
    path.write_text("\n".join(rows) + "\n")


def test_three_minute_sampling_end_to_end(tmp_path: Path) -> None:
    runner = CliRunner()
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    _write(train, normal_series(1200, 3, seed=1))
    x = normal_series(800, 3, seed=1, start=1200)
    y = np.zeros(800, dtype=int)
    x[400:480, 0] += 6 * float(np.std(x[:, 0]))
    y[400:480] = 1
    _write(test, x, y)
    model = tmp_path / "m.onnx"
    r = runner.invoke(main, ["fit", str(train), "--out", str(model), "--epochs", "15", "-q"])
    assert r.exit_code == 0, r.output
    meta = load_model(model, provider="cpu").metadata
    assert meta.sample_period_s == PERIOD_S
    assert meta.health["stale_after_s"] == 10 * PERIOD_S  # stale after 10 sample periods, not 10 s
    report = tmp_path / "r.json"
    r = runner.invoke(main, ["evaluate", "--model", str(model), "--data", str(test), "--report", str(report)])
    assert r.exit_code == 0, r.output
    d = json.loads(report.read_text())["daemon"]
    assert d["detected"] == 1
    assert d["delay_median_s"] == d["delay_median"] * PERIOD_S  # seconds of the plant's clock
    hours = 800 * PERIOD_S / 3600
    a = json.loads(report.read_text())["alerts"]
    assert abs(a["hours"] - hours) < 0.1 * hours
