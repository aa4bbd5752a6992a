"""`edgewatch-train fit` stores how it read the files; `evaluate` reuses it; `--device cuda` fails before reading."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import torch
from click.testing import CliRunner

from edge_runtime.tools import synthetic as syn
from trainer.cli import main
from trainer.export import read_metadata

FAST = ["--window", "16", "--hop", "4", "--epochs", "2", "--width", "4", "--latent", "4", "-q"]


def plant_csv(path: Path, rows: int, labelled: bool) -> Path:
    """A cp1252 file with ; and decimal commas, naive Berlin times across the 2026 fall-back, a text column."""
    x = syn.normal_series(rows, 2, seed=1)
    lab = [1 if labelled and 200 <= i < 230 else 0 for i in range(rows)]
    lines = ["Zeit;Druck bar;Temp °C;Status;anomaly"]
    start = datetime(2026, 10, 24, 23, 30, tzinfo=timezone.utc)  # 01:30 in Berlin, 90 min before the fall-back
    for i in range(rows):  # a wall clock minute by minute: 02:00 .. 02:59 twice
        t = (start + timedelta(minutes=i)).astimezone(ZoneInfo("Europe/Berlin")).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"{t};{x[i, 0]:.4f};{x[i, 1] + (5 if lab[i] else 0):.4f};ok;{lab[i]}".replace(".", ","))
    path.write_bytes(("\n".join(lines) + "\n").encode("cp1252"))
    return path


def test_fit_stores_reading_options_and_evaluate_reuses_them(tmp_path: Path) -> None:
    runner = CliRunner()
    train = plant_csv(tmp_path / "train.csv", 600, labelled=False)
    test = plant_csv(tmp_path / "test.csv", 400, labelled=True)
    model = tmp_path / "m.onnx"
    r = runner.invoke(main, ["fit", str(train), "-o", str(model), *FAST, "--decimal", ",", "--encoding", "cp1252",
                             "--timezone", "Europe/Berlin", "--exclude", "status"])
    assert r.exit_code == 0, r.output
    meta = read_metadata(model)
    assert meta.channels == ["Druck bar", "Temp °C"]
    assert {k: meta.preprocessing[k] for k in ("decimal", "encoding", "timezone", "exclude", "fill")} == {
        "decimal": ",", "encoding": "cp1252", "timezone": "Europe/Berlin", "exclude": ["status"], "fill": None}
    report = tmp_path / "e.json"
    r = runner.invoke(main, ["evaluate", "-m", str(model), "-d", str(test), "--report", str(report), "--no-plot"])
    assert r.exit_code == 0, r.output
    assert json.loads(report.read_text())["window_metrics"]
    # a stored option overridden on the command line is used: '.' then refuses the decimal commas
    r = runner.invoke(main, ["evaluate", "-m", str(model), "-d", str(test), "--decimal", ".", "--no-plot",
                             "--report", str(report)])
    assert r.exit_code == 65 and "use --decimal ," in r.stderr  # EX_DATAERR


def test_fit_shows_reading_progress(tmp_path: Path) -> None:
    f = tmp_path / "n.csv"
    syn.write_csv(f, syn.normal_series(800, 2, seed=0), syn.channel_names(2))
    r = CliRunner().invoke(main, ["fit", str(f), "-o", str(tmp_path / "m.onnx"), *[a for a in FAST if a != "-q"]])
    assert r.exit_code == 0, r.output
    assert "reading n.csv: 800 rows" in r.stderr and "rows/s" in r.stderr and " MB" in r.stderr
    assert "left" in r.stderr  # the epoch's time left


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda_fails_before_reading(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["fit", str(tmp_path / "absent.csv"), "-o", str(tmp_path / "m.onnx"),
                                  "--device", "cuda"])
    assert r.exit_code == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines == ["edgewatch-train fit: error: --device cuda: no CUDA device is available to torch"]
