"""``fit --state-column/--running`` and ``--running-when``: trained on running rows, states learned and stored."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edge_runtime.tools import synthetic as syn
from trainer.cli import main
from trainer.export import read_metadata

FAST = ["--window", "16", "--hop", "4", "--epochs", "2", "--width", "4", "--latent", "4", "-q"]
STOPS = [(700, 1000), (1700, 1900), (2600, 2900)]


def plant_csv(path: Path, rows: int = 3400, status: bool = True,
              stops: list[tuple[int, int]] = STOPS) -> np.ndarray:
    names = syn.channel_names(4)
    x = syn.apply_stops(syn.normal_series(rows, 4, seed=3), names, stops, settle=20)
    running = np.ones(rows, bool)
    for a, b in stops:
        running[a:b] = False
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", *names, *(["status"] if status else [])])
        for i, row in enumerate(x):
            w.writerow([f"{1_700_000_000 + i}", *(f"{v:.6g}" for v in row),
                        *(["RUN" if running[i] else "STOP"] if status else [])])
    return x


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("states") / "plant.csv"
    plant_csv(p)
    return p


def test_fit_with_a_text_status_column_trains_on_running_rows_and_stores_the_states(plant: Path, tmp_path: Path):
    out = tmp_path / "m.onnx"
    r = CliRunner().invoke(main, ["fit", str(plant), "--out", str(out), "--state-column", "status",
                                  "--running", "RUN", *FAST])
    assert r.exit_code == 0, r.output
    assert "operating states (column status in RUN)" in r.stdout
    assert "operating states (column status in RUN)" in CliRunner().invoke(main, ["inspect", str(out)]).stdout
    meta = read_metadata(out)
    assert "status" not in meta.channels  # the text column is no feature
    st = meta.state_model()
    assert set(st.stop_channels) == {"pressure", "vibration", "current"}  # the temperature only cools
    assert st.learned["starts"] == 3 and st.learned["stopped_rows"] == 800
    assert 10 <= st.settle_samples <= 300
    # the normalisation is of the running rows only: the stops (pressure ~0) would pull its mean down
    assert meta.normalisation.mean[0] == pytest.approx(5.0, abs=0.5)
    assert meta.preprocessing["state_column"] == "status"


def test_fit_running_when_uses_the_condition(tmp_path: Path):
    p = tmp_path / "plain.csv"
    plant_csv(p, status=False)
    out = tmp_path / "m.onnx"
    r = CliRunner().invoke(main, ["fit", str(p), "--out", str(out), "--running-when", "current>6", *FAST])
    assert r.exit_code == 0, r.output
    st = read_metadata(out).state_model()
    assert st.condition == "current>6"
    assert json.loads(read_metadata(out).to_json())["states"]["source"] == "condition current>6"


def test_too_little_running_data_counts_the_running_windows_and_says_what_was_left_out(tmp_path: Path):
    """The minimum is of the windows trained on: those of the running stretches, not of the whole training part."""
    p = tmp_path / "mostly_stopped.csv"
    plant_csv(p, rows=700, stops=[(60, 500)])  # 545 hop-1 windows in the training part, 81 in its running rows
    r = CliRunner().invoke(main, ["fit", str(p), "--out", str(tmp_path / "m.onnx"), "--state-column", "status",
                                  "--running", "RUN", "--window", "16", "--epochs", "2", "-q"])
    assert r.exit_code == 2, r.output
    assert ("too little normal data for window 16: 81 training windows (need 100), after leaving out the 449 of 700 "
            "rows stopped or settling (running: column status in RUN); give more normal rows") in r.stderr


@pytest.mark.parametrize("args, fragment, code", [  # 2: the options alone are wrong; 65: the data does not fit them
    (["--state-column", "status"], "needs --running", 2),
    (["--running", "RUN"], "needs --state-column", 2),
    (["--state-column", "nope", "--running", "RUN"], "--state-column 'nope' not found", 65),
    (["--running-when", "speed is high", "--exclude", "status"], "CHANNEL OP NUMBER", 2),
    (["--running-when", "rpm>100", "--exclude", "status"], "'rpm' is not a feature column", 65),
    (["--state-column", "status", "--running", "GO"], "no running rows", 65),
])
def test_state_option_errors_are_one_line(plant: Path, tmp_path: Path, args: list[str], fragment: str, code: int):
    r = CliRunner().invoke(main, ["fit", str(plant), "--out", str(tmp_path / "m.onnx"), *args, *FAST])
    assert r.exit_code == code, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgewatch-train fit: error: ") and fragment in lines[0], r.stderr


def test_evaluate_reports_states_and_sensor_faults_apart_and_scores_no_stop(plant: Path, tmp_path: Path):
    out = tmp_path / "m.onnx"
    r = CliRunner().invoke(main, ["fit", str(plant), "--out", str(out), "--state-column", "status",
                                  "--running", "RUN", *FAST])
    assert r.exit_code == 0, r.output
    # the same plant, a frozen current sensor in a running stretch
    test = tmp_path / "test.csv"
    rows = list(csv.reader(plant.open()))
    for row in rows[1 + 1200 : 1 + 1500]:
        row[4] = rows[1200][4]
    with test.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    rep_path = tmp_path / "e.json"
    r = CliRunner().invoke(main, ["evaluate", "--model", str(out), "--data", str(test), "--no-plot",
                                  "--report", str(rep_path)])
    assert r.exit_code == 0, r.output
    assert "operating states (not scored while stopped or settling)" in r.stdout
    assert "sensor faults (the edge's health checks; not anomalies): stuck: current" in r.stdout
    rep = json.loads(rep_path.read_text())
    (st,) = rep["operating_states"].values()
    assert st["stopped"]["stretches"] == 3 and st["stopped"]["rows"] >= 780
    assert st["agreement_with_column"] > 0.98
    (sf,) = rep["sensor_faults"].values()
    assert sf["stuck"]["current"]["stretches"] == 1
    # as the daemon, only running rows are checked: the stops (channels at their off level, flat) are no fault
    assert sf == {"stuck": {"current": sf["stuck"]["current"]}}, sf
    # the windows-above rate counts only the windows the daemon scores: none in a stop or while settling
    a = rep["alerts"]
    assert 0 < a["scored_windows"] <= 3400 - 16 + 1 - st["stopped"]["rows"] - st["settling"]["rows"]
    assert f"per 1,000 of the {a['scored_windows']:,} it scores" in r.stdout
