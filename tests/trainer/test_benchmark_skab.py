"""The SKAB suite: files and kinds, leave-one-kind-out on hand-made runs, a real run through ONNX."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edge_runtime.contract import ModelMetadata, Normalisation, Threshold
from tests.conftest import SKAB_DIR
from trainer.benchmark import (
    EDGEWATCH,
    FileRun,
    Protocol,
    choose,
    find_csvs,
    kind_of,
    leave_one_kind_out,
    selection_objective,
)
from trainer.benchmark_cli import benchmark
from trainer.metrics import Counts

VALVE1 = SKAB_DIR / "valve1"
OTHER = SKAB_DIR / "other"
needs_skab = pytest.mark.skipif(
    not (VALVE1 / "1.csv").is_file() or not (OTHER / "5.csv").is_file(),
    reason="SKAB data not present under shared/data/skab/ (set SKAB_DIR)",
)


def _write(path: Path, header: str, rows: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "\n".join(";".join(["1"] * len(header.split(";"))) for _ in range(rows)) + "\n")


def test_find_csvs_searches_recursively_in_natural_order(tmp_path: Path) -> None:
    _write(tmp_path / "b" / "10.csv", "x;anomaly", 3)
    _write(tmp_path / "b" / "2.csv", "x;anomaly", 3)
    _write(tmp_path / "a" / "free.csv", "x;y", 3)
    labelled, unlabelled = find_csvs(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in labelled] == ["b/2.csv", "b/10.csv"]
    assert [p.name for p in unlabelled] == ["free.csv"]


def test_an_unreadable_file_is_listed_not_fatal(tmp_path: Path) -> None:
    from trainer.benchmark import load_all

    _write(tmp_path / "v" / "1.csv", "x;anomaly", 3)
    (tmp_path / "v" / "2.csv").write_text("x;anomaly\n1;0\nnot-a-number;0\n")
    series, names, errors = load_all(sorted((tmp_path / "v").glob("*.csv")), tmp_path, "anomaly")
    assert names == ["v/1.csv"] and list(errors) == ["v/2.csv"] and "2.csv" in errors["v/2.csv"]


def test_skab_fault_kinds() -> None:
    assert kind_of("valve1/3.csv") == "valve1" and kind_of("valve2/0.csv") == "valve2"
    assert [kind_of(f"other/{i}.csv") for i in (1, 3, 5, 7, 9, 11, 13)] == [
        "leak", "leak", "rotor imbalance", "rotor imbalance", "rotor imbalance", "water level", "cavitation"
    ]
    assert kind_of("x.csv") == "all"


def test_cli_without_labelled_files_exits_65_with_one_line(tmp_path: Path) -> None:
    _write(tmp_path / "free.csv", "x;y", 3)
    res = CliRunner().invoke(benchmark, ["skab", str(tmp_path)])
    assert res.exit_code == 65  # EX_DATAERR
    assert res.output.strip().startswith("edgewatch-train benchmark skab: error:") and "anomaly" in res.output
    assert len(res.output.strip().splitlines()) == 1


@pytest.mark.parametrize(("args", "says"), [
    (["--fit-option", "bogus_key=1"], "unknown option 'bogus_key'; the options: "),
    (["--fit-option", "seed=3"], "use the benchmark's --seed"),
    (["--fit-option", "window=abc"], "window takes an integer, got 'abc'"),
    (["--fit-option", "force=1"], "force takes true or false, got 1"),
    (["--fit-option", "threshold_method=bogus"], "threshold_method takes one of lognormal, quantile, pot"),
    (["--loko", "--loko-fit", "score_power=1,x"], "--loko-fit 'score_power=x': score_power takes a number"),
])
def test_a_wrong_fit_option_is_one_line_exit_2_before_any_work(tmp_path: Path, args: list[str], says: str) -> None:
    """The trial: each of these ended in a traceback (exit 1) when the first file was fitted."""
    _write(tmp_path / "valve1" / "0.csv", "x;anomaly", 3)
    res = CliRunner().invoke(benchmark, ["skab", str(tmp_path), *args])
    assert res.exit_code == 2, res.output
    assert says in res.output and "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1


def _run(name: str, kind: str, burst: float, noise_peak: float) -> FileRun:
    """A hand-made run: W=4, threshold 1, an anomaly at 100..139 scoring ``burst``, a normal blip at 60..79."""
    t = 200
    scores = np.full(t - 3, 0.5)
    scores[60:80] = noise_peak
    scores[100:140] = burst
    labels = np.zeros(t, np.int8)
    labels[103:143] = 1  # the windows ending at 103..142 are the ones that see the anomaly
    meta = ModelMetadata(["a"], 4, 1, Threshold(1.0), Normalisation([0.0], [1.0]))
    return FileRun(name, kind, meta, scores, np.zeros(t), labels, 20, 1.0, 0.0)


def test_selection_objective_penalises_far_over_budget_only() -> None:
    good = Counts(tp=90, fp=5, fn=10, tn=95)  # FAR 5 %: no penalty
    bad = Counts(tp=95, fp=20, fn=5, tn=80)  # FAR 20 %: 12 points over
    assert selection_objective(good) == pytest.approx(good.rates()["f1"])
    assert selection_objective(bad) == pytest.approx(bad.rates()["f1"] - 2 * 0.12)


def test_leave_one_kind_out_chooses_without_the_left_out_kind() -> None:
    # kind A: a normal blip at 1.3 x threshold that only a 1.5x threshold ignores; kind B: its anomaly
    # peaks at 1.2 x threshold, so 1.5x loses it. Choosing on A picks 1.5x, which then misses B's anomaly.
    runs = [_run("a1", "A", 3.0, 1.3), _run("a2", "A", 3.0, 1.3), _run("b1", "B", 1.2, 0.5)]
    proto = Protocol()
    lk = leave_one_kind_out(runs, proto, scales=(1.0, 1.5), raise_after=(3,))
    assert lk["per_kind_left_out"]["B"]["chosen"]["threshold_scale"] == 1.5  # chosen on A only
    assert lk["per_kind_left_out"]["B"]["detected"] == 0 and lk["per_kind_left_out"]["B"]["events"] == 1
    assert lk["per_kind_left_out"]["A"]["chosen"]["threshold_scale"] == 1.0  # chosen on B only
    # the estimate pools the left-out counts exactly
    left = runs[2].judge(EDGEWATCH, proto, 1.5, 3).counts + sum(
        (r.judge(EDGEWATCH, proto, 1.0, 3).counts for r in runs[:2]), Counts()
    )
    est = lk["left_out_estimate"]
    assert (est["tp"], est["fp"], est["fn"], est["tn"]) == (left.tp, left.fp, left.fn, left.tn)


def test_leave_one_kind_out_takes_other_fits_as_candidates() -> None:
    runs = [_run("a1", "A", 3.0, 1.3), _run("b1", "B", 1.2, 0.5)]
    better = [_run("a1", "A", 3.0, 0.5), _run("b1", "B", 3.0, 0.5)]  # the same files, a fit without blips
    lk = leave_one_kind_out(runs, Protocol(), scales=(1.0,), raise_after=(3,), alternatives={"alt": better})
    assert lk["per_kind_left_out"]["B"]["chosen"]["fit"] == "alt"  # on A the defaults' blip costs a false alarm
    assert lk["per_kind_left_out"]["A"]["chosen"]["fit"] == "fit defaults"  # on B both are perfect: grid order
    assert lk["left_out_estimate"]["detected"] == 2 and lk["grid"]["fit"] == ["fit defaults", "alt"]


def test_choose_pools_counts_over_the_choosing_files() -> None:
    table = {
        (1.0, 3): [Counts(tp=10, fp=0, fn=0, tn=10), Counts(tp=0, fp=10, fn=10, tn=0)],
        (2.0, 3): [Counts(tp=6, fp=0, fn=4, tn=10), Counts(tp=6, fp=0, fn=4, tn=10)],
    }
    assert choose(table, [0]) == (1.0, 3)
    assert choose(table, [0, 1]) == (2.0, 3)


@pytest.fixture
def skab_subset(tmp_path: Path) -> Path:
    """A SKAB-shaped folder linking one valve1 and one rotor-imbalance file (the GPL data stays in place)."""
    for sub, name in (("valve1", "1.csv"), ("other", "5.csv")):
        (tmp_path / "skab" / sub).mkdir(parents=True, exist_ok=True)
        (tmp_path / "skab" / sub / name).symlink_to(SKAB_DIR / sub / name)
    return tmp_path / "skab"


@needs_skab
@pytest.mark.skab
def test_cli_runs_the_suite_on_two_files_reproducibly(skab_subset: Path, tmp_path: Path) -> None:
    reports = []
    for i in range(2):
        out = tmp_path / f"report{i}.json"
        extra = ["--plot", str(tmp_path / "p.png"), "--plot-file", "other/5.csv", "--markdown", str(tmp_path / "t.md")]
        res = CliRunner().invoke(benchmark, ["skab", str(skab_subset), "--loko", "--report", str(out), "-q", *extra[: 6 * i]])
        assert res.exit_code == 0, res.output
        assert "OVERALL" in res.output and "rotor imbalance" in res.output and "PCA T2+Q" in res.output
        assert "LEFT-OUT ESTIMATE" in res.output
        reports.append(json.loads(out.read_text()))
    a, b = reports
    ew = a["detectors"][EDGEWATCH]
    assert set(ew["files"]) == {"valve1/1.csv", "other/5.csv"}
    t = ew["overall"]
    assert t["tp"] == sum(f["tp"] for f in ew["files"].values())
    assert t["f1"] == pytest.approx(t["tp"] / (t["tp"] + (t["fp"] + t["fn"]) / 2))
    assert t["events"] == 2 and t["flag_all_f1"] > 0.5
    # every point after the 400 training rows is scored exactly once
    n_rows = sum(len((skab_subset / n).read_text().strip().splitlines()) - 1 for n in ("valve1/1.csv", "other/5.csv"))
    assert t["tp"] + t["fp"] + t["fn"] + t["tn"] == n_rows - 2 * 400
    for det in a["detectors"].values():  # the baseline is scored on the same rows
        o = det["overall"]
        assert o["tp"] + o["fp"] + o["fn"] + o["tn"] == n_rows - 2 * 400
    assert a["detectors"] == b["detectors"]  # same seed, same numbers
    assert set(a["leave_one_kind_out"]["per_kind_left_out"]) == {"valve1", "rotor imbalance"}
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert "| rotor imbalance | 1 |" in (tmp_path / "t.md").read_text()
