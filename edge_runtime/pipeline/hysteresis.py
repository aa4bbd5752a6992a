"""Raise/clear hysteresis over a device's window scores, in time order. Pure.

The one rule the daemon, ``evaluate`` and the benchmarks share: a device that is not raised
raises after ``raise_after`` consecutive windows with ``score > threshold``; a raised device
clears after ``clear_after`` consecutive windows with ``score < clear_ratio * threshold``. Any
window in between resets the run, so one noisy window never pages anyone. A window's decision
is known at its last sample (causal).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RAISE = "raised"
CLEAR = "cleared"


@dataclass
class AlertPolicy:
    """Hysteresis settings: k windows above to raise, m below ``clear_ratio * threshold`` to clear; and what
    an alert says: ``top_channels`` listed, ``critical`` at ``critical_ratio`` x threshold, an update at most
    once per ``update_interval_s`` of window time (0: no updates)."""

    raise_after: int = 1
    clear_after: int = 5
    clear_ratio: float = 0.8
    top_channels: int = 3
    critical_ratio: float = 2.0
    update_interval_s: float = 30.0


@dataclass
class Run:
    """Where one device stands between calls: raised or not, and the current run lengths."""

    raised: bool = False
    above: int = 0
    below: int = 0


def hysteresis(
    scores: np.ndarray, threshold: float | np.ndarray, policy: AlertPolicy, run: Run | None = None,
) -> tuple[np.ndarray, list[tuple[int, str]], Run]:
    """Alarm state after each window and the transitions.

    ``scores``: (N,) in time order; ``threshold``: one, or each window's (N,). Returns ``(raised (N,) bool, [(window index, "raised"|"cleared")],
    the run to pass to the next call)``; ``run`` (not modified) continues an earlier call.
    """
    s = np.asarray(scores, dtype=np.float64)
    n = s.shape[0]
    state = np.zeros(n, dtype=bool)
    if n == 0:
        return state, [], Run() if run is None else Run(run.raised, run.above, run.below)
    raised, events, r = advance((s > threshold).tolist(), (s < policy.clear_ratio * threshold).tolist(), policy, run)
    state[:] = raised
    return state, events, r


def advance(above: Sequence[bool], below: Sequence[bool], policy: AlertPolicy, run: Run | None = None,
            ) -> tuple[list[bool], list[tuple[int, str]], Run]:
    """:func:`hysteresis` on precomputed decisions: ``above[i]`` is ``score > threshold``, ``below[i]``
    ``score < clear_ratio * threshold`` (one comparison for a whole batch of devices, then this per device)."""
    r = Run() if run is None else run
    raised, up, down = r.raised, r.above, r.below
    k, m = policy.raise_after, policy.clear_after
    state: list[bool] = []
    events: list[tuple[int, str]] = []
    for i in range(len(above)):
        if not raised:
            up = up + 1 if above[i] else 0
            if up >= k:
                raised, up, down = True, 0, 0
                events.append((i, RAISE))
        else:
            down = down + 1 if below[i] else 0
            if down >= m:
                raised, up, down = False, 0, 0
                events.append((i, CLEAR))
        state.append(raised)
    return state, events, Run(raised, up, down)
