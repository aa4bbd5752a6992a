"""evaluate through the edge's model loader: labelled report, unlabelled alerts per day, plot, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.pipeline.hysteresis import AlertPolicy
from edge_runtime.tools import synthetic as syn
from trainer import evaluate as ev
from trainer.data import DataError, Series
from trainer.decisions import daemon_decisions
from trainer.sensor_view import masked_scores, sensor_view


def test_judge_measures_only_rows_from_first_on() -> None:
    scores = np.r_[np.full(10, 5.0), np.zeros(37)]  # W=4: 47 windows, 50 rows; an alert over rows 5..
    labels = np.zeros(50, np.int8)
    o = ev.judge("f", scores, labels, 1.0, 4, 1, AlertPolicy(), first=20, period_s=1.0)
    assert o.counts.n == 30 and o.counts.fp == 0  # the early alert (cleared by row 17) is before row 20
    assert o.alerts() == 0
    o = ev.judge("f", scores, labels, 1.0, 4, 1, AlertPolicy(), first=0, period_s=1.0)
    assert o.alerts() == 1 and o.counts.fp > 0


def test_evaluate_labelled_report_and_plot(demo_model_path: Path, tmp_path: Path) -> None:
    an = syn.random_anomalies(3000, 4, 5, seed=2, min_len=40, max_len=80)
    x, labels = syn.labelled_series(3000, 4, an, seed=0)
    series = [Series("synthetic", x, syn.channel_names(4), labels, sample_period_s=1.0)]
    rep = ev.evaluate(demo_model_path, series)
    d = rep["daemon"]
    assert d["events"] == 5 and d["detected"] >= 3
    assert d["roc_auc_mean"] > 0.8 and d["vus_pr_mean"] is not None
    assert d["flag_all_f1"] == pytest.approx(2 * labels.mean() / (1 + labels.mean()))
    assert rep["decision_hop"] == ev.open_model(demo_model_path).metadata.hop  # the daemon's default
    # the report's decisions are the daemon's, recomputed here from the same scores
    model = ev.open_model(demo_model_path)
    view = sensor_view(model.metadata, x)  # with the daemon's sensor checks, as the report
    assert view is not None
    sc = masked_scores(model, x, ev.window_scores(model, x), view)
    dec = daemon_decisions(sc, model.threshold, len(x), model.window, rep["decision_hop"], AlertPolicy(), view.scored)
    assert d["tp"] == int(np.sum(dec.flags & (labels == 1)))
    assert rep["alerts"]["alerts"] == len(dec.raises)
    ev.write_report(rep, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["model_id"] == rep["model_id"]
    ev.plot(demo_model_path, series, tmp_path / "r.png", rep)
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    assert "flag-all F1" in ev.format_report(rep)


def test_evaluate_unlabelled_normal_data_reports_alerts_per_day(demo_model_path: Path, tmp_path: Path) -> None:
    x = syn.normal_series(4000, 4, seed=5)
    series = [Series("normal", x, syn.channel_names(4), None, sample_period_s=2.0)]
    rep = ev.evaluate(demo_model_path, series)
    ev.plot(demo_model_path, series, tmp_path / "n.png", rep)
    assert (tmp_path / "n.png").stat().st_size > 0
    a = rep["alerts"]
    assert "daemon" not in rep and a["scored_points"] == 4000
    assert a["hours"] == pytest.approx(4000 * 2 / 3600)
    assert a["alerts_per_day"] == pytest.approx(a["alerts"] / (4000 * 2 / 86400))
    assert "per day" in ev.format_report(rep)
    # the headroom a user may judge a lower --margin by: the window scores against the threshold
    model = ev.open_model(demo_model_path)
    view = sensor_view(model.metadata, x)
    sc = ev.window_scores(model, x) if view is None else masked_scores(model, x, ev.window_scores(model, x), view)
    ok = np.ones(len(sc), bool) if view is None else view.scored
    assert a["max_score_ratio"] == pytest.approx(sc[ok].max() / model.threshold)
    assert a["p99_score_ratio"] == pytest.approx(np.quantile(sc[ok], 0.99) / model.threshold)
    assert f"headroom: the highest window scores {a['max_score_ratio']:.2g} x the threshold" in ev.format_report(rep)
    low = {**rep, "alerts": {**a, "max_score_ratio": 0.3, "p99_score_ratio": 0.25}}
    assert a["scored_windows"] >= ev.HEADROOM_WINDOWS
    assert "a lower --margin would still raise nothing" in ev.format_report(low)
    few = {**rep, "alerts": {**a, "max_score_ratio": 0.3, "p99_score_ratio": 0.25, "scored_windows": 5}}
    assert "(from 5 windows: too few to judge a margin by)" in ev.format_report(few)
    assert "--margin" not in ev.format_report(few)
    # a label column of zeros only: measured as normal data, not as F1 0 of no event
    zeros = ev.evaluate(demo_model_path, [Series("normal", x, syn.channel_names(4), np.zeros(4000, np.int8),
                                                 sample_period_s=2.0)])
    text = ev.format_report(zeros)
    assert "no row is labelled anomalous" in text and "headroom:" in text and "point:" not in text
    high = {**rep, "alerts": {**a, "max_score_ratio": 0.9, "p99_score_ratio": 0.5}}
    assert "--margin" not in ev.format_report(high)


def test_a_hop_past_the_window_is_capped_as_the_daemon_caps_it(demo_model_path: Path) -> None:
    """The daemon scores at least one window per window of samples (input.hop capped at W): evaluate's numbers are
    its numbers, not those of a hop that skips samples."""
    an = syn.random_anomalies(3000, 4, 4, seed=3, min_len=40, max_len=80)
    x, labels = syn.labelled_series(3000, 4, an, seed=1)
    series = [Series("synthetic", x, syn.channel_names(4), labels, sample_period_s=1.0)]
    w = ev.open_model(demo_model_path).window
    capped, at_w = ev.evaluate(demo_model_path, series, hop=10 * w), ev.evaluate(demo_model_path, series, hop=w)
    assert capped["decision_hop"] == w and capped["decision_hop_asked"] == 10 * w
    assert capped["daemon"] == at_w["daemon"]
    assert f"hop {w} (--hop {10 * w} capped at the window, as the daemon caps it)" in ev.format_report(capped)
    assert "capped" not in ev.format_report(at_w)


def test_window_scores_in_batches_equal_one_call(demo_model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = ev.open_model(demo_model_path)
    x = syn.normal_series(300, 4, seed=1)
    whole = ev.window_scores(model, x)
    monkeypatch.setattr(ev, "SCORE_BATCH", 7)
    np.testing.assert_allclose(ev.window_scores(model, x), whole, rtol=1e-6)
    assert whole.shape == (300 - model.window + 1,)


def test_a_file_the_edge_refuses_is_one_data_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(DataError, match="not a loadable ONNX model"):
        ev.open_model(bad)


def test_sensor_faults_over_many_files_are_summed_per_channel_with_their_files() -> None:
    """Over a folder the line named each file's channels again (the same names 30 times, no file named)."""
    from trainer.evaluate import conditions_lines

    per = {"stuck": {"P": {"stretches": 1, "rows": 20}}, "out_of_range": {"T": {"stretches": 2, "rows": 1500}}}
    rep = {"files": ["a.csv", "b.csv", "c.csv"], "sensor_faults": {"a.csv": per, "b.csv": {"stuck": per["stuck"]}}}
    (line,) = [ln for ln in conditions_lines(rep) if ln.startswith("sensor faults")]
    assert line == ("sensor faults (the edge's health checks; not anomalies): stuck: P 2x/40 rows in a.csv, b.csv; "
                    "out_of_range: T 2x/1,500 rows in a.csv")
    files = [f"f{i}.csv" for i in range(6)]
    rep = {"files": files, "sensor_faults": {f: {"stuck": per["stuck"]} for f in files[:4]}}
    assert "stuck: P 4x/80 rows in 4 of 6 files" in conditions_lines(rep)[-1]  # many: counted, not named
    rep = {"files": ["a.csv"], "sensor_faults": {"a.csv": per}}
    assert "stuck: P 1x/20 rows; out_of_range: T 2x/1,500 rows" in conditions_lines(rep)[-1]


