"""`edgewatch-train` through click's CliRunner: the happy path and every user-error path (exit 2, one line)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edge_runtime.clierror import EXIT_DATAERR, EXIT_USAGE
from edge_runtime.tools import synthetic as syn
from trainer.cli import main

FAST = ["--window", "16", "--hop", "4", "--epochs", "2", "--width", "4", "--latent", "4", "-q"]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def csvs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli")
    syn.write_csv(d / "normal.csv", syn.normal_series(800, 3, seed=0), syn.channel_names(3))
    an = syn.random_anomalies(600, 3, 2, seed=1, min_len=20, max_len=40)
    x, lab = syn.labelled_series(600, 3, an, seed=0)
    syn.write_csv(d / "labelled.csv", x, syn.channel_names(3), lab)
    return {"dir": d, "normal": d / "normal.csv", "labelled": d / "labelled.csv"}


def assert_user_error(result, *fragments: str, code: int = EXIT_DATAERR) -> None:
    assert result.exit_code == code, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert re.match(r"edgewatch-train [a-z-]+(?: [a-z-]+)?: error: ", lines[0]), lines[0]
    assert "Traceback" not in result.output
    for f in fragments:
        assert f in lines[0]


def test_fit_inspect_export_evaluate(runner: CliRunner, csvs, tmp_path: Path) -> None:
    out, ck = tmp_path / "m.onnx", tmp_path / "m.pt"
    r = runner.invoke(main, ["fit", str(csvs["normal"]), "--out", str(out), "--checkpoint", str(ck), *FAST])
    assert r.exit_code == 0, r.output
    assert "best val loss" in r.stdout and "parameters" in r.stdout and "windows/s" in r.stdout
    assert "a gap of up to 5 missing samples is filled (ffill)" in r.stdout and "flat samples" in r.stdout
    r = runner.invoke(main, ["inspect", str(out)])
    assert r.exit_code == 0 and "window: float [batch, 16, 3]" in r.stdout and '"window": 16' in r.stdout
    assert "sensor health (checked by the edge as it runs)" in r.stdout and '"max_flat_samples"' in r.stdout
    r = runner.invoke(main, ["export", str(ck), "--out", str(tmp_path / "again.onnx")])
    assert r.exit_code == 0, r.output
    report = tmp_path / "eval.json"
    r = runner.invoke(
        main,
        [
            "evaluate",
            "--model",
            str(out),
            "--data",
            str(csvs["labelled"]),
            "--report",
            str(report),
            "--plot",
            str(tmp_path / "eval.png"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "point:  F1" in r.stdout and "flag-all F1" in r.stdout and "events:" in r.stdout
    doc = json.loads(report.read_text())
    assert {"window_metrics", "daemon", "alerts", "rules"} <= set(doc)
    assert (tmp_path / "eval.png").exists()


def test_fit_pot_threshold(runner: CliRunner, csvs, tmp_path: Path) -> None:
    out = tmp_path / "pot.onnx"
    r = runner.invoke(
        main,
        [
            "fit",
            str(csvs["normal"]),
            "--out",
            str(out),
            *FAST,
            "--hop",
            "1",
            "--threshold",
            "pot",
            "--level",
            "0.9",
            "--risk",
            "0.01",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "(pot " in r.stdout


def test_demo_data(runner: CliRunner, tmp_path: Path) -> None:
    r = runner.invoke(main, ["demo-data", str(tmp_path / "d.csv"), "--steps", "300", "--anomalies", "2"])
    assert r.exit_code == 0
    assert (tmp_path / "d.csv").read_text().splitlines()[0].endswith(",anomaly")


def test_version_as_edgewatch_says_it(runner: CliRunner) -> None:
    from edge_runtime import __version__

    r = runner.invoke(main, ["--version"])
    assert (r.exit_code, r.stdout.strip()) == (0, f"edgewatch-train, version {__version__}")


def test_help_texts(runner: CliRunner) -> None:
    for cmd in ([], ["fit"], ["evaluate"], ["inspect"], ["export"]):
        r = runner.invoke(main, [*cmd, "--help"])
        assert r.exit_code == 0 and "Usage:" in r.stdout


@pytest.mark.parametrize("content", [b"hello, I am not a model\n", b"\x00garbage" * 50])
def test_a_model_file_that_is_not_onnx_is_one_line(runner: CliRunner, tmp_path: Path, content: bytes) -> None:
    model = tmp_path / "notonnx.onnx"
    model.write_bytes(content)
    data = tmp_path / "d.csv"
    data.write_text("a,b\n" + "1,2\n" * 40)
    for args in (["evaluate", "--model", str(model), "--data", str(data), "--report", str(tmp_path / "e.json"),
                  "--no-plot"], ["inspect", str(model)]):
        assert_user_error(runner.invoke(main, args), "notonnx.onnx: not a readable ONNX file")


def test_error_text_in_numeric_column(runner: CliRunner, tmp_path: Path) -> None:
    f = tmp_path / "bad.csv"
    f.write_text("a;b\n1;2\n3;x\n")
    r = runner.invoke(main, ["fit", str(f), "--out", str(tmp_path / "m.onnx"), *FAST])
    assert_user_error(r, "bad.csv", "line 3", "'b'", "not a number")


def test_a_text_column_says_how_to_keep_it_out(runner: CliRunner, tmp_path: Path) -> None:
    f = tmp_path / "status.csv"
    f.write_text("a,status\n1,RUN\n2,STOP\n")
    r = runner.invoke(main, ["fit", str(f), "--out", str(tmp_path / "m.onnx"), *FAST])
    assert_user_error(r, "line 2, column 'status': not a number: 'RUN'", "--exclude status", "--state-column status")


def test_timestamps_out_of_order_refused_repeats_counted(runner: CliRunner, tmp_path: Path, caplog) -> None:
    names = syn.channel_names(2)
    plain = tmp_path / "plain.csv"
    syn.write_csv(plain, syn.normal_series(600, 2, seed=0), names)
    header, *rows = plain.read_text().splitlines()
    assert header.startswith("timestamp,")
    r = runner.invoke(main, ["fit", str(plain), "--out", str(tmp_path / "ok.onnx"), *FAST])
    assert r.exit_code == 0 and "repeat the timestamp" not in caplog.text, r.output
    swapped = rows.copy()
    swapped[100], swapped[200] = swapped[200], swapped[100]
    f = tmp_path / "unsorted.csv"
    f.write_text("\n".join([header, *swapped]) + "\n")
    for cmd in (["fit", str(f), "--out", str(tmp_path / "m.onnx"), *FAST],
                ["evaluate", "--model", str(tmp_path / "ok.onnx"), "--data", str(f), "--no-plot",
                 "--report", str(tmp_path / "e.json")]):
        assert_user_error(runner.invoke(main, cmd), "unsorted.csv: line 103, column 'timestamp': timestamps go "
                          "backwards", "sort the rows by time")
    dup = tmp_path / "dup.csv"
    dup.write_text("\n".join([header, *rows[:50], rows[49], *rows[50:]]) + "\n")
    r = runner.invoke(main, ["fit", str(dup), "--out", str(tmp_path / "m.onnx"), *FAST])
    assert r.exit_code == 0, r.output
    assert "dup.csv: 1 row(s) repeat the timestamp of the row before (first at line 52)" in caplog.text


def test_error_missing_values(runner: CliRunner, tmp_path: Path) -> None:
    f = tmp_path / "gap.csv"
    f.write_text("a,b\n1,2\n,3\n")
    r = runner.invoke(main, ["fit", str(f), "--out", str(tmp_path / "m.onnx"), *FAST])
    assert_user_error(r, "gap.csv", "line 3", "missing value", "--fill")


def test_error_too_few_rows(runner: CliRunner, tmp_path: Path) -> None:
    f = tmp_path / "short.csv"
    f.write_text("a\n" + "1\n" * 5)
    r = runner.invoke(main, ["fit", str(f), "--out", str(tmp_path / "m.onnx"), *FAST])
    assert_user_error(r, "short.csv", "5 rows", "window of 16", code=EXIT_USAGE)


def test_error_channel_mismatch(runner: CliRunner, csvs, tmp_path: Path) -> None:
    f = tmp_path / "other.csv"
    syn.write_csv(f, syn.normal_series(100, 2), ["x", "y"])
    r = runner.invoke(main, ["fit", str(csvs["normal"]), str(f), "--out", str(tmp_path / "m.onnx"), *FAST])
    assert_user_error(r, "other.csv", "differ from")


def test_error_bad_architecture(runner: CliRunner, csvs, tmp_path: Path) -> None:
    r = runner.invoke(
        main, ["fit", str(csvs["normal"]), "--out", str(tmp_path / "m.onnx"), *FAST, "--kernel", "4"]
    )
    assert_user_error(r, "--kernel must be an odd", code=EXIT_USAGE)


def test_error_inspect_not_onnx(runner: CliRunner, tmp_path: Path) -> None:
    f = tmp_path / "junk.onnx"
    f.write_bytes(b"not a model")
    assert_user_error(runner.invoke(main, ["inspect", str(f)]), "junk.onnx")
    f.write_bytes(b"")
    assert_user_error(runner.invoke(main, ["inspect", str(f)]), "junk.onnx: not a loadable ONNX model: the file is empty")


def test_evaluate_without_labels_reports_alerts_per_day(
    runner: CliRunner, csvs, demo_model_path: Path, tmp_path: Path
) -> None:
    f = tmp_path / "nolabels.csv"
    syn.write_csv(f, syn.normal_series(100, 4), syn.channel_names(4))
    r = runner.invoke(
        main,
        [
            "evaluate",
            "-m",
            str(demo_model_path),
            "-d",
            str(f),
            "--no-plot",
            "--report",
            str(tmp_path / "r.json"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "alerts:" in r.stdout and "per day" in r.stdout
    assert "daemon" not in json.loads((tmp_path / "r.json").read_text())


def test_evaluate_lists_each_alert_at_the_files_own_rows_under_rows(
    runner: CliRunner, demo_model_path: Path, tmp_path: Path
) -> None:
    """With ``--rows 1000:`` the alert list counted rows from the slice (an alert at file row 2003 said 1003)."""
    x = syn.normal_series(3000, 4, seed=7).astype(np.float64)
    x[2000:2150, 2] += 6 * x[:1500, 2].std()
    f = tmp_path / "plant.csv"
    syn.write_csv(f, x.astype(np.float32), syn.channel_names(4))
    rep = tmp_path / "r.json"
    r = runner.invoke(main, ["evaluate", str(demo_model_path), str(f), "--rows", "1000:", "--no-plot", "--report",
                             str(rep), "-q"])
    assert r.exit_code == 0, r.output
    listed = json.loads(rep.read_text())["alert_list"]
    (hit,) = [a for a in listed if 2000 <= a["raised_row"] < 2150]
    assert f"rows {hit['raised_row']:,}-" in r.stdout and "each alert" in r.stdout


def test_fit_given_a_model_says_it_is_a_model_not_data(runner: CliRunner, demo_model_path: Path,
                                                       tmp_path: Path) -> None:
    """A trial: ``fit model.onnx`` said "not utf-8 text (line 1, byte 0xe9 ...): try --encoding cp1252"."""
    r = runner.invoke(main, ["fit", str(demo_model_path), "-o", str(tmp_path / "x.onnx")])
    assert r.exit_code == EXIT_DATAERR, r.output  # as every file fit cannot read (tests/test_cli_exits.py)
    assert "an ONNX model, not data" in r.output and "--encoding" not in r.output


def test_evaluate_takes_model_and_data_as_arguments(
    runner: CliRunner, demo_model_path: Path, tmp_path: Path
) -> None:
    """``evaluate MODEL DATA...`` (as ``fit DATA...``), ``-m MODEL DATA`` and ``--data`` beside arguments all work."""
    f, g = tmp_path / "a.csv", tmp_path / "b.csv"
    syn.write_csv(f, syn.normal_series(100, 4), syn.channel_names(4))
    syn.write_csv(g, syn.normal_series(120, 4, seed=1), syn.channel_names(4))
    for args in ([str(demo_model_path), str(f), str(g)], ["-m", str(demo_model_path), str(f), str(g)],
                 [str(demo_model_path), str(f), "-d", str(g)]):
        rep = tmp_path / "r.json"
        r = runner.invoke(main, ["evaluate", *args, "--no-plot", "--report", str(rep), "-q"])
        assert r.exit_code == 0, r.output
        assert sorted(Path(p).name for p in json.loads(rep.read_text())["files"]) == ["a.csv", "b.csv"], args


def test_evaluate_notes_columns_that_are_not_the_models_channels(runner: CliRunner, demo_model_path: Path,
                                                                 tmp_path: Path) -> None:
    """A trial: an extra column in the data was read past without a word."""
    f = tmp_path / "a.csv"
    syn.write_csv(f, syn.normal_series(300, 5, seed=2), [*syn.channel_names(4), "spare_probe"])
    args = ["evaluate", str(demo_model_path), str(f), "--no-plot", "--report", str(tmp_path / "r.json"), "-q"]
    r = runner.invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "a.csv: column 'spare_probe' not among the model's channels: not scored" in r.stderr
    r = runner.invoke(main, [*args, "--exclude", "spare_probe"])
    assert r.exit_code == 0 and "not among the model's channels" not in r.stderr, r.output


def test_evaluate_names_a_label_column_it_does_not_use(runner: CliRunner, demo_model_path: Path,
                                                       tmp_path: Path) -> None:
    """A file with ``label`` but no ``anomaly`` is scored as normal data: a note says so and how to use it."""
    f = tmp_path / "a.csv"
    x, labels = syn.labelled_series(400, 4, syn.random_anomalies(400, 4, 1, 0), 0)
    syn.write_csv(f, x, syn.channel_names(4), labels)
    f.write_text(f.read_text().replace(",anomaly\n", ",label\n", 1))
    args = ["evaluate", str(demo_model_path), str(f), "--no-plot", "--report", str(tmp_path / "r.json"), "-q"]
    r = runner.invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "a.csv: no 'anomaly' column, so it is scored as unlabelled normal data" in r.stderr
    assert "--label-column label measures against it" in r.stderr and "F1" not in r.stdout
    r = runner.invoke(main, [*args, "--label-column", "label"])
    assert r.exit_code == 0 and "note:" not in r.stderr and "F1" in r.stdout, r.output


def test_error_evaluate_wrong_channels(
    runner: CliRunner, csvs, demo_model_path: Path, tmp_path: Path
) -> None:
    r = runner.invoke(
        main, ["evaluate", "-m", str(demo_model_path), "-d", str(csvs["labelled"]), "--no-plot"]
    )
    assert_user_error(r, "labelled.csv", "not found")


def test_error_bad_checkpoint(runner: CliRunner, tmp_path: Path) -> None:
    f = tmp_path / "ck.pt"
    f.write_bytes(b"garbage")
    assert_user_error(
        runner.invoke(main, ["export", str(f), "--out", str(tmp_path / "m.onnx")]), "ck.pt", "checkpoint"
    )


def test_error_label_column_absent(runner: CliRunner, csvs, tmp_path: Path) -> None:
    r = runner.invoke(
        main, ["fit", str(csvs["labelled"]), "--out", str(tmp_path / "m.onnx"), "--label-column", "foo", *FAST]
    )
    assert_user_error(r, "--label-column 'foo'", "labelled.csv", "anomaly")
    assert not (tmp_path / "m.onnx").exists()


def test_evaluate_label_column_help_is_its_own(runner: CliRunner) -> None:
    def label_help(cmd: str) -> str:
        command = main.get_command(None, cmd)  # type: ignore[arg-type]
        return next(p.help for p in command.params if p.name == "label_column")

    assert "not trained on" in label_help("fit")
    assert "not trained on" not in label_help("evaluate") and "ground-truth" in label_help("evaluate")


def test_pot_with_too_few_validation_windows_fails_before_training(
    runner: CliRunner, csvs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import trainer.pipeline

    def no_training(*a, **k):
        raise AssertionError("trained before refusing the POT calibration")

    monkeypatch.setattr(trainer.pipeline, "fit", no_training)
    r = runner.invoke(
        main, ["fit", str(csvs["normal"]), "--out", str(tmp_path / "m.onnx"), *FAST, "--threshold", "pot"]
    )
    assert_user_error(r, "POT needs at least 10", "validation windows give at most")


def test_fit_quantize_does_not_log_the_preprocessing_hint(
    runner: CliRunner, csvs, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "m.onnx"
    with caplog.at_level("WARNING"):
        r = runner.invoke(main, ["fit", str(csvs["normal"]), "--out", str(out), *FAST, "--quantize", "int8"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "m.int8.onnx").is_file()
    assert not [rec for rec in caplog.records if "pre-processing" in rec.getMessage()]
    assert "pre-processing" not in r.output


def test_fit_defaults_print_sizes_screening_and_false_alarms(runner: CliRunner, tmp_path: Path) -> None:
    x = syn.normal_series(600, 3, seed=0)
    x[:, 1] = 5.0  # a stuck channel
    f = tmp_path / "plant.csv"
    syn.write_csv(f, x, syn.channel_names(3))
    out = tmp_path / "m.onnx"
    r = runner.invoke(main, ["fit", str(f), "--out", str(out), "--epochs", "3", "-q"])
    assert r.exit_code == 0, r.output
    assert "window 16: about 1/20 of the shortest training part (480 rows)" in r.stdout
    assert f"- {syn.channel_names(3)[1]}: constant in training" in r.stdout
    assert "stopped by the epoch cap 3 while still improving" in r.stdout
    assert "false alarms per 1,000 normal hop-1 windows: budget 1 (the tail fit's threshold for it, then the margin" in r.stdout
    assert "(the windows it was calibrated on; " in r.stdout and "cannot resolve 1 in 1,000 (about 3,000 would" in r.stdout
    assert "cross-channel term: off (only 2 channels not constant)" in r.stdout
    r = runner.invoke(main, ["inspect", str(out)])
    assert r.exit_code == 0 and "channels (2 of 3 in the score):" in r.stdout and "format_version: 4" in r.stdout
    assert "cross-channel term: off (only 2 channels not constant)" in r.stdout


def test_fit_and_inspect_say_when_the_cross_channel_term_is_on(runner: CliRunner, tmp_path: Path) -> None:
    from tests.trainer.test_cross_channel import low_rank

    x, _ = low_rank(700, 8, factors=2, noise=0.1, seed=1)  # 8 channels, 2 common causes
    f = tmp_path / "plant.csv"
    syn.write_csv(f, x, syn.channel_names(8))
    out = tmp_path / "m.onnx"
    r = runner.invoke(main, ["fit", str(f), "--out", str(out), "--epochs", "3", "-q"])
    assert r.exit_code == 0, r.output
    assert "cross-channel term: on (" in r.stdout and "limit 10 %" in r.stdout
    r = runner.invoke(main, ["inspect", str(out)])
    assert r.exit_code == 0 and "cross-channel term: on (" in r.stdout and "format_version: 5" in r.stdout


def test_inspect_shows_a_many_channel_models_matrices_by_their_shape_unless_full(runner: CliRunner,
                                                                                tmp_path: Path) -> None:
    """A trial: inspect of a 52-channel model printed 7,200 lines, most of them its (C, C) matrices."""
    from trainer.api import train_and_export
    from trainer.benchmark_synthetic import process_plant

    x = process_plant(600, 24, 3, seed=2).astype(np.float32)
    out = tmp_path / "m.onnx"
    train_and_export(x, [f"c{i}" for i in range(24)], out, seed=0, epochs=2)
    brief = runner.invoke(main, ["inspect", str(out)])
    full = runner.invoke(main, ["inspect", str(out), "--full"])
    assert brief.exit_code == 0 and full.exit_code == 0, brief.output + full.output
    assert '"level_precision": "24 x 24 numbers (inspect --full prints them)"' in brief.stdout
    assert '"mean": "24 numbers (inspect --full prints them)"' in brief.stdout
    assert "numbers (inspect --full" not in full.stdout and len(full.stdout.splitlines()) > 2 * len(brief.stdout.splitlines())
    assert '"window": ' in brief.stdout and "channels (" in brief.stdout


def test_too_little_data_exits_2_unless_forced(runner: CliRunner, tmp_path: Path) -> None:
    f = tmp_path / "short.csv"
    syn.write_csv(f, syn.normal_series(150, 2, seed=0), syn.channel_names(2))
    out = tmp_path / "m.onnx"
    r = runner.invoke(main, ["fit", str(f), "--out", str(out), "--epochs", "2", "-q"])
    assert_user_error(r, "too little normal data for window 8", "hop-1 validation windows", "--force", code=EXIT_USAGE)
    r = runner.invoke(main, ["fit", str(f), "--out", str(out), "--epochs", "2", "-q", "--force"])
    assert r.exit_code == 0, r.output
    assert "forced: too little normal data" in r.stdout


def test_too_little_data_counts_the_windows_left_after_the_labelled_rows(runner: CliRunner, tmp_path: Path) -> None:
    """A trial fit 48 windows and exited 0: the minimum counted every window of the parts, the labelled ones too."""
    labels = np.zeros(400, np.int8)
    labels[60:300] = 1  # 240 of 400 rows labelled: 50 of the 305 training windows (W 16) touch none
    f = tmp_path / "labelled.csv"
    syn.write_csv(f, syn.normal_series(400, 3, seed=0), syn.channel_names(3), labels)
    out = tmp_path / "m.onnx"
    r = runner.invoke(main, ["fit", str(f), "--out", str(out), "--epochs", "2", "-q"])
    assert_user_error(r, "too little normal data for window 16: 50 training windows (need 100), after leaving out "
                      "the 255 of 305 training and 0 of 65 validation windows that touch one of the 240 rows labelled "
                      "anomalous (column 'anomaly' not 0); give more normal rows", "--force", code=EXIT_USAGE)
    assert not out.exists()
    r = runner.invoke(main, ["fit", str(f), "--out", str(out), "--epochs", "2", "-q", "--force"])
    assert r.exit_code == 0, r.output
    assert "forced: too little normal data for window 16: 50 training windows" in r.stdout


@pytest.mark.parametrize(("extra", "fragment"), [
    (["--hop", "8"], "39 training windows at training hop 8 (need 100)"),  # 305 at hop 1
    (["--calibrate", "cal.csv"], "25 hop-1 windows in the --calibrate recording(s) (need 50 to calibrate"),
])
def test_too_little_data_counts_the_windows_trained_and_calibrated_on(runner: CliRunner, tmp_path: Path,
                                                                      extra: list[str], fragment: str) -> None:
    f = tmp_path / "normal.csv"
    syn.write_csv(f, syn.normal_series(400, 3, seed=0), syn.channel_names(3))
    syn.write_csv(tmp_path / "cal.csv", syn.normal_series(40, 3, seed=4), syn.channel_names(3))
    args = [str(tmp_path / a) if a == "cal.csv" else a for a in extra]
    r = runner.invoke(main, ["fit", str(f), "--out", str(tmp_path / "m.onnx"), "--window", "16", "--epochs", "2",
                             "-q", *args])
    assert_user_error(r, "too little normal data for window 16: " + fragment, "--force", code=EXIT_USAGE)
    assert "leaving out" not in r.stderr  # nothing was


def test_fit_on_a_feedback_evidence_export_counts_its_normal_windows(runner: CliRunner, tmp_path: Path) -> None:
    """`edgewatch feedback export --evidence` writes one short CSV per judged alert, a confirmed one's rows
    labelled: fit must count what is left of them."""
    from edge_runtime.cli import main as edge_main
    from edge_runtime.service.evidence_store import EvidenceStore
    from edge_runtime.service.feedback_store import FeedbackStore

    store, log = EvidenceStore(tmp_path / "evidence"), FeedbackStore(tmp_path / "state")
    ts = 1000.0 + np.arange(160, dtype=np.float64)
    for k in range(3):  # rows 30..138 of each labelled: 23 of 121 training and 14 of 25 validation windows (W 8) left
        aid = f"pump.1:{k}"
        assert store.write({"alert_id": aid, "device": "pump.1", "channels": syn.channel_names(2),
                            "anomalous_since": 1030.0, "cleared_end": 1138.0, "complete": True},
                           {"ts": ts, "values": syn.normal_series(160, 2, seed=k), "win_end": ts[::10],
                            "win_score": np.ones(16), "win_error": np.ones((16, 2), np.float32)})
        log.append({"alert_id": aid, "verdict": "confirmed", "device": "pump.1", "window_start": 1030.0,
                    "window_end": 1138.0})
    labelled = tmp_path / "labelled"
    r = runner.invoke(edge_main, ["feedback", "export", "--log", str(tmp_path / "state"), "--evidence",
                                  str(tmp_path / "evidence"), "--labelled", str(labelled)])
    assert r.exit_code == 0, r.output
    out = tmp_path / "m.onnx"
    r = runner.invoke(main, ["fit", str(labelled), "--out", str(out), "--epochs", "2", "-q"])
    assert_user_error(r, "too little normal data for window 8: 69 training windows (need 100) and 42 hop-1 "
                      "validation windows (need 50 to calibrate the threshold), after leaving out the 294 of 363 "
                      "training and 33 of 75 validation windows that touch one of the 327 rows labelled anomalous",
                      code=EXIT_USAGE)
    r = runner.invoke(main, ["fit", str(labelled), "--out", str(out), "--epochs", "2", "-q", "--force"])
    assert r.exit_code == 0, r.output
    assert "294 of the 363 training windows hold labelled anomalies and are left out: 69 trained on" in r.stdout
    assert "33 of the 75 hop-1 validation windows hold labelled anomalies and are left out: 42 kept" in r.stdout


def test_calibrate_on_separate_recordings(runner: CliRunner, csvs, tmp_path: Path) -> None:
    cal = tmp_path / "cal.csv"
    syn.write_csv(cal, syn.normal_series(600, 3, seed=5), syn.channel_names(3))
    r = runner.invoke(main, ["fit", str(csvs["normal"]), "--out", str(tmp_path / "m.onnx"), "--calibrate", str(cal),
                             "--epochs", "2", "-q"])
    assert r.exit_code == 0, r.output
    assert "calibrated on 1 --calibrate file(s)" in r.stdout


def test_units_parse_and_refuse_what_is_not_a_channel() -> None:
    import pytest as _pytest

    from trainer.cli import parse_units

    assert parse_units("a=bar, b = degC", ["a", "b", "c"]) == {"a": "bar", "b": "degC"}
    assert parse_units(None, ["a"]) == {}
    for bad, msg in (("x=bar", "'x' is not a channel"), ("a", "is not NAME=UNIT"), ("a=" + "u" * 33, "longer")):
        with _pytest.raises(ValueError, match=msg):
            parse_units(bad, ["a", "b"])


def test_fit_reads_a_units_row_and_units_given_win(runner: CliRunner, tmp_path: Path) -> None:
    from trainer.export import read_metadata

    names = syn.channel_names(3)
    plain = tmp_path / "plain.csv"
    syn.write_csv(plain, syn.normal_series(600, 3, seed=0), names)
    header, *rows = plain.read_text().splitlines()
    cells = header.split(",")
    units = ["" if c not in names else {names[0]: "[bar]", names[1]: "degC", names[2]: "mm/s"}[c] for c in cells]
    f = tmp_path / "units.csv"
    f.write_text("\n".join([header, ",".join(units), *rows]) + "\n")
    out = tmp_path / "m.onnx"
    r = runner.invoke(main, ["fit", str(f), "--out", str(out), "--units", f"{names[2]}=in/s", *FAST])
    assert r.exit_code == 0, r.output
    assert f"units: {names[0]} bar (units row), {names[1]} degC (units row), {names[2]} in/s (--units)" in r.stdout
    assert read_metadata(out).units == {names[0]: "bar", names[1]: "degC", names[2]: "in/s"}
    r = runner.invoke(main, ["evaluate", "--model", str(out), "--data", str(f), "--report", str(tmp_path / "e.json"),
                             "--no-plot"])
    assert r.exit_code == 0, r.output
    bad = tmp_path / "bad.csv"
    messy = [u.replace("degC", "the sensor's unit") for u in units]  # units and a cell that is none
    bad.write_text("\n".join([header, ",".join(messy), *rows]) + "\n")
    r = runner.invoke(main, ["fit", str(bad), "--out", str(out), *FAST])
    assert_user_error(r, "line 2: a units row", f"column '{names[1]}' holds \"the sensor's unit\", not a unit")


@pytest.mark.parametrize("command", ["inspect", "evaluate"])
def test_inspect_and_evaluate_run_without_importing_torch(command: str, demo_model_path: Path,
                                                          tmp_path: Path) -> None:
    """inspect needs onnx only (trainer/model_file.py), evaluate onnxruntime: neither pays torch's seconds of import."""
    import subprocess
    import sys

    data = tmp_path / "normal.csv"
    syn.write_csv(data, syn.normal_series(300, 4), syn.channel_names(4))
    args = ["inspect", str(demo_model_path)] if command == "inspect" else [
        "evaluate", "--model", str(demo_model_path), "--data", str(data), "--no-plot", "--report", str(tmp_path / "r.json")]
    code = ("import sys; from click.testing import CliRunner; from trainer.cli import main; "
            f"r = CliRunner().invoke(main, {args!r}); "
            "print(r.exit_code, 'torch' in sys.modules); print(r.output[-1500:], file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == ["0", "False"], out.stderr[-2000:]


def test_warnings_and_errors_read_alike_and_v_names_the_logger(tmp_path: Path) -> None:
    """A warning was ``WARNING trainer.data: ...`` beside ``edgewatch-train fit: error: ...``; both now name the
    command, and -v keeps the logger's name for a developer."""
    import subprocess
    import sys

    f = tmp_path / "dup.csv"
    f.write_text("timestamp,a\n" + "".join(f"{1.7e9 + i - (i == 5)},{i % 3}\n" for i in range(30)))
    run = [sys.executable, "-m", "trainer.cli"]
    quiet = subprocess.run([*run, "fit", str(f), "-o", str(tmp_path / "m.onnx")], capture_output=True, text=True,
                           timeout=120)
    lines = quiet.stderr.splitlines()
    warned = [ln for ln in lines if "repeat the timestamp" in ln]
    assert quiet.returncode == 2 and len(warned) == 1 and warned[0].startswith("edgewatch-train fit: warning: ")
    assert lines[-1].startswith("edgewatch-train fit: error: too little normal data")
    loud = subprocess.run([*run, "-v", "fit", str(f), "-o", str(tmp_path / "m.onnx")], capture_output=True,
                          text=True, timeout=120)
    assert any(ln.startswith("WARNING trainer.data: ") for ln in loud.stderr.splitlines()), loud.stderr


def test_rows_fit_on_the_first_part_and_evaluate_the_rest(runner: CliRunner, csvs, tmp_path: Path) -> None:
    """SKAB's per-file protocol by hand: fit --rows 400, evaluate --rows 400: (the model records its rows)."""
    out = tmp_path / "m.onnx"
    r = runner.invoke(main, ["fit", str(csvs["labelled"]), "--rows", "400", "--out", str(out), "--force", *FAST])
    assert r.exit_code == 0, r.output
    from trainer.model_file import read_metadata

    assert read_metadata(out).preprocessing["rows"] == "0:400"
    report = tmp_path / "e.json"
    r = runner.invoke(main, ["evaluate", "-m", str(out), "-d", str(csvs["labelled"]), "--rows", "400:",
                             "--report", str(report), "--no-plot", "-q"])
    assert r.exit_code == 0, r.output
    assert "over 200 points" in r.stdout, r.stdout


def test_a_window_longer_than_the_file_is_a_usage_error_saying_what_to_give(runner: CliRunner, csvs,
                                                                            tmp_path: Path) -> None:
    """It exited 65 (bad data) where too little data for a chosen window exits 2: the remedy is in the call."""
    r = runner.invoke(main, ["fit", str(csvs["normal"]), "--window", "1000", "-o", str(tmp_path / "m.onnx"), "-q"])
    assert_user_error(r, "800 rows, fewer than one window of 1,000: give a --window under 800 (or leave it out",
                      code=EXIT_USAGE)
    r = runner.invoke(main, ["fit", str(csvs["normal"]), "--window", "700", "--force", "-o", str(tmp_path / "m.onnx"),
                             "-q"])
    assert_user_error(r, "only 0 training windows of 700 (even with --force): more rows, a shorter --window",
                      code=EXIT_USAGE)
    r = runner.invoke(main, ["fit", str(csvs["normal"]), "--window", "600", "--force", "--val-fraction", "0.1",
                             "-o", str(tmp_path / "m.onnx"), "-q"])
    assert_user_error(r, "no validation windows of 600", "a larger --val-fraction or a shorter --window",
                      code=EXIT_USAGE)


def test_fit_says_which_column_it_read_as_time_and_a_fully_labelled_validation_part(runner: CliRunner,
                                                                                      tmp_path: Path) -> None:
    rows = "".join(f"20.10.2024 00:{i // 60:02d}:{i % 60:02d};{(i * 7) % 11};{int(i >= 640)}\n" for i in range(800))
    f = tmp_path / "z.csv"
    f.write_text("Zeitstempel;x;anomaly\n" + rows)
    r = runner.invoke(main, ["fit", str(f), "--time-format", "%d.%m.%Y %H:%M:%S", "-o", str(tmp_path / "m.onnx"),
                             "--force", *FAST])
    assert_user_error(r, "no normal validation window of 16", "holds labelled anomalies", "--rows ending before",
                      code=EXIT_USAGE)
    r = runner.invoke(main, ["fit", str(f), "--time-format", "%d.%m.%Y %H:%M:%S", "--rows", "600",
                             "-o", str(tmp_path / "m.onnx"), "--force", *FAST])
    assert r.exit_code == 0, r.output
    assert "time: column 'Zeitstempel' (--time-format '%d.%m.%Y %H:%M:%S'), a sample every 1 s" in r.stdout


def test_fit_like_a_live_model_takes_its_window_channels_and_units(runner: CliRunner, tmp_path: Path) -> None:
    """The retraining loop: a model fitted on other data (here shorter, so fit would choose another window, and
    with its columns in another order) that a fleet can shadow beside the live one."""
    from trainer.export import read_metadata

    names = syn.channel_names(3)
    live_csv, new_csv = tmp_path / "plant.csv", tmp_path / "labelled.csv"
    syn.write_csv(live_csv, syn.normal_series(1200, 3, seed=0), names)
    live = tmp_path / "live.onnx"
    fast = ["--epochs", "2", "--width", "4", "--latent", "4", "-q"]
    r = runner.invoke(main, ["fit", str(live_csv), "--out", str(live), "--window", "32",
                             "--units", f"{names[0]}=bar", *fast])
    assert r.exit_code == 0, r.output
    x = syn.normal_series(500, 3, seed=1)[:, ::-1]
    syn.write_csv(new_csv, x, names[::-1])  # its columns reversed
    out = tmp_path / "v2.onnx"
    r = runner.invoke(main, ["fit", str(new_csv), "--out", str(out), "--like", str(live), *fast])
    assert r.exit_code == 0, r.output
    assert "like live.onnx" in r.stdout and "window, channels, units taken from it" in r.stdout
    assert f"units: {names[0]} bar (--like)" in r.stdout
    got, want = read_metadata(out), read_metadata(live)
    assert (got.window, got.channels, got.units) == (32, want.channels, {names[0]: "bar"})
    r = runner.invoke(main, ["fit", str(new_csv), "--out", str(out), "--like", str(live), "--window", "16", *fast])
    assert r.exit_code == 0, r.output
    assert read_metadata(out).window == 16 and "channels, units taken from it" in r.stdout  # a window given wins
    r = runner.invoke(main, ["fit", str(new_csv), "--out", str(out), "--like", str(tmp_path / "nope.onnx"), *fast])
    assert r.exit_code == EXIT_USAGE and "nope.onnx" in r.output
    # second read: --exclude of a live channel was ignored without a word; a live channel missing names --like
    r = runner.invoke(main, ["fit", str(new_csv), "--out", str(out), "--like", str(live), "--exclude", names[1], *fast])
    assert r.exit_code == EXIT_USAGE and f"--exclude {names[1].lower()!r} is a channel of --like live.onnx" in r.output
    short = tmp_path / "short.csv"
    syn.write_csv(short, syn.normal_series(500, 2, seed=1), names[:2])
    r = runner.invoke(main, ["fit", str(short), "--out", str(out), "--like", str(live), *fast])
    assert r.exit_code == EXIT_DATAERR and "(a channel of --like live.onnx, which the new model must have)" in r.output
    r = runner.invoke(main, ["fit", str(new_csv), "--out", str(out), "--like", str(live), "--units",
                             f"{names[0]}=psi", *fast])  # every unit given: none taken from it
    assert r.exit_code == 0 and "window, channels taken from it" in r.stdout, r.output


def test_fit_like_keeps_a_channel_name_with_a_comma(runner: CliRunner, tmp_path: Path) -> None:
    from trainer.export import read_metadata

    f = tmp_path / "c.csv"
    x = syn.normal_series(600, 2, seed=0)
    f.write_text('"Temp, inlet",Flow\n' + "".join(f"{a},{b}\n" for a, b in x))
    live, out = tmp_path / "live.onnx", tmp_path / "v2.onnx"
    fast = ["--epochs", "2", "--width", "4", "--latent", "4", "-q", "--window", "16"]
    assert runner.invoke(main, ["fit", str(f), "--out", str(live), *fast]).exit_code == 0
    r = runner.invoke(main, ["fit", str(f), "--out", str(out), "--like", str(live), *fast])
    assert r.exit_code == 0, r.output
    assert read_metadata(out).channels == ["Temp, inlet", "Flow"]


def test_fit_time_column_names_an_epoch_ms_column_that_evaluate_and_replay_reuse(runner: CliRunner,
                                                                                  tmp_path: Path) -> None:
    """The trial: an integer epoch-ms column named time_ms was read as a feature (and called constant); fit had
    no --time-column. Named, it is the time: the model's sample period, and evaluate and replay read it so."""
    from edge_runtime.tools.replay import read_recording
    from trainer.export import read_metadata

    names = syn.channel_names(2)
    x = syn.normal_series(600, 2, seed=0)
    f = tmp_path / "ms.csv"
    f.write_text("time_ms," + ",".join(names) + "\n" + "".join(
        f"{1_700_000_000_000 + 500 * i}," + ",".join(f"{v:.5f}" for v in row) + "\n" for i, row in enumerate(x)))
    out = tmp_path / "m.onnx"
    r = runner.invoke(main, ["fit", str(f), "--out", str(out), "--time-column", "time_ms", *FAST])
    assert r.exit_code == 0, r.output
    meta = read_metadata(out)
    assert meta.channels == names and meta.sample_period_s == 0.5 and meta.preprocessing["time_column"] == "time_ms"
    assert "time: column 'time_ms'" in r.stdout
    r = runner.invoke(main, ["evaluate", str(out), str(f), "--no-plot", "-q", "--report", str(tmp_path / "e.json")])
    assert r.exit_code == 0, r.output  # the stored time column: the same channels as the model
    assert read_recording(f, time_column=meta.preprocessing["time_column"]).ts is not None
    r = runner.invoke(main, ["fit", str(f), "--out", str(out), "--time-column", "tme_ms", *FAST])
    assert r.exit_code == EXIT_DATAERR and "--time-column 'tme_ms'" in r.output and "time_ms" in r.output
