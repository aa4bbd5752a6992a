"""Metrics against hand-computed cases, point-score rules, the report and plot through onnxruntime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_runtime import synthetic as syn
from trainer import evaluate as ev
from trainer.data import Series


def test_binary_metrics_hand_computed() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    p = np.array([1, 1, 0, 1, 0, 0, 0, 0])
    m = ev.binary_metrics(y, p)  # tp 2, fn 1, fp 1, tn 4
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 4)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["far"] == pytest.approx(1 / 5) and m["mar"] == pytest.approx(1 / 3)


def test_binary_metrics_degenerate() -> None:
    m = ev.binary_metrics(np.zeros(4), np.zeros(4))
    assert m["precision"] is None and m["recall"] is None and m["far"] == 0.0
    assert ev.binary_metrics(np.array([1, 0]), np.array([0, 1]))["f1"] == 0.0


def test_roc_auc_hand_computed_with_ties() -> None:
    y = np.array([0, 0, 1, 1])
    assert ev.roc_auc(y, np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert ev.roc_auc(y, np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.5)
    assert ev.roc_auc(y, np.array([0.1, 0.2, 0.3, 0.4])) == pytest.approx(1.0)
    assert ev.roc_auc(np.zeros(3), np.arange(3.0)) is None


def test_pr_auc_hand_computed() -> None:
    # ranking: 0.9 (pos), 0.8 (neg), 0.7 (pos): AP = 0.5 * 1 + 0.5 * 2/3
    y = np.array([1, 0, 1])
    assert ev.pr_auc(y, np.array([0.9, 0.8, 0.7])) == pytest.approx(0.5 + 1 / 3)
    assert ev.pr_auc(np.array([1, 1, 0]), np.array([3.0, 2.0, 1.0])) == pytest.approx(1.0)
    assert ev.pr_auc(np.zeros(3), np.arange(3.0)) is None


def test_point_scores_rules() -> None:
    # T=10, W=4, hop=2: windows start 0, 2, 4, 6
    scores = np.array([1.0, 5.0, 2.0, 3.0])
    mn = ev.point_scores(10, 4, 2, scores, "min")
    assert mn.tolist() == [1, 1, 1, 1, 2, 2, 2, 2, 3, 3]
    causal = ev.point_scores(10, 4, 2, scores, "causal")
    assert np.isnan(causal[:3]).all()
    assert causal[3:].tolist() == [1, 1, 5, 5, 2, 2, 3]
    with pytest.raises(ValueError):
        ev.point_scores(10, 4, 2, scores, "max")


def test_evaluate_report_and_plot(demo_model_path: Path, tmp_path: Path) -> None:
    an = syn.random_anomalies(1500, 4, 3, seed=2, min_len=30, max_len=60)
    x, labels = syn.labelled_series(1500, 4, an, seed=0)
    series = [Series("synthetic", x, syn.channel_names(4), labels)]
    rep = ev.evaluate(demo_model_path, series, hop=2)
    wm, pm = rep["window_metrics"], rep["point_metrics"]
    assert wm["n_anomalous"] > 0 and pm["n_anomalous"] == int(labels.sum())
    assert wm["roc_auc"] > 0.9 and pm["roc_auc"] > 0.9
    assert wm["far"] < 0.05
    ev.write_report(rep, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["model_id"] == rep["model_id"]
    ev.plot(demo_model_path, series, tmp_path / "r.png", hop=2)
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