def test_windows_across_a_time_gap_are_not_scored() -> None:
    """As the daemon restarts a device's window at a gap: the benchmark scores a file with gaps the same way."""
    from trainer.data import gap_windows

    ok = ~gap_windows([8, 15], 20, 4)  # windows k cover rows k..k+3
    assert ok.tolist() == [k + 3 < 8 or (k >= 8 and k + 3 < 15) or k >= 15 for k in range(17)]
    assert not gap_windows([], 20, 4).any() and gap_windows([1], 3, 4).size == 0
    # at hop 3 and from row 6 (a chunk of iter_normal_windows): windows start at 6, 9, 12, 15
    assert gap_windows([8, 15], 20, 4, 3, 6).tolist() == [True, False, True, False]


def test_each_alert_is_listed_with_its_rows_times_peak_and_the_channel_that_departs(demo_model_path: Path) -> None:
    """A new user's evaluate on their own recording said "alerts: 1" and no more: not when, nor what to look at.
    Each alert is listed with the rows and times where the daemon raises and clears it, its peak, and the summary
    its alert document would carry (the daemon's explain functions); a channel the sensor checks leave out of the
    raising window (here frozen) is not named."""
    x = syn.normal_series(3000, 4, seed=7).astype(np.float64)
    sd = x[:1500].std(axis=0)
    x[2000:2150, 2] += 6 * sd[2]  # channel 2 departs high
    x[1990:2200, 0] = x[1990, 0]  # channel 0 frozen over the same span: a failed sensor, left out
    labels = np.zeros(3000, np.int8)
    labels[2000:2150] = 1
    ts = 1_764_489_600.0 + 2.0 * np.arange(3000)  # 2025-11-30 08:00:00 UTC, every 2 s
    names = syn.channel_names(4)
    series = [Series("plant.csv", x.astype(np.float32), names, labels, sample_period_s=2.0, ts=ts)]
    rep = ev.evaluate(demo_model_path, series)
    listed = rep["alert_list"]
    assert len(listed) == rep["alerts"]["alerts"] >= 1
    model = ev.open_model(demo_model_path)
    w, thr = model.window, model.threshold
    view = sensor_view(model.metadata, x.astype(np.float32))
    assert view is not None
    sc = masked_scores(model, x.astype(np.float32), ev.window_scores(model, x.astype(np.float32)), view)
    dec = daemon_decisions(sc, thr, len(x), w, rep["decision_hop"], AlertPolicy(), view.scored)
    assert [a["raised_row"] for a in listed] == dec.raises.tolist()  # the daemon's raises, row for row
    (hit,) = [a for a in listed if 2000 <= a["raised_row"] < 2150]
    assert sc[hit["raised_row"] - w + 1] > thr  # the window ending at the first flagged row raised it
    assert hit["cleared_row"] is not None and hit["cleared_row"] > 2150 - 1
    assert not dec.flags[hit["cleared_row"]] and dec.flags[hit["cleared_row"] - 1]
    minutes, seconds = divmod(2 * hit["raised_row"], 60)
    assert hit["raised_at"] == f"2025-11-30T{8 + minutes // 60:02d}:{minutes % 60:02d}:{seconds:02d}.000Z"
    assert hit["duration_s"] == pytest.approx(2.0 * (hit["cleared_row"] - hit["raised_row"]))
    assert hit["true"] is True and hit["peak_ratio"] > 1
    top = [t["name"] for t in hit["top_channels"]]
    assert top[0] == names[2] and hit["top_channels"][0]["direction"] == "high", hit
    assert view.excluded[hit["raised_row"] - w + 1, 0]  # the checks left the frozen channel out of that window
    assert names[0] not in top  # so it is not named, as the daemon does not name it
    assert hit["summary"].split(" ")[:2] in ([names[2], "high:"], ["critical:", names[2]])
    text = ev.format_report(rep)
    assert "each alert" in text and f"rows {hit['raised_row']:,}-{hit['cleared_row']:,}, 2025-11-30 " in text
    assert "[true]" in text


