"""edge_runtime.pipeline.timestamps: epoch numbers in s/ms/us/ns by magnitude, ISO 8601, --time-format, refusals."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from edge_runtime.pipeline import timestamps
from edge_runtime.pipeline.timestamps import (
    TimestampError,
    check_time_format,
    column_seconds,
    epoch_seconds,
    guess_time_formats,
    in_dst_gap,
    local_column_seconds,
    parse_timestamp,
    time_format_hint,
)

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


# -- time formats (--time-format) --------------------------------------------------------------------------
BERLIN_TZ = "Europe/Berlin"


def test_a_time_format_reads_every_cell_and_names_the_first_that_does_not_match() -> None:
    got = local_column_seconds(["20.10.2024 00:00:00", "20.10.2024 00:00:10"], None, "%d.%m.%Y %H:%M:%S")
    np.testing.assert_array_equal(got, [1729382400.0, 1729382410.0])  # naive: UTC
    # digits only, read as the format says, not as an epoch number
    assert local_column_seconds(["20241020000000"], None, "%Y%m%d%H%M%S")[0] == 1729382400.0
    with pytest.raises(TimestampError) as exc:
        local_column_seconds(["20.10.2024 00:00:00", "2024-10-20 00:00:10"], None, "%d.%m.%Y %H:%M:%S")
    assert exc.value.index == 1 and exc.value.reason == \
        "'2024-10-20 00:00:10' does not match --time-format '%d.%m.%Y %H:%M:%S'"


def test_a_time_format_in_a_time_zone_reads_the_autumn_hour_twice_as_iso_does() -> None:
    tz = ZoneInfo(BERLIN_TZ)
    iso = ["2026-10-25T02:30:00", "2026-10-25T02:00:00", "2026-10-25T02:30:00", "2026-10-25T03:00:00"]
    fmt = ["25.10.2026 02:30", "25.10.2026 02:00", "25.10.2026 02:30", "25.10.2026 03:00"]
    np.testing.assert_array_equal(local_column_seconds(fmt, tz, "%d.%m.%Y %H:%M"), local_column_seconds(iso, tz))
    assert np.all(np.diff(local_column_seconds(fmt, tz, "%d.%m.%Y %H:%M")) > 0)


def test_a_common_format_is_named_and_an_ambiguous_one_is_not_guessed() -> None:
    assert guess_time_formats(["20.10.2024 00:00:00", "20.10.2024 00:00:10"]) == ["%d.%m.%Y %H:%M:%S"]
    assert time_format_hint(["10/20/2024 2:05 PM"]) == " (times? give --time-format '%m/%d/%Y %I:%M %p')"
    both = guess_time_formats(["03/04/2024 10:00"])
    assert "%d/%m/%Y %H:%M" in both and "%m/%d/%Y %H:%M" in both
    assert "more than one" in time_format_hint(["03/04/2024 10:00"])
    assert guess_time_formats(["1700000000", "12.5"]) == [] and time_format_hint(["RUN", "STOP"]) == ""


@pytest.mark.parametrize(("fmt", "why"), [("dd.mm.yyyy", "no % directive"), ("%Q", "bad directive")])
def test_a_bad_time_format_is_refused_saying_why(fmt: str, why: str) -> None:
    assert check_time_format("%d.%m.%Y %H:%M") == "%d.%m.%Y %H:%M"
    with pytest.raises(TimestampError, match=why):
        check_time_format(fmt)


def test_a_wall_clock_time_inside_the_spring_gap_is_told() -> None:
    tz = ZoneInfo(BERLIN_TZ)
    assert in_dst_gap("2024-03-31T02:30:00", tz) and in_dst_gap("31.03.2024 02:30", tz, "%d.%m.%Y %H:%M")
    assert not in_dst_gap("2024-03-31T03:30:00", tz) and not in_dst_gap("2024-03-31T02:30:00", None)
    assert not in_dst_gap("2024-03-31T02:30:00+00:00", tz) and not in_dst_gap("garbage", tz)


@pytest.mark.parametrize("shape", ["T", " ", "T.1", " .123", "T.123456"])
def test_a_column_of_naive_iso_times_read_at_once_equals_the_cell_by_cell_reading(shape: str) -> None:
    """numpy parses a file's time column in one call (~10x); the values are those of datetime.fromisoformat."""
    rng = np.random.default_rng(0)
    t = np.datetime64("1970-01-01T00:00:00") + rng.integers(0, 2 * 10**15, 500).astype("timedelta64[us]")
    frac = len(shape) - 2 if "." in shape else -1  # digits of fraction, or none (and no point)
    cells = [str(v).replace("T", shape[0])[: 20 + frac] for v in t]
    one_by_one = np.array([parse_timestamp(c) for c in cells])
    np.testing.assert_array_equal(column_seconds(cells), one_by_one)
    assert timestamps._naive_iso_at_once(cells) is not None  # the one-call path, not the fallback


@pytest.mark.parametrize(("bad", "why"), [("2024-02-30T00:00:00", "not a number or ISO 8601 time"),
                                          ("1969-12-31T23:59:59", "not a finite epoch >= 0"),
                                          ("2024-01-01T00:00:0x", "not a number or ISO 8601 time")])
def test_a_long_column_with_one_bad_cell_is_refused_naming_it_as_before(bad: str, why: str) -> None:
    cells = [f"2024-01-01T00:00:{i % 60:02d}" for i in range(200)]
    cells[150] = bad
    with pytest.raises(TimestampError, match=why) as exc:
        column_seconds(cells)
    assert exc.value.index == 150
    # offsets and Z keep their per-cell meaning
    np.testing.assert_array_equal(column_seconds([c + "+01:00" for c in cells[:100]]),
                                  [parse_timestamp(c + "+01:00") for c in cells[:100]])


def test_a_very_long_cell_goes_the_per_cell_way_and_is_refused_as_before() -> None:
    cells = [f"2024-01-01T00:00:{i % 60:02d}" for i in range(100)]
    cells[50] = "x" * 2000  # numpy's fixed-width array would be 2000 wide for every row
    assert timestamps._naive_iso_at_once(cells) is None
    with pytest.raises(TimestampError, match="too long") as exc:
        column_seconds(cells)
    assert exc.value.index == 50
