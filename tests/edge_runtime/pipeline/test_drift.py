"""Drift notices (edge_runtime/pipeline/drift.py): a sustained shift is reported, never learnt."""

from __future__ import annotations

import numpy as np

from edge_runtime.pipeline.drift import DriftPolicy, DriftState, drift_doc, observe_scores
from tests.edge_runtime.schema_check import errors, load

POLICY = DriftPolicy(window=100, q=0.9, ratio=1.5, sustain=3)


def _run(st: DriftState, scores: np.ndarray, chunk: int = 7) -> list[tuple[str, float, float]]:
    out = []
    for i in range(0, scores.shape[0], chunk):
        due = observe_scores(st, POLICY, scores[i:i + chunk], reference=1.0)
        if due is not None:
            out.append(due)
    return out


def test_steady_scores_raise_no_notice() -> None:
    rng = np.random.default_rng(0)
    assert _run(DriftState(), rng.uniform(0.5, 1.05, 5000)) == []


def test_a_sustained_shift_is_reported_once_then_its_return() -> None:
    rng = np.random.default_rng(1)
    scores = np.concatenate([rng.uniform(0.5, 1.0, 1000), rng.uniform(1.6, 2.0, 1000), rng.uniform(0.5, 1.0, 1000)])
    notices = _run(DriftState(), scores)
    assert [n[0] for n in notices] == ["drift", "returned"]
    assert notices[0][2] > 1.5


def test_a_short_burst_is_not_a_drift() -> None:
    rng = np.random.default_rng(2)
    scores = np.concatenate([rng.uniform(0.5, 1.0, 1000), rng.uniform(3.0, 4.0, 150), rng.uniform(0.5, 1.0, 1000)])
    assert _run(DriftState(), scores) == []


def test_the_notice_fits_its_schema_and_says_the_threshold_is_unchanged() -> None:
    doc = drift_doc("d1", "drift", 0.9, 1.8, 1.0, 1.8, 100, 2.0, "gw1", 1.0)
    assert errors(doc, load("drift.schema.json")) == [] and doc["threshold_changed"] is False and doc["suggestion"]
