"""Excess shares, channel normals and the summary lines."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.pipeline.explain import (
    channel_normals,
    clear_summary,
    excess,
    fmt_duration,
    raise_summary,
    top_channels,
)


def test_channel_normals_prefer_the_models_reference_then_spread_the_validation_mean_by_weight() -> None:
    assert channel_normals({"channel_error_ref": [0.5, 2.0]}, {"mean": 1.0}, 2).tolist() == [0.5, 2.0]
    # no reference: weight C / n_kept (one channel screened out), validation mean 0.9
    assert channel_normals({"weight": [2.0, 0.0]}, {"mean": 0.9}, 2).tolist() == [1.8, 0.0]
    assert channel_normals({}, {}, 3).tolist() == [1.0, 1.0, 1.0]
    assert channel_normals({"channel_error_ref": [1.0]}, {"mean": float("nan")}, 2).tolist() == [1.0, 1.0]


def test_excess_is_clipped_at_the_normal() -> None:
    assert excess([3.0, 0.5, -1.0], [1.0, 1.0, 1.0]).tolist() == [2.0, 0.0, 0.0]


@pytest.mark.parametrize(("ce", "want"), [([0, 0, 0], [0.0, 0.0]), ([3, 3, 1], [0.5, 0.5])])
def test_top_channels_without_excess_have_zero_excess_share(ce, want) -> None:
    tops = top_channels(np.asarray(ce, np.float32), ["a", "b", "c"], 2, np.ones(3))
    assert [t["excess_share"] for t in tops] == want


def test_summaries() -> None:
    t = {"name": "discharge_p_bar", "direction": "low", "measured": 3.1, "expected": 4.6, "unit": "bar"}
    assert raise_summary([t], "warning") == "discharge_p_bar low: mean 3.1 bar, expected 4.6"
    assert raise_summary([{"name": "x", "share": 0.5, "excess_share": 0.91}], "warning") == "x: 91% of the excess error"
    assert raise_summary([], "critical") == "critical: anomalous"
    assert clear_summary(252, 2.3, 1.0) == "back to normal after 4m 12s (peak 2.3x threshold)"
    assert clear_summary(5, 2.0, 1.0, "expired") == "no longer tracked (expired) after 5s (peak 2x threshold)"
    assert clear_summary(60, 793.7, 7.92) == "back to normal after 1m 00s (peak 100x threshold)"  # was 1e+02x
    assert clear_summary(60, 12.4, 1.0).endswith("(peak 12x threshold)")
    assert [fmt_duration(s) for s in (0, 59.6, 3600 * 2 + 300, 86400 * 3 + 3600 * 4)] == ["0s", "1m 00s", "2h 05m", "3d 4h"]
