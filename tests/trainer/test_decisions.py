"""The daemon's decisions from window scores: causal, hysteresis, the daemon's hop."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.pipeline.alerts import AlertTracker
from edge_runtime.pipeline.hysteresis import AlertPolicy
from trainer.decisions import causal_point_scores, centred_flags, daemon_decisions, latest_window


def test_a_window_decision_is_known_at_its_last_sample() -> None:
    # W=3, T=10: 8 hop-1 windows; raise after 2 above, clear after 1 below 0.5
    scores = np.array([0, 2, 2, 2, 0, 0, 0, 0], dtype=float)
    d = daemon_decisions(scores, 1.0, 10, 3, 1, AlertPolicy(raise_after=2, clear_after=1, clear_ratio=0.5))
    # windows 1, 2 above -> raised at window 2, which ends at sample 4; window 4 below -> cleared at sample 6
    assert d.flags.astype(int).tolist() == [0, 0, 0, 0, 1, 1, 0, 0, 0, 0]
    assert d.raises.tolist() == [4]


def test_the_daemon_hop_scores_every_hop_th_window() -> None:
    # W=2, hop 2: the daemon scores windows 0, 2, 4 (ending at samples 1, 3, 5); window 1 is never seen
    scores = np.array([0, 9, 0, 0, 0], dtype=float)
    pol = AlertPolicy(raise_after=1, clear_after=1, clear_ratio=1.0)
    assert not daemon_decisions(scores, 1.0, 6, 2, 2, pol).flags.any()
    scores = np.array([0, 0, 9, 0, 0], dtype=float)
    d = daemon_decisions(scores, 1.0, 6, 2, 2, pol)
    assert d.flags.astype(int).tolist() == [0, 0, 0, 1, 1, 0]  # raised from sample 3 until window 4 ends at 5
    assert d.raises.tolist() == [3]


def test_decisions_match_the_daemons_alert_tracker_fed_in_chunks() -> None:
    rng = np.random.default_rng(3)
    n, w, hop = 400, 8, 2
    scores = np.abs(rng.normal(size=n)) * np.where(np.arange(n) % 97 < 20, 3.0, 0.8)
    pol = AlertPolicy()
    d = daemon_decisions(scores, 1.5, n + w - 1, w, hop, pol)
    seen = scores[::hop]
    ends = np.arange(seen.size) * hop + w - 1  # sample at which each scored window ends
    tracker, raised_at, lo = AlertTracker(pol, "test"), [], 0
    while lo < seen.size:  # the daemon gets windows in bursts of any size
        hi = min(seen.size, lo + int(rng.integers(1, 9)))
        docs = tracker.update("dev", seen[lo:hi], np.zeros((hi - lo, 2)), ends[lo:hi] * 1.0, ends[lo:hi] * 1.0,
                              1.5, ["a", "b"], "m")
        raised_at += [int(doc["window_end"]) for doc in docs if doc["event"] == "raise"]  # not its updates
        lo = hi
    assert raised_at and d.raises.tolist() == raised_at


def test_latest_window_and_causal_point_scores() -> None:
    assert latest_window(7, 3, 2, 3).tolist() == [-1, -1, 0, 0, 1, 1, 2]
    ps = causal_point_scores(np.array([1.0, 2.0, 3.0]), 5, 3)
    assert np.isnan(ps[:2]).all() and ps[2:].tolist() == [1.0, 2.0, 3.0]


def test_centred_lookahead_rule() -> None:
    # W=3, T=6, windows cover [0-2] [1-3] [2-4] [3-5]; flags F T T F
    got = centred_flags(np.array([0.0, 2.0, 2.0, 0.0]), 1.0, 6, 3)
    assert got.astype(int).tolist() == [0, 1, 1, 1, 1, 0]


def test_scores_that_do_not_match_the_steps_are_refused() -> None:
    with pytest.raises(ValueError, match="window scores"):
        daemon_decisions(np.zeros(5), 1.0, 10, 3)
