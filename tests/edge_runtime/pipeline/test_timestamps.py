"""edge_runtime.pipeline.timestamps: epoch numbers in s/ms/us/ns by magnitude, ISO 8601, refusals."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from edge_runtime.pipeline.timestamps import TimestampError, column_seconds, epoch_seconds, parse_timestamp

T = 1_700_000_000.123456  # the oracle: one instant, written below in every unit
ISO = datetime.fromtimestamp(1_704_067_200, tz=timezone.utc)  # 2024-01-01T00:00:00Z


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        (1_700_000_000, 1_700_000_000.0),  # s
        (1_700_000_000.5, 1_700_000_000.5),
        (1_700_000_000_123, 1_700_000_000.123),  # ms
        (1_700_000_000_123_456, T),  # us (was read as ms by replay before)
        (1_700_000_000_123_456_000, T),  # ns
        ("1700000000", 1_700_000_000.0),
        ("1700000000123", 1_700_000_000.123),
        ("1700000000123456", T),
        (" 1.7e9 ", 1.7e9),
        (0, 0.0),
        ("2024-01-01T00:00:00", ISO.timestamp()),  # naive is UTC
        ("2024-01-01T00:00:00Z", ISO.timestamp()),
        ("2024-01-01T01:00:00+01:00", ISO.timestamp()),
        ("2024-01-01 00:00:00.250", ISO.timestamp() + 0.25),
    ],
)
def test_parse_timestamp_units_and_iso(raw: object, seconds: float) -> None:
    assert parse_timestamp(raw) == pytest.approx(seconds, abs=1e-6)


@pytest.mark.parametrize(
    "raw", [True, False, "1_7e9", "1_700_000_000", -1, "-5", float("nan"), float("inf"), "inf", "", "yesterday",
            None, [1.0], "9" * 70, 10**400],
)
def test_parse_timestamp_refuses(raw: object) -> None:
    with pytest.raises(TimestampError):
        parse_timestamp(raw)


def test_epoch_seconds_scales_each_value_by_its_magnitude() -> None:
    x = np.array([T, T * 1e3, T * 1e6, T * 1e9])
    np.testing.assert_allclose(epoch_seconds(x), [T] * 4, rtol=1e-15)
    assert epoch_seconds(x).dtype == np.float64


@pytest.mark.parametrize("scale", [1.0, 1e3, 1e6, 1e9])
def test_column_seconds_one_unit_per_column(scale: float) -> None:
    """A 100 ms column in any unit comes back as 100 ms steps in seconds."""
    t = 1_700_000_000 + 0.1 * np.arange(50)
    cells = [repr(float(v * scale)) for v in t]
    got = column_seconds(cells)
    np.testing.assert_allclose(np.diff(got), 0.1, atol=1e-5)
    np.testing.assert_allclose(got[0], t[0], rtol=1e-12)


def test_column_seconds_small_numbers_stay_seconds() -> None:
    np.testing.assert_array_equal(column_seconds(["0", "0.5", "1"]), [0.0, 0.5, 1.0])


def test_column_seconds_mixes_iso_and_names_the_bad_index() -> None:
    got = column_seconds(["2024-01-01T00:00:00Z", "2024-01-01T00:00:01Z"])
    np.testing.assert_array_equal(got, [ISO.timestamp(), ISO.timestamp() + 1])
    with pytest.raises(TimestampError, match="index 2") as err:
        column_seconds(["1", "2", "1_0"])
    assert err.value.index == 2
