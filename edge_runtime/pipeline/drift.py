"""Drift of a device's scores against its calibration: suggests, never learns. Pure.

Per device, the last ``window`` scores are kept; every ``window`` new scores their ``q`` quantile is
compared with the reference ``q`` quantile (the device's warm-up, or the model's validation scores). A
ratio beyond ``ratio`` (or below ``1 / ratio``) in ``sustain`` checks in a row is a drift: one ``drift``
notice (the numbers and a suggestion); one more when it has returned within bounds. Nothing here changes a
threshold, so a slow fault is never learnt as normal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

DRIFT_SCHEMA_VERSION = 1
SUGGESTION = ("recalibrate the device (edgewatch feedback --recalibrate DEVICE) if its operation changed for good; "
              "record its normal data (edgewatch record) and retrain if the model no longer fits; inspect the "
              "machine if neither changed")


@dataclass(frozen=True)
class DriftPolicy:
    window: int = 500
    q: float = 0.9
    ratio: float = 1.5
    sustain: int = 3


@dataclass
class DriftState:
    ring: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    pos: int = 0  # next write index in ring
    filled: int = 0
    n: int = 0  # scores since the last check
    streak: int = 0
    drifting: bool = False
    last_ratio: float = 1.0


def reference_quantile(scores: npt.ArrayLike, q: float) -> float:
    s = np.asarray(scores, dtype=np.float64)
    return float(np.quantile(s, q)) if s.size else 0.0


def observe_scores(st: DriftState, policy: DriftPolicy, scores: npt.NDArray[np.float64], reference: float
                   ) -> tuple[str, float, float] | None:
    """Feed scores (k,); ``("drift" | "returned", rolling quantile, ratio)`` when a notice is due."""
    w = policy.window
    if st.ring.shape[0] != w:
        st.ring, st.pos, st.filled, st.n = np.zeros(w), 0, 0, 0
    out: tuple[str, float, float] | None = None
    s = scores
    start, total = 0, s.shape[0]
    while start < total:  # (a hot path: one call per scored item, usually one window: plain slices, no temporaries)
        take = min(total - start, w - st.n)
        pos = st.pos
        first = min(take, w - pos)
        st.ring[pos:pos + first] = s[start:start + first]
        if first < take:
            st.ring[:take - first] = s[start + first:start + take]
        st.pos, st.n = (pos + take) % w, st.n + take
        if st.filled < w:
            st.filled = min(w, st.filled + take)
        start += take
        if st.n < w:
            continue
        st.n = 0
        rolling = float(np.quantile(st.ring, policy.q))
        ratio = rolling / reference if reference > 0 else math.inf
        st.last_ratio = ratio
        out_of_bounds = not 1.0 / policy.ratio <= ratio <= policy.ratio
        st.streak = st.streak + 1 if out_of_bounds else 0
        if not st.drifting and st.streak >= policy.sustain:
            st.drifting = True
            out = ("drift", rolling, ratio)
        elif st.drifting and not out_of_bounds:
            st.drifting = False
            out = ("returned", rolling, ratio)
    return out


def drift_doc(device: str, kind: str, q: float, rolling: float, reference: float, ratio: float, window: int,
              threshold: float, instance: str, now: float) -> dict[str, Any]:
    """The ``drift`` notice (drift.schema.json)."""
    return {"schema_version": DRIFT_SCHEMA_VERSION, "device": device, "state": kind, "quantile": q,
            "rolling": rolling, "reference": reference, "ratio": round(ratio, 4) if math.isfinite(ratio) else None,
            "window": window, "threshold": threshold, "threshold_changed": False,
            "suggestion": SUGGESTION if kind == "drift" else "", "instance": instance, "time": now}
