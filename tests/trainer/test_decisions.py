"""The daemon's decisions from window scores: causal, hysteresis, the daemon's hop."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.pipeline.alerts import AlertTracker
from edge_runtime.pipeline.hysteresis import AlertPolicy
from trainer.decisions import causal_point_scores, centred_flags, daemon_decisions, hop_starts, latest_window
from trainer.evaluate import window_restarts


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


def test_the_hop_counts_again_from_a_restart_as_the_daemons_window_does() -> None:
    # W=2, hop 2, a restart at row 5 (a time gap): the daemon scores windows 0, 2 (before), then 5, 7 (its window
    # restarted at 5: windows start there, ending at 6 and 8); window 3 and 4 span the gap and are not scored
    assert hop_starts(8, 2, [5]).tolist() == [0, 2, 4, 5, 7]
    scores = np.array([0, 0, 0, 0, 0, 0, 9, 0], dtype=float)  # window 6 (ends at 7) is never seen after the restart
    scored = np.ones(8, dtype=bool)
    scored[[4]] = False  # window 4 (rows 4-5) spans the restart
    pol = AlertPolicy(raise_after=1, clear_after=1, clear_ratio=1.0)
    assert not daemon_decisions(scores, 1.0, 9, 2, 2, pol, scored, restarts=[5]).flags.any()
    assert daemon_decisions(scores, 1.0, 9, 2, 2, pol, scored).raises.tolist() == [7]  # the file's phase saw it
    scores = np.array([0, 0, 0, 0, 0, 9, 0, 0], dtype=float)  # window 5 (rows 5-6): the first after the restart
    d = daemon_decisions(scores, 1.0, 9, 2, 2, pol, scored, restarts=[5])
    assert d.raises.tolist() == [6] and d.flags.astype(int).tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 0]
    same = daemon_decisions(scores, 1.0, 9, 2, 2, pol, scored, restarts=np.array([5]))  # an array as well
    assert same.raises.tolist() == [6]


def test_window_restarts_are_the_gaps_and_each_run_after_a_stop() -> None:
    running = np.array([1, 1, 0, 0, 1, 1, 1, 0, 1], dtype=bool)
    assert window_restarts([6], running) == [4, 6, 8]
    assert window_restarts([3]) == [3]


@pytest.mark.parametrize(("W", "hop"), [(8, 4), (5, 3), (16, 4)])
def test_the_scored_windows_are_those_the_daemons_ring_emits_across_time_gaps(W: int, hop: int) -> None:
    """The benchmark and evaluate decide on the windows the daemon's own ring buffer emits (a real RingWindow)."""
    from edge_runtime.pipeline.windows import RingWindow
    from trainer.data import gap_windows

    n, gaps = 120, [37, 50, 90]
    ts = np.arange(n, dtype=np.float64)
    for g in gaps:
        ts[g:] += 100.0  # a jump of 100 sample periods
    ring = RingWindow(W, hop, 1, gap_s=10.0)
    emitted = np.concatenate([ring.push(ts[i : i + 7], np.zeros((len(ts[i : i + 7]), 1), np.float32)).t_start
                              for i in range(0, n, 7)])
    starts = hop_starts(n - W + 1, hop, window_restarts(gaps))
    kept = starts[~gap_windows(gaps, n, W)[starts]]  # the scored mask leaves out the windows across a gap
    np.testing.assert_array_equal(ts[kept], emitted)
