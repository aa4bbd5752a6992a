"""Shadow comparison: a candidate model scored beside the live one on the same windows, and the rules that
promote it or roll it back. Pure.

Both models' scores go through the alert hysteresis (:func:`edge_runtime.pipeline.hysteresis.hysteresis`,
the daemon's own rule) per device from the start of the comparison, so ``alerts`` is what each model would
have raised on exactly these windows; nothing here publishes an alert.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_runtime.pipeline.hysteresis import RAISE, AlertPolicy, Run, advance

QUANTILES = (0.5, 0.9, 0.99)
MAX_KEPT = 1_000_000  # scores kept per model for the quantiles (8 MB each); later windows are counted only


class ShadowComparison:
    """Accumulates a live and a candidate model's decisions on the same windows."""

    def __init__(self, policy: AlertPolicy, live_threshold: float, candidate_threshold: float,
                 keep: int = MAX_KEPT) -> None:
        self.policy = policy
        self.thresholds = (live_threshold, candidate_threshold)
        self.windows = 0
        self.above = [0, 0]
        self.alerts = [0, 0]
        self.agree = 0
        self._runs: tuple[dict[str, Run], dict[str, Run]] = ({}, {})
        self._kept = [np.zeros(min(keep, 4096)), np.zeros(min(keep, 4096))]
        self._n_kept = 0
        self._keep = keep

    def update(self, devices: Sequence[str], counts: Sequence[int], live: npt.NDArray[np.floating[Any]],
               candidate: npt.NDArray[np.floating[Any]]) -> None:
        """One batch: ``devices[i]`` has ``counts[i]`` consecutive windows; ``live`` / ``candidate`` (B,) scores."""
        scores = (np.asarray(live, np.float64), np.asarray(candidate, np.float64))
        decided = [scores[m] > self.thresholds[m] for m in (0, 1)]
        for m in (0, 1):  # one comparison for the batch, then the raise/clear rule per device
            self.above[m] += int(np.count_nonzero(decided[m]))
            above = decided[m].tolist()
            below = (scores[m] < self.policy.clear_ratio * self.thresholds[m]).tolist()
            runs = self._runs[m]
            off = 0
            for dev, n in zip(devices, counts, strict=True):
                _, events, runs[dev] = advance(above[off: off + n], below[off: off + n], self.policy, runs.get(dev))
                self.alerts[m] += sum(1 for _, e in events if e == RAISE)
                off += n
        self.agree += int(np.count_nonzero(decided[0] == decided[1]))
        b = scores[0].shape[0]
        self.windows += b
        take = min(b, self._keep - self._n_kept)
        if take > 0:
            need = self._n_kept + take
            if need > self._kept[0].shape[0]:
                size = min(self._keep, max(need, 2 * self._kept[0].shape[0]))
                self._kept = [np.resize(k, size) for k in self._kept]
            for m in (0, 1):
                self._kept[m][self._n_kept: need] = scores[m][:take]
            self._n_kept = need

    def summary(self) -> dict[str, Any]:
        """The comparison numbers: windows compared, per model alerts / windows above / quantiles, agreement."""
        n = self.windows
        out: dict[str, Any] = {"windows_compared": n,
                               "agreement": round(self.agree / n, 6) if n else None}
        for m, name in enumerate(("live", "candidate")):
            kept = self._kept[m][: self._n_kept]
            out[name] = {
                "threshold": self.thresholds[m],
                "alerts": self.alerts[m],
                "alerts_per_1k_windows": round(1000.0 * self.alerts[m] / n, 6) if n else None,
                "windows_above": self.above[m],
                "above_rate": round(self.above[m] / n, 6) if n else None,
                "score_quantiles": ({f"p{round(q * 100):d}": float(np.quantile(kept, q)) for q in QUANTILES}
                                    if kept.size else None),
            }
        return out


def within_bound(alerts: float, baseline: float, max_ratio: float, max_extra: float) -> bool:
    """Is ``alerts`` acceptable next to ``baseline`` (the same windows or the same number of them)? Not when it
    is both more than ``max_extra`` more and more than ``max_ratio`` x ``baseline``: on small counts the extra
    alerts decide (one real fault, 1 alert where 0.5 were expected, is no reason to refuse or roll back a
    model), on large ones the ratio (a zero baseline: the extra alerts alone)."""
    return not (alerts - baseline > max_extra and alerts > max_ratio * baseline)
