"""The SKAB benchmark: metrics and point rules by hand, and a real two-file run through ONNX."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edge_runtime.alerts import AlertPolicy
from tests.conftest import SKAB_DIR
from trainer.benchmark import (
    BenchmarkConfig,
    Counts,
    FileResult,
    alarm_states,
    choose_config,
    find_csvs,
    point_flags,
    rates_of,
    repeated_two_fold,
    run_benchmark,
    selection_objective,
    summarise,
)
from trainer.benchmark_cli import benchmark

VALVE1 = SKAB_DIR / "valve1"
needs_skab = pytest.mark.skipif(
    not (VALVE1 / "1.csv").is_file() or not (VALVE1 / "3.csv").is_file(),
    reason="SKAB data not present under shared/data/skab/ (set SKAB_DIR)",
)


def test_counts_and_rates_match_a_hand_made_case() -> None:
    pred = np.array([1, 1, 0, 0, 1, 0, 0], dtype=bool)
    lab = np.array([1, 0, 1, 0, 1, 0, 0])
    c = Counts.of(pred, lab)
    assert (c.tp, c.fp, c.fn, c.tn) == (2, 1, 1, 3)
    r = c.rates()
    assert r["f1"] == pytest.approx(2 / (2 + (1 + 1) / 2))
    assert r["far"] == pytest.approx(1 / 4)
    assert r["mar"] == pytest.approx(1 / 3)


def test_totals_sum_counts_over_files_not_rates() -> None:
    # file a: all 4 anomalies caught, no normal point; file b: 1 false alarm among 4 normal points.
    a = FileResult("a", 1.0, 2, 0, np.zeros(3), np.ones(4, bool), np.ones(4, np.int8))
    b = FileResult("b", 1.0, 2, 0, np.zeros(3), np.array([1, 0, 0, 0], bool), np.zeros(4, np.int8))
    rep = summarise([a, b])
    assert rep["files"]["a"]["far"] is None  # no normal point: rate undefined, not 0
    assert rep["files"]["b"]["f1"] == 0.0
    t = rep["total"]
    assert (t["tp"], t["fp"], t["fn"], t["tn"]) == (4, 1, 0, 3)
    assert t["f1"] == pytest.approx(4 / (4 + 0.5))  # not the mean of the per-file F1s (0.5)
    assert t["far"] == pytest.approx(1 / 4)


def test_first_scored_rows_are_left_out() -> None:
    r = FileResult("a", 1.0, 2, 3, np.zeros(4), np.array([1, 1, 1, 0, 1], bool), np.array([0, 0, 0, 0, 1]))
    assert r.counts == Counts(tp=1, fp=0, fn=0, tn=1)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        # W=3, T=6, windows 0..3 cover rows [0-2], [1-3], [2-4], [3-5]; flags F T T F.
        ("causal", [0, 0, 0, 1, 1, 0]),  # row t <- window ending at t
        ("all", [0, 0, 0, 0, 0, 0]),  # every row has an unflagged window among its covering ones
        ("majority", [0, 1, 1, 1, 1, 0]),  # >= half of the covering windows
    ],
)
def test_point_rules_by_hand(rule: str, expected: list[int]) -> None:
    flags = np.array([False, True, True, False])
    got = point_flags(flags, n_steps=6, window=3, rule=rule)
    assert got.astype(int).tolist() == expected


def test_point_rule_all_flags_rows_covered_only_by_flagged_windows() -> None:
    flags = np.array([True, True, True, False])  # W=3, T=6
    got = point_flags(flags, n_steps=6, window=3, rule="all")
    assert got.astype(int).tolist() == [1, 1, 1, 0, 0, 0]


def test_point_flags_refuse_a_mismatched_window_count() -> None:
    with pytest.raises(ValueError, match="do not match"):
        point_flags(np.zeros(5, bool), n_steps=6, window=3, rule="causal")
    with pytest.raises(ValueError, match="point rule"):
        point_flags(np.zeros(4, bool), n_steps=6, window=3, rule="centre")


def test_alarm_states_follow_the_edge_hysteresis() -> None:
    policy = AlertPolicy(raise_after=2, clear_after=2, clear_ratio=0.5)
    scores = np.array([0.0, 2.0, 0.0, 2.0, 2.0, 0.8, 0.4, 0.4, 0.4, 2.0])
    # one window above is not enough; two in a row raise at window 4; 0.8 is below the threshold but
    # above the clear level (0.5) so the alarm holds; two windows under 0.5 clear it at window 7.
    assert alarm_states(scores, 1.0, policy).astype(int).tolist() == [0, 0, 0, 0, 1, 1, 1, 0, 0, 0]


def _write(path: Path, header: str, rows: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        header + "\n" + "\n".join(";".join(["1"] * len(header.split(";"))) for _ in range(rows)) + "\n"
    )


def test_find_csvs_searches_recursively_in_natural_order(tmp_path: Path) -> None:
    _write(tmp_path / "b" / "10.csv", "x;anomaly", 3)
    _write(tmp_path / "b" / "2.csv", "x;anomaly", 3)
    _write(tmp_path / "a" / "free.csv", "x;y", 3)
    labelled, unlabelled = find_csvs(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in labelled] == ["b/2.csv", "b/10.csv"]
    assert [p.name for p in unlabelled] == ["free.csv"]


def test_cli_without_labelled_files_exits_2_with_one_line(tmp_path: Path) -> None:
    _write(tmp_path / "free.csv", "x;y", 3)
    res = CliRunner().invoke(benchmark, ["skab", str(tmp_path)])
    assert res.exit_code == 2
    assert res.output.strip().startswith("error:") and "anomaly" in res.output
    assert len(res.output.strip().splitlines()) == 1


@pytest.fixture
def two_valve1_files(tmp_path: Path) -> Path:
    """A SKAB-shaped folder linking two valve1 files (the GPL data stays where it is)."""
    d = tmp_path / "skab" / "valve1"
    d.mkdir(parents=True)
    for name in ("1.csv", "3.csv"):
        (d / name).symlink_to(VALVE1 / name)
    return tmp_path / "skab"


@needs_skab
@pytest.mark.skab
def test_cli_runs_the_protocol_on_two_files_and_is_reproducible(
    two_valve1_files: Path, tmp_path: Path
) -> None:
    reports = []
    for i in range(2):
        out = tmp_path / f"report{i}.json"
        res = CliRunner().invoke(
            benchmark,
            ["skab", str(two_valve1_files), "--protocol", "per-file", "--report", str(out), "--seed", "3"],
        )
        assert res.exit_code == 0, res.output
        assert "TOTAL" in res.output and "valve1/3.csv" in res.output
        reports.append(json.loads(out.read_text()))
    a, b = reports
    assert set(a["files"]) == {"valve1/1.csv", "valve1/3.csv"}
    t = a["total"]
    assert t["tp"] == sum(f["tp"] for f in a["files"].values())
    assert t["f1"] == pytest.approx(t["tp"] / (t["tp"] + (t["fp"] + t["fn"]) / 2))
    assert t["far"] == pytest.approx(t["fp"] / (t["fp"] + t["tn"]))
    assert t["mar"] == pytest.approx(t["fn"] / (t["fn"] + t["tp"]))
    # every point after the 400 training rows is scored exactly once
    assert t["tp"] + t["fp"] + t["fn"] + t["tn"] == (1145 - 400) + (1148 - 400)
    # the valve closure on these two files is caught without flooding the operator
    assert t["f1"] > 0.8 and t["far"] < 0.15
    # same seed, same numbers
    assert a["total"] == b["total"] and a["files"] == b["files"]


@needs_skab
@pytest.mark.skab
def test_anomaly_free_protocol_scores_the_same_rows(tmp_path: Path) -> None:
    d = tmp_path / "skab"
    (d / "valve1").mkdir(parents=True)
    (d / "valve1" / "1.csv").symlink_to(VALVE1 / "1.csv")
    free = SKAB_DIR / "anomaly-free" / "anomaly-free.csv"
    if not free.is_file():
        pytest.skip("anomaly-free.csv not present")
    (d / "anomaly-free").mkdir()
    (d / "anomaly-free" / "anomaly-free.csv").symlink_to(free)
    report, results = run_benchmark(d, BenchmarkConfig(epochs=3))
    af = report["anomaly_free"]
    assert af["trained_on"] == ["anomaly-free/anomaly-free.csv"]
    n_af = sum(af["total"][k] for k in ("tp", "fp", "fn", "tn"))
    n_pf = sum(report["total"][k] for k in ("tp", "fp", "fn", "tn"))
    assert n_af == n_pf == 1145 - 400
    assert results["anomaly-free"][0].threshold != results["per-file"][0].threshold


# --------------------------------------------------------------------------- selection on count tables


def test_selection_objective_penalises_far_over_budget_only() -> None:
    # F1 = 80 / (80 + (10 + 20) / 2) = 80 / 95; FAR = 10 / 110 (over 0.08); MAR = 20 / 100.
    over = np.array([80, 10, 20, 100])
    f1, far, mar = rates_of(over)
    assert f1 == pytest.approx(80 / 95) and far == pytest.approx(10 / 110) and mar == pytest.approx(0.2)
    assert selection_objective(over) == pytest.approx(80 / 95 - 2 * (10 / 110 - 0.08))
    under = np.array([80, 5, 20, 195])  # FAR 0.025: no penalty
    assert selection_objective(under) == pytest.approx(80 / (80 + 12.5))
    # vectorised over leading axes
    assert selection_objective(np.stack([over, under])).shape == (2,)


def _table() -> np.ndarray:
    """Counts (J=3, F=4, 4): config 0 is best on files 0-1, config 1 on files 2-3, config 2 never."""
    good, bad, flood = [90, 2, 10, 98], [40, 2, 60, 98], [100, 12, 0, 88]
    return np.array(
        [
            [good, good, bad, bad],
            [bad, bad, good, good],
            [flood, flood, flood, flood],  # best F1 (0.943 vs 0.938) but FAR 12 %: the penalty rejects it
        ]
    )


def test_choose_config_pools_counts_over_the_choosing_files() -> None:
    t = _table()
    assert choose_config(t, np.array([0, 1])) == 0
    assert choose_config(t, np.array([2, 3])) == 1
    # without the FAR penalty the flooding config would win on F1 alone
    assert choose_config(t, np.array([0, 1]), penalty=0.0) == 2
    # pooled, not averaged: config 0 has the better mean per-file F1 (0.83 vs 0.47) thanks to a file
    # with a single anomalous point; pooled over both files config 1 is far better (0.94 vs 0.67)
    t2 = np.array([[[1, 0, 0, 100], [50, 0, 50, 100]], [[0, 0, 1, 100], [90, 0, 10, 100]]])
    assert choose_config(t2, np.array([0, 1])) == 1


def test_repeated_two_fold_scores_only_the_held_out_half_with_its_choice() -> None:
    t = _table()
    counts = np.stack([t, t + 1])  # two seeds
    res = repeated_two_fold(counts, n_splits=20, seed=3)
    assert res.oof.shape == (20, 2, 4) and res.choices.shape == (20, 2)
    pooled = counts.sum(axis=0)
    for r, (a, b) in enumerate(res.halves):
        assert sorted(np.concatenate([a, b]).tolist()) == [0, 1, 2, 3] and len(a) == 2
        ja, jb = res.choices[r]
        assert ja == choose_config(pooled, a) and jb == choose_config(pooled, b)
        for s in range(2):
            expected = counts[s, ja, b].sum(axis=0) + counts[s, jb, a].sum(axis=0)
            assert res.oof[r, s].tolist() == expected.tolist()
    # every point of every file is scored once per split and seed
    assert (res.oof.sum(axis=-1) == counts[:, 0].sum(axis=(1, 2))).all()
    # a half of two good-for-0 files never picks the flooding config; mixed halves may (that is right:
    # pooled over one good and one bad file, config 2 has the best objective)
    pure = [r for r, (a, _) in enumerate(res.halves) if a.tolist() == [0, 1]]
    assert pure and all(res.choices[r, 0] == 0 for r in pure)
    # deterministic for a split seed
    again = repeated_two_fold(counts, n_splits=20, seed=3)
    assert (again.oof == res.oof).all() and (again.choices == res.choices).all()
    rates = res.rates()
    assert set(rates) == {"f1", "far", "mar"} and 0 < rates["f1"]["mean"] <= 1


def test_repeated_two_fold_refuses_a_wrong_shape() -> None:
    with pytest.raises(ValueError, match="shape"):
        repeated_two_fold(np.zeros((3, 4, 4)))


def test_cli_passes_the_validation_fraction_to_the_benchmark(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[BenchmarkConfig] = []

    def fake_run(directory, cfg, protocols, limit):  # noqa: ANN001, ANN202
        seen.append(cfg)
        raise ValueError("stop here")

    monkeypatch.setattr("trainer.benchmark_cli.run_benchmark", fake_run)
    res = CliRunner().invoke(benchmark, ["skab", str(tmp_path), "--val-fraction", "0.3"])
    assert res.exit_code == 2 and "stop here" in res.output
    assert seen[0].val_fraction == 0.3
    res = CliRunner().invoke(benchmark, ["skab", str(tmp_path), "--val-fraction", "1.5"])
    assert res.exit_code == 2 and len(seen) == 1  # out of range: refused before the run
