"""The pure raise/clear rule shared by the daemon, evaluate and the benchmarks."""

import numpy as np
import pytest

from edge_runtime.pipeline.hysteresis import AlertPolicy, Run, hysteresis

P = AlertPolicy(raise_after=3, clear_after=2, clear_ratio=0.5)


@pytest.mark.parametrize(
    ("scores", "state", "events"),
    [
        ([2, 2, 2, 2], [0, 0, 1, 1], [(2, "raised")]),
        ([2, 2, 0, 2, 2, 2], [0, 0, 0, 0, 0, 1], [(5, "raised")]),  # a gap resets the run
        ([2, 2, 2, 0.1, 0.1, 2], [0, 0, 1, 1, 0, 0], [(2, "raised"), (4, "cleared")]),
        ([2, 2, 2, 0.1, 0.7, 0.1], [0, 0, 1, 1, 1, 1], [(2, "raised")]),  # between levels resets the clear run
        ([1.0, 1.0, 1.0], [0, 0, 0], []),  # equal to the threshold is not above it
    ],
)
def test_rule(scores, state, events):
    got, ev, _ = hysteresis(np.array(scores, float), 1.0, P)
    assert got.astype(int).tolist() == state
    assert ev == events


def test_continues_across_calls_like_one_call():
    rng = np.random.default_rng(0)
    s = rng.uniform(0, 2, 500)
    whole, ev_whole, _ = hysteresis(s, 1.0, P)
    run, parts, ev = Run(), [], []
    for chunk in np.array_split(s, 37):
        st, e, run = hysteresis(chunk, 1.0, P, run)
        ev += [(i + sum(len(p) for p in parts), k) for i, k in e]
        parts.append(st)
    assert np.array_equal(np.concatenate(parts), whole)
    assert ev == ev_whole and ev_whole


def test_given_run_is_not_modified():
    run = Run(raised=False, above=2)
    hysteresis(np.array([5.0]), 1.0, P, run)
    assert run == Run(raised=False, above=2)