def test_an_alert_true_only_by_the_tolerance_says_so_and_that_its_anomaly_counts_as_missed(
        demo_model_path: Path) -> None:
    """A new user's 3-row spike: its alert (raised after the spike, within the tolerance) was [true] while the
    events line said 0/1 detected. The alert says it is true by the tolerance and that the anomaly counts missed."""
    from trainer.alert_list import alert_lines, list_alerts
    from trainer.metrics import event_counts

    model = ev.open_model(demo_model_path)
    w = model.window
    n = 3000
    x = syn.normal_series(n, 4, seed=1)
    labels = np.zeros(n, np.int8)
    labels[2000:2003] = 1
    flags = np.zeros(n, bool)
    flags[2010:2030] = True  # after the spike, within W - 1 rows
    flags[1500:1510] = True  # far from it
    scores = np.full(n - w + 1, 2.0 * model.threshold)
    listed = list_alerts(model, "f", x, flags, scores, None, 1, [], AlertPolicy(), labels=labels, tolerance=w - 1)
    (far, late) = listed
    assert (far.true, far.after_event) == (False, False)
    assert (late.true, late.after_event) == (True, True)
    counts = event_counts(labels, flags, tolerance=w - 1)
    assert (counts.detected, counts.true_alerts) == (0, 1)  # the metric's own rule, which the tags now explain
    text = "\n".join(alert_lines([a.to_dict() for a in listed], False))
    assert "[false alarm]" in text and "within --tolerance; the anomaly itself counts as missed]" in text
    flags[2001:2030] = True  # now one row inside the spike is flagged: plainly true
    (_, inside) = list_alerts(model, "f", x, flags, scores, None, 1, [], AlertPolicy(), labels=labels,
                              tolerance=w - 1)
    assert (inside.true, inside.after_event) == (True, False)
