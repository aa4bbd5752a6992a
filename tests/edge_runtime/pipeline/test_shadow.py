"""The shadow comparison (pure): the same raise/clear rule per device as the daemon, on both models' scores."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.pipeline.hysteresis import RAISE, AlertPolicy, hysteresis
from edge_runtime.pipeline.shadow import ShadowComparison


def test_batches_split_across_devices_count_like_whole_series() -> None:
    rng = np.random.default_rng(0)
    policy = AlertPolicy(3, 5, 0.8)
    series = {d: (rng.random(300) * 2.0, rng.random(300) * 1.6) for d in ("a", "b", "c")}
    comp = ShadowComparison(policy, 1.0, 0.9, keep=500)
    pos = dict.fromkeys(series, 0)
    arrived: list[np.ndarray] = []
    while any(p < 300 for p in pos.values()):  # uneven batches interleaving the devices
        devs, counts, live, cand = [], [], [], []
        for d in series:
            k = min(int(rng.integers(1, 9)), 300 - pos[d])
            if k:
                devs.append(d)
                counts.append(k)
                live.append(series[d][0][pos[d]: pos[d] + k])
                cand.append(series[d][1][pos[d]: pos[d] + k])
                pos[d] += k
        comp.update(devs, counts, np.concatenate(live), np.concatenate(cand))
        arrived.append(np.concatenate(live))
    s = comp.summary()
    for m, (name, thr) in enumerate((("live", 1.0), ("candidate", 0.9))):
        want = sum(sum(e == RAISE for _, e in hysteresis(v[m], thr, policy)[1]) for v in series.values())
        assert s[name]["alerts"] == want
        assert s[name]["windows_above"] == sum(int((v[m] > thr).sum()) for v in series.values())
    assert s["windows_compared"] == 900
    agree = sum(int(((v[0] > 1.0) == (v[1] > 0.9)).sum()) for v in series.values())
    assert s["agreement"] == pytest.approx(agree / 900)
    # quantiles over the first 500 windows kept (a bounded memory), in arrival order
    first = np.concatenate(arrived)[:500]
    for q in (50, 90, 99):
        assert s["live"]["score_quantiles"][f"p{q}"] == pytest.approx(float(np.quantile(first, q / 100)))


def test_empty_comparison() -> None:
    s = ShadowComparison(AlertPolicy(), 1.0, 1.0).summary()
    assert s["windows_compared"] == 0 and s["agreement"] is None and s["live"]["score_quantiles"] is None
