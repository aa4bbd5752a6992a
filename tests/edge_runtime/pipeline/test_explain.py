"""Excess shares, channel normals and the summary lines."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.pipeline.explain import (
    channel_normals,
    clear_summary,
    describe_channels,
    excess,
    fmt_duration,
    out_of_range,
    peak_departure,
    raise_summary,
    range_summary,
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


@pytest.mark.parametrize(("ce", "want"), [([0, 0, 0], []), ([3, 3, 1], [0.5, 0.5]), ([1, 0.5, 0], [0.0, 0.0])])
def test_top_channels_without_excess_have_zero_excess_share(ce, want) -> None:
    tops = top_channels(np.asarray(ce, np.float32), ["a", "b", "c"], 2, np.ones(3))
    assert [t["excess_share"] for t in tops] == want


def test_summaries() -> None:
    t = {"name": "discharge_p_bar", "direction": "low", "measured": 3.1, "expected": 4.6, "unit": "bar"}
    assert raise_summary([t], "warning") == "discharge_p_bar low: mean 3.1 bar, expected 4.6"
    # a level shift over the whole window: its peak sample departs less than twice the mean's: the mean is quoted
    level = {**t, "peak_measured": 2.5, "peak_expected": 4.6}
    assert raise_summary([level], "warning") == "discharge_p_bar low: mean 3.1 bar, expected 4.6"
    # a short spike up: the peak, in its own direction, with the window mean beside it
    spike = {**t, "measured": 4.7, "peak_measured": 9.0, "peak_expected": 4.6}
    assert raise_summary([spike], "warning") == "discharge_p_bar high: 9 bar, expected 4.6 (window mean 4.7)"
    assert raise_summary([{**t, "peak_measured": 4.6, "peak_expected": 4.6}], "warning").endswith("mean 3.1 bar, expected 4.6")
    assert raise_summary([{"name": "x", "share": 0.5, "excess_share": 0.91}], "warning") == "x: 91% of the excess error"
    assert raise_summary([], "critical") == "critical: anomalous"
    assert clear_summary(252, 2.3, 1.0) == "back to normal after 4m 12s (peak 2.3x threshold)"
    assert clear_summary(5, 2.0, 1.0, "expired") == "no longer tracked (expired) after 5s (peak 2x threshold)"
    assert clear_summary(60, 793.7, 7.92) == "back to normal after 1m 00s (peak 100x threshold)"  # was 1e+02x
    assert clear_summary(60, 12.4, 1.0).endswith("(peak 12x threshold)")
    assert [fmt_duration(s) for s in (0, 59.6, 3600 * 2 + 300, 86400 * 3 + 3600 * 4)] == ["0s", "1m 00s", "2h 05m", "3d 4h"]


def test_peak_departure_is_each_channels_sample_furthest_from_the_expected_curve() -> None:
    measured = np.array([[1.0, 5.0], [1.0, 5.0], [1.0, 2.0], [4.0, 5.0]])  # a: a step up at the end; b: a dip
    curve = np.array([[1.0, 5.0], [1.1, 5.0], [1.2, 5.0], [1.3, 4.9]])
    pm, pe = peak_departure(measured, curve)
    assert pm.tolist() == [4.0, 2.0] and pe.tolist() == [1.3, 5.0]


def test_describe_channels_adds_the_peaks_only_when_given_and_finite() -> None:
    tops = [{"name": "a", "share": 0.9}, {"name": "b", "share": 0.1}]
    out = describe_channels(tops, ["a", "b"], {}, [1.0, 2.0], [1.5, 2.0], [0.2, float("nan")], [1.4, 2.0])
    assert out[0]["peak_measured"] == 0.2 and out[0]["peak_expected"] == 1.4
    assert "peak_measured" not in out[1] and out[1]["measured"] == 2.0
    assert "peak_measured" not in describe_channels(tops, ["a", "b"], {}, [1.0, 2.0], [1.5, 2.0])[0]


def test_out_of_range_names_each_channel_past_its_limits_furthest_out_first() -> None:
    w = np.array([[0.0, 5.0, 1.0], [1.0, 7.0, -30.0], [0.5, 6.0, 0.0]])  # (W 3, C 3)
    got = out_of_range(w, [-1.0, -1.0, -10.0], [1.0, 2.0, 10.0], ["a", "b", "c"], {"b": "bar"})
    assert got == [  # b is 5 past a range 3 wide, c 20 past one 20 wide: b first
        {"name": "b", "direction": "high", "value": 7.0, "limit": 2.0, "beyond": 5.0, "unit": "bar"},
        {"name": "c", "direction": "low", "value": -30.0, "limit": -10.0, "beyond": 20.0}]
    assert out_of_range(w[:1, :1], [-1.0], [1.0], ["a"], {}) == []  # on the limit is inside
    assert range_summary(got) == "outside the range seen in training: b 7 bar (max 2), c -30 (min -10)"
    assert range_summary(got * 2, most=3).endswith("and 1 more") and range_summary([]) == ""


def test_a_channel_limited_on_one_side_ranks_by_its_distance_over_the_limit_not_in_raw_units() -> None:
    """t (only a max of 1000) is 50 past it, 5 % of the limit; a (-1..1) is 1 past a range 2 wide: a first."""
    w = np.array([[1050.0, 2.0], [990.0, 0.0]])
    inf = float("inf")
    got = out_of_range(w, [-inf, -1.0], [1000.0, 1.0], ["t", "a"], {})
    assert [g["name"] for g in got] == ["a", "t"] and got[1]["beyond"] == 50.0
    assert [g["name"] for g in out_of_range(w, [-inf, -1.0], [0.0, 1.0], ["t", "a"], {})] == ["t", "a"]  # limit 0


def test_a_channel_with_no_part_of_the_error_is_skipped_wherever_it_ranks() -> None:
    """b's excess (1e-6 over a normal of 1e-9) ranks it before c, but both its shares round to 0: it is left out
    and c, with a quarter of the raw error, is still named."""
    tops = top_channels([3, 1e-6, 0.9], ["a", "b", "c"], 3, [1, 1e-9, 1])
    assert [t["name"] for t in tops] == ["a", "c"] and tops[1]["share"] > 0.2


def test_values_of_thousands_are_written_without_an_exponent() -> None:
    """A new user's alert read ``Drehzahl high: 1.74e+03 1/min, expected 1.44e+03``."""
    from edge_runtime.pipeline.explain import fmt_value

    assert [fmt_value(v) for v in (1744.2, 1440.0, 12345.0, 999.4, 3.14159, -2500.0, 4.2e-5, 3.2e9)] == [
        "1740", "1440", "12300", "999", "3.14", "-2500", "4.2e-05", "3.2e+09"]
    tops = [{"name": "Drehzahl", "unit": "1/min", "measured": 1744.2, "expected": 1440.0, "direction": "high"}]
    assert raise_summary(tops, "warning") == "Drehzahl high: mean 1740 1/min, expected 1440"
