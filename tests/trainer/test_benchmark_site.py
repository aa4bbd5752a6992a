"""The operator's-loop benchmarks (trainer/benchmark_site.py), small: they fail when the behaviour breaks.

The full runs: ``edgewatch-train benchmark feedback`` and ``benchmark transfer [--skab DIR]``
(docs/OPERATOR.md has their numbers). The model is the session's small model of profile 0
(tests/model_fixtures.py, the same fit as benchmark_site.profile_model).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trainer.benchmark_site import T0, FeedbackCase, SiteShift, normal_exceedance, run_feedback, run_transfer


@pytest.mark.parametrize("fault_sd", [6.0, 3.0])  # 3 std (1.5 x the episode) was x1.42 late before signatures
def test_after_one_false_alarm_the_episode_replayed_raises_nothing_and_the_fault_is_on_time(
        tmp_path: Path, demo_model_path: Path, fault_sd: float) -> None:
    rep = run_feedback(FeedbackCase(fault_sd=fault_sd, gap=800), tmp_path, model=demo_model_path)
    assert rep["first_run"]["episode_alerts"] >= 1 and rep["first_run"]["fault_delay_s"] is not None
    assert rep["verdict"]["status"] == "accepted" and rep["verdict"]["threshold"] > rep["verdict"]["threshold_before"]
    assert rep["replay"]["episode_alerts"] == 0
    assert rep["verdict"]["applies_to"].startswith("windows like it (")
    assert rep["delay_ratio"] is not None and rep["delay_ratio"] <= 1.1
    assert rep["met"]


def test_a_warmup_brings_another_site_within_twice_the_budget(tmp_path: Path, demo_model_path: Path) -> None:
    rep = run_transfer(tmp_path, devices=2, steps=6000, warmup=3000, shift=SiteShift(1.0, 1.0), model=demo_model_path)
    assert rep["without_over_budget"] > 20  # the other site's normal data: many false alarms without
    assert rep["exceedance_with"] <= 2 * rep["budget"] and rep["met"]
    assert all(d["calibration"] == "calibrated" and d["alerts_with"] == 0 for d in rep["devices"])
    assert rep["faults_detected_with"] == 2  # and a real fault after the warm-up is still seen


def test_normal_exceedance_counts_only_windows_wholly_normal_after_the_warm_up() -> None:
    labels = np.zeros(20, dtype=np.int64)
    labels[12] = 1  # windows of 4 ending at 12..15 hold it
    ends = T0 + np.arange(3, 20, dtype=np.float64)
    score = np.where(np.arange(3, 20) % 2 == 0, 5.0, 1.0)  # even ends above a threshold of 2
    above, n = normal_exceedance(ends, score, 2.0, labels, window=4, warm_rows=6)
    normal_ends = [e for e in range(6, 20) if not 12 <= e <= 15]  # 6..11 and 16..19
    assert n == len(normal_ends) and above == sum(e % 2 == 0 for e in normal_ends)
