"""Metrics against hand-computed cases, and VUS against a literal transcription of its definition."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import mannwhitneyu

from trainer import metrics as m


def test_counts_and_rates_hand_made() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    p = np.array([1, 1, 0, 1, 0, 0, 0, 0], dtype=bool)
    r = m.Counts.of(p, y).rates()  # tp 2, fn 1, fp 1, tn 4
    assert (r["tp"], r["fp"], r["fn"], r["tn"]) == (2, 1, 1, 4)
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == pytest.approx(2 / 3)
    assert r["f1"] == pytest.approx(2 / 3)
    assert r["far"] == pytest.approx(1 / 5) and r["mar"] == pytest.approx(1 / 3)
    assert r["flag_all_f1"] == pytest.approx(2 * (3 / 8) / (1 + 3 / 8))  # 2p / (1 + p), p = 3/8


def test_flag_all_f1_is_the_f1_of_flagging_everything() -> None:
    y = np.array([0, 1, 1, 0, 0, 1, 0])
    assert m.flag_all_f1(y) == pytest.approx(m.Counts.of(np.ones(7, bool), y).rates()["f1"])
    assert m.flag_all_f1(np.zeros(0)) is None


def test_rates_undefined_are_none_and_pooling_sums_counts() -> None:
    r = m.Counts.of(np.zeros(4, bool), np.zeros(4)).rates()
    assert r["precision"] is None and r["recall"] is None and r["far"] == 0.0
    a = m.Counts.of(np.ones(4, bool), np.ones(4))  # all caught, no normal point
    b = m.Counts.of(np.array([1, 0, 0, 0], bool), np.zeros(4))
    assert a.rates()["far"] is None
    t = (a + b).rates()
    assert t["f1"] == pytest.approx(4 / 4.5)  # from summed counts, not the mean of 1.0 and 0.0
    assert t["far"] == pytest.approx(1 / 4)


def test_segments() -> None:
    assert m.segments(np.array([0, 1, 1, 0, 1])).tolist() == [[1, 3], [4, 5]]
    assert m.segments(np.zeros(3)).shape == (0, 2)


def test_events_alerts_and_delays_hand_made() -> None:
    #           0  1  2  3  4  5  6  7  8  9 10 11 12 13 14 15
    y = np.array([0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0])
    f = np.array([1, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0], dtype=bool)
    ev = m.event_counts(y, f, tolerance=2, period_s=10.0)
    r = ev.rates()
    assert (r["events"], r["detected"]) == (2, 1)  # the second event (10..11) is missed
    assert ev.delays == [2]  # first flag in 2..5 is at 4
    assert r["delay_median_s"] == pytest.approx(20.0)
    # alerts: [0], [4..7] (overlaps event 1), [13..14]: event 2 ends at 12, +2 tolerance covers 12..13
    assert (r["alerts"], r["true_alerts"], r["false_alerts"]) == (3, 2, 1)
    assert r["event_precision"] == pytest.approx(2 / 3)
    n_normal = int((y == 0).sum())
    assert r["false_alarms_per_day"] == pytest.approx(1 / (n_normal * 10 / 86400))
    assert m.event_counts(y, f, tolerance=0).rates()["true_alerts"] == 1  # no tolerance: [13..14] is false
    assert m.event_counts(y, f).rates()["false_alarms_per_day"] is None  # period unknown


def test_event_delay_is_zero_when_an_alert_is_already_up() -> None:
    y = np.array([0, 0, 1, 1, 0])
    f = np.array([0, 1, 1, 0, 0], dtype=bool)
    assert m.event_counts(y, f).delays == [0]


def test_event_counts_pool_and_percentiles() -> None:
    a = m.event_counts(np.array([1, 1, 1, 0]), np.array([0, 0, 1, 0], bool), period_s=1.0)
    b = m.event_counts(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0], bool), period_s=1.0)
    r = (a + b).rates()
    assert r["events"] == 2 and r["detected"] == 2
    assert r["delay_median"] == pytest.approx(1.0) and r["delay_p90"] == pytest.approx(1.8)


def test_roc_auc_hand_cases_and_against_mann_whitney() -> None:
    y = np.array([0, 0, 1, 1])
    assert m.roc_auc(y, np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert m.roc_auc(y, np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.5)
    assert m.roc_auc(np.zeros(3), np.arange(3.0)) is None
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.3
    s = np.round(rng.normal(size=300) + y, 1)  # with ties
    u = mannwhitneyu(s[y], s[~y]).statistic
    assert m.roc_auc(y, s) == pytest.approx(u / (y.sum() * (~y).sum()))


def test_pr_auc_hand_computed() -> None:
    # ranking: 0.9 (pos), 0.8 (neg), 0.7 (pos): AP = 0.5 * 1 + 0.5 * 2/3
    assert m.pr_auc(np.array([1, 0, 1]), np.array([0.9, 0.8, 0.7])) == pytest.approx(0.5 + 1 / 3)
    assert m.pr_auc(np.array([1, 1, 0]), np.array([3.0, 2.0, 1.0])) == pytest.approx(1.0)
    assert m.pr_auc(np.zeros(3), np.arange(3.0)) is None


def test_buffered_labels_follow_the_definition() -> None:
    y = np.array([0, 0, 0, 1, 1, 0, 0, 0])
    lab = m.buffered_labels(y, 4)  # half-width 2, weight sqrt(1 - d / 4)
    assert lab[3:5].tolist() == [1.0, 1.0]
    assert lab[5] == pytest.approx(np.sqrt(1 - 1 / 4)) and lab[2] == pytest.approx(np.sqrt(1 - 1 / 4))
    assert lab[1] == pytest.approx(np.sqrt(1 - 2 / 4)) and lab[6] == 0.0  # right side: last + 0 .. last + 1
    assert m.buffered_labels(y, 0).tolist() == y.tolist()


def _vus_literal(labels: np.ndarray, score: np.ndarray, max_buffer: int) -> tuple[float, float]:
    """The definition transcribed loop by loop (slow): per buffer, 250 thresholds, range TPR/FPR/precision."""
    desc = -np.sort(-score)
    p = labels.sum()
    aps, aucs = [], []
    for buf in range(max_buffer + 1):
        lab = m.buffered_labels(labels, buf)
        segs = m.segments(lab > 0)
        tpr, fpr, prec = [0.0], [0.0], [1.0]
        for i in np.linspace(0, len(score) - 1, 250).astype(int):
            pred = score >= desc[i]
            prod = lab * pred
            tp = prod.sum()
            p_new = (p + lab.sum()) / 2
            exist = sum(prod[a:b].sum() > 0 for a, b in segs) / len(segs)
            tpr.append(min(tp / p_new, 1) * exist)
            fpr.append((pred.sum() - tp) / (len(lab) - p_new))
            prec.append(tp / pred.sum())
        tpr.append(1.0)
        fpr.append(1.0)
        t, f, q = np.array(tpr), np.array(fpr), np.array(prec)
        aucs.append(np.sum((f[1:] - f[:-1]) * (t[1:] + t[:-1]) / 2))
        aps.append(np.sum((t[1:-1] - t[:-2]) * (q[1:] + q[:-1]) / 2))
    return float(np.mean(aps)), float(np.mean(aucs))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vus_matches_its_literal_definition(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = np.zeros(400, dtype=np.int8)
    for s in rng.choice(380, 3, replace=False):
        y[s : s + rng.integers(3, 20)] = 1
    score = np.round(rng.normal(size=400) + 1.5 * y, 1)  # ties included
    got = m.vus(y, score, 12)
    ap, auc = _vus_literal(y, score, 12)
    assert got["vus_pr"] == pytest.approx(ap, abs=1e-12)
    assert got["vus_roc"] == pytest.approx(auc, abs=1e-12)


def test_vus_of_a_perfect_and_a_useless_score() -> None:
    y = np.zeros(500, dtype=np.int8)
    y[100:130] = 1
    y[300:320] = 1
    perfect = m.vus(y, y.astype(float) + np.linspace(0, 1e-3, 500), 0)
    assert perfect["vus_roc"] > 0.99 and perfect["vus_pr"] > 0.95
    assert m.vus(np.zeros(10), np.arange(10.0), 4) is None
    assert m.vus(np.ones(10), np.arange(10.0), 4) is None  # no normal point: undefined, not NaN


_series = st.integers(min_value=2, max_value=60).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 1), min_size=n, max_size=n),
        st.lists(st.floats(-5, 5, allow_nan=False, width=32), min_size=n, max_size=n),
        st.lists(st.booleans(), min_size=n, max_size=n),
    )
)


@settings(max_examples=60, deadline=None)
@given(_series)
def test_metric_invariants(case: tuple[list[int], list[float], list[bool]]) -> None:
    y, s, f = np.array(case[0]), np.round(np.array(case[1]), 1), np.array(case[2])
    auc = m.roc_auc(y, s)
    if auc is not None:
        assert 0.0 <= auc <= 1.0
        assert m.roc_auc(y, -s) == pytest.approx(1.0 - auc)  # reversing the ranking mirrors the AUC
    ap = m.pr_auc(y, s)
    assert ap is None or 0.0 < ap <= 1.0 + 1e-12
    ev = m.event_counts(y, f, tolerance=3, period_s=1.0)
    assert 0 <= ev.detected <= ev.events and 0 <= ev.true_alerts <= ev.alerts
    assert all(d >= 0 for d in ev.delays) and ev.normal_points == int((y == 0).sum())
    v = m.vus(y, s, 6)
    assert v is None or (0.0 <= v["vus_pr"] <= 1.0 + 1e-12 and 0.0 <= v["vus_roc"] <= 1.0 + 1e-12)
    c = m.Counts.of(f, y)
    assert c.n == len(y)
