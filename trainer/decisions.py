"""Window scores -> point and alert decisions, as the daemon makes them. Pure.

The daemon scores a window every ``hop`` samples once ``W`` have arrived (window ``k`` covers
samples ``k*hop .. k*hop+W-1``; after a time gap or a stop its window restarts, and so does that count:
``restarts``), runs the raise/clear hysteresis of
:mod:`edge_runtime.pipeline.hysteresis` over those scores, and a window's decision is known at its
last sample. So a point ``t`` is flagged while the device is raised after the latest window ending
at or before ``t`` (causal); points before the first window ends are never flagged.

``centred_flags`` is the look-ahead rule kept for comparison only (a point is flagged when at least
half of the hop-1 windows covering it are above the threshold: it needs ``W-1`` future samples).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge_runtime.pipeline.hysteresis import RAISE, AlertPolicy, hysteresis


@dataclass
class Decisions:
    """``flags`` (T,) bool: raised at each point; ``raises`` (K,) sample index of each raise."""

    flags: np.ndarray
    raises: np.ndarray


def latest_window(n_steps: int, window: int, hop: int, n_windows: int) -> np.ndarray:
    """Index (T,) of the latest window ending at or before each point, -1 before the first."""
    t = np.arange(n_steps)
    k = np.minimum((t - (window - 1)) // hop, n_windows - 1)
    return np.where(t >= window - 1, k, -1)


def hop_starts(n_windows: int, hop: int, restarts: Sequence[int] = ()) -> np.ndarray:
    """The first rows (ascending) of the hop-1 windows the daemon scores at ``hop``: every ``hop``-th from row 0,
    and from each row of ``restarts`` on (where its window restarts: a time gap, a machine running again)."""
    bounds = sorted({0, *(int(r) for r in restarts if 0 < r < n_windows)}) + [n_windows]
    if len(bounds) == 2:
        return np.arange(0, n_windows, hop)
    return np.concatenate([np.arange(a, b, hop) for a, b in zip(bounds[:-1], bounds[1:], strict=False)])


def daemon_decisions(
    scores: np.ndarray,
    threshold: float,
    n_steps: int,
    window: int,
    hop: int = 1,
    policy: AlertPolicy | None = None,
    scored: np.ndarray | None = None,
    restarts: Sequence[int] = (),
) -> Decisions:
    """The daemon's decisions from hop-1 window ``scores`` (T-W+1,), scored every ``hop`` samples.

    ``policy`` None: the daemon's defaults (:class:`AlertPolicy`). ``scored`` (T-W+1,) bool: the windows the
    daemon scores at all (a stopped or settling machine's are not: the state carries over them); None: all.
    ``restarts``: rows where the daemon's window restarts (:func:`hop_starts`; the windows across one are not
    scored: leave them out of ``scored``).
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.shape[0] != max(0, n_steps - window + 1):
        raise ValueError(f"{s.shape[0]} window scores do not match {n_steps} steps with window {window} (hop 1)")
    if hop < 1:
        raise ValueError(f"hop must be >= 1, got {hop}")
    starts = hop_starts(s.shape[0], hop, restarts) if len(restarts) and hop > 1 else None
    sub = s[::hop] if starts is None else s[starts]  # the windows the daemon scores
    if scored is not None:
        m = np.asarray(scored, dtype=bool)[::hop] if starts is None else np.asarray(scored, dtype=bool)[starts]
        at = np.flatnonzero(m)
        r_sub, ev_sub, _ = hysteresis(sub[m], threshold, policy or AlertPolicy())
        pos = np.cumsum(m) - 1  # the last scored window at or before each
        raised = np.where(pos >= 0, r_sub[np.maximum(pos, 0)], False) if len(at) else np.zeros(len(sub), bool)
        events = [(int(at[i]), state) for i, state in ev_sub]
    else:
        raised, events, _ = hysteresis(sub, threshold, policy or AlertPolicy())
    if starts is None:
        k = latest_window(n_steps, window, hop, sub.shape[0])
        starts = np.arange(sub.shape[0]) * hop
    else:  # the latest scored window ending at or before each point
        k = np.searchsorted(starts + window - 1, np.arange(n_steps), side="right") - 1
    flags = np.zeros(n_steps, dtype=bool)
    ok = k >= 0
    flags[ok] = raised[k[ok]]
    raises = np.array([int(starts[i]) + window - 1 for i, state in events if state == RAISE], dtype=np.int64)
    return Decisions(flags, raises)


def causal_point_scores(scores: np.ndarray, n_steps: int, window: int) -> np.ndarray:
    """Point scores (T,): the hop-1 window ending at the point; NaN for the first ``W-1`` points."""
    s = np.asarray(scores, dtype=np.float64)
    out = np.full(n_steps, np.nan)
    out[window - 1 : window - 1 + s.shape[0]] = s
    return out


def centred_flags(scores: np.ndarray, threshold: float, n_steps: int, window: int) -> np.ndarray:
    """Look-ahead rule (T,): at least half of the hop-1 windows covering a point are above ``threshold``."""
    f = np.asarray(scores) > threshold
    n = f.shape[0]
    out = np.zeros(n_steps, dtype=bool)
    if n == 0:
        return out
    t = np.arange(n_steps)
    lo = np.maximum(0, t - window + 1)
    hi = np.minimum(n - 1, t)
    csum = np.r_[0, np.cumsum(f)]
    return (csum[hi + 1] - csum[lo]) * 2 >= hi - lo + 1
