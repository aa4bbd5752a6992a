"""Warm-up calibration (edge_runtime/pipeline/calibration.py): learnt, extended or refused; no network."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.pipeline.calibration import (
    CALIBRATED,
    REFUSED,
    THRESHOLD,
    Calibration,
    CalibrationError,
    WarmupPolicy,
    WarmupSpec,
    lognormal_threshold,
    new_calibration,
    observe,
    parse_warmup,
    running_mask,
)

C = 3
TRAIN_MEAN = np.zeros(C)


@pytest.mark.parametrize(("text", "want"), [("", WarmupSpec()), ("0", WarmupSpec()), ("2000", WarmupSpec(samples=2000)),
                                            ("90s", WarmupSpec(seconds=90.0)), ("30m", WarmupSpec(seconds=1800.0)),
                                            ("2h", WarmupSpec(seconds=7200.0)), ("1.5d", WarmupSpec(seconds=129600.0))])
def test_parse_warmup(text: str, want: WarmupSpec) -> None:
    assert parse_warmup(text) == want


@pytest.mark.parametrize("text", ["2 hours", "-5", "h", "1e3", "0s"])
def test_parse_warmup_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(CalibrationError):
        parse_warmup(text)


def _feed(cal: Calibration, policy: WarmupPolicy, scores: np.ndarray, model_thr: float = 1.0,
          running: np.ndarray | None = None, t0: float = 0.0) -> bool:
    changed = False
    for i in range(0, scores.shape[0], 10):
        s = scores[i:i + 10]
        run = np.ones(s.shape[0], bool) if running is None else running[i:i + 10]
        means = np.full((s.shape[0], C), 2.0)
        changed |= observe(cal, policy, s, t0 + np.arange(i, i + s.shape[0], dtype=np.float64), run, means,
                           model_thr, TRAIN_MEAN)
    return changed


def _policy(**kw) -> WarmupPolicy:
    return WarmupPolicy(WarmupSpec(samples=kw.pop("samples", 1000)), hop=1, window=1, **kw)


def test_a_steady_device_gets_its_own_threshold_at_the_budget() -> None:
    rng = np.random.default_rng(0)
    scores = np.exp(rng.normal(np.log(3.0), 0.3, 4000))  # a site 3x noisier than the model's training data
    policy = _policy(budget=1e-2)
    cal = new_calibration(policy)
    assert cal.phase == THRESHOLD
    _feed(cal, policy, scores[:990])
    assert cal.phase == THRESHOLD  # not yet: 1000 windows
    assert _feed(cal, policy, scores[990:1000])
    assert cal.phase == CALIBRATED and cal.windows == 1000
    assert cal.threshold == pytest.approx(lognormal_threshold(scores[:1000], 1e-2)[0])
    fresh = np.exp(rng.normal(np.log(3.0), 0.3, 100_000))
    assert (fresh > cal.threshold).mean() == pytest.approx(1e-2, rel=0.5)  # the budget on unseen normal data


def test_offsets_are_learnt_in_the_first_half() -> None:
    policy = _policy(offsets=True)
    cal = new_calibration(policy)
    _feed(cal, policy, np.ones(500))
    assert cal.phase == THRESHOLD and cal.offsets == [2.0, 2.0, 2.0]


def test_stopped_windows_are_not_learnt() -> None:
    policy = _policy()
    cal = new_calibration(policy)
    stopped = np.zeros(2000, bool)
    stopped[1500:] = True
    _feed(cal, policy, np.ones(2000), running=stopped)
    assert cal.phase == THRESHOLD and cal.stopped == 1500
    windows = np.zeros((2, 16, C), np.float32)
    windows[1, :, 0] = np.arange(16)
    assert running_mask(windows, np.ones(C), 0.01).tolist() == [False, True]


def test_a_growing_fault_is_extended_then_refused() -> None:
    policy = _policy(max_extend=2)
    cal = new_calibration(policy)
    _feed(cal, policy, np.linspace(1.0, 5.0, 1000))
    assert cal.phase == THRESHOLD and cal.extensions == 1 and "grew" in cal.reason
    _feed(cal, policy, np.linspace(5.0, 25.0, 2000))
    assert cal.phase == REFUSED and cal.threshold is None and "grew" in cal.reason


def test_data_far_above_the_model_is_refused_not_learnt() -> None:
    policy = _policy(max_extend=0, max_factor=10.0)
    cal = new_calibration(policy)
    rng = np.random.default_rng(1)
    _feed(cal, policy, np.exp(rng.normal(np.log(50.0), 0.1, 1000)))
    assert cal.phase == REFUSED and "anomalous against the model" in cal.reason


def test_a_quiet_site_never_goes_below_the_floor() -> None:
    policy = _policy(min_factor=0.5)
    cal = new_calibration(policy)
    _feed(cal, policy, np.full(1000, 0.01) * np.exp(np.random.default_rng(2).normal(0, 0.1, 1000)), model_thr=1.0)
    assert cal.phase == CALIBRATED and cal.threshold == 0.5


def test_a_duration_counts_device_time() -> None:
    policy = WarmupPolicy(WarmupSpec(seconds=600.0), hop=1, window=1, min_windows=30)
    cal = new_calibration(policy)
    _feed(cal, policy, np.ones(500) + np.random.default_rng(3).random(500) * 0.1)
    assert cal.phase == THRESHOLD  # 499 s of device time
    _feed(cal, policy, np.ones(200) + np.random.default_rng(4).random(200) * 0.1, t0=500.0)
    assert cal.phase == CALIBRATED


def test_a_finished_calibration_round_trips_its_document() -> None:
    cal = Calibration(phase=CALIBRATED, threshold=2.5, offsets=[0.1, 0.2, 0.3], windows=900)
    back = Calibration.from_doc(cal.to_doc(), C)
    assert back is not None and (back.phase, back.threshold, back.offsets, back.windows) == (CALIBRATED, 2.5, [0.1, 0.2, 0.3], 900)
    assert Calibration.from_doc({"phase": "calibrated", "threshold": -1}, C) is None
    assert Calibration.from_doc({"phase": "calibrated", "threshold": 1.0, "offsets": [1.0]}, C) is None
    assert Calibration.from_doc({"phase": "threshold"}, C) is None
