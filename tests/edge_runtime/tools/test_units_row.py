"""A units row under a CSV header told apart from data and from a messy row (edge_runtime/tools/units_row.py)."""

from __future__ import annotations

import pytest

from edge_runtime.tools.units_row import UnitsRowError, unit_of, units_row


@pytest.mark.parametrize(("cell", "unit"), [
    ("bar", "bar"), (" degC ", "degC"), ("[bar]", "bar"), ("(mm/s)", "mm/s"), ("°C", "°C"), ("m³/h", "m³/h"),
    ("1/min", "1/min"), ("%", "%"), ("kW h", "kW h"), ("m/s^2", "m/s^2"), ("", ""), ("-", ""), ("[]", ""),
    ("NaN", ""), ("3.1", None), ("2026-01-01 00:00:00", None), ("3,1", None),
    ("discharge pressure at the pump outlet", None), ("x" * 30, None),
])
def test_what_a_unit_looks_like(cell: str, unit: str | None) -> None:
    assert unit_of(cell) == unit


def test_a_units_row_gives_each_columns_unit() -> None:
    assert units_row({"p": "[bar]", "t": "degC", "id": ""}) == {"p": "bar", "t": "degC"}


@pytest.mark.parametrize("cells", [{"p": "3.1", "t": "62.5"}, {"p": "nan", "t": "1.0"}, {"p": "", "t": ""},
                                   {"p": "inf", "t": "2"}, {"p": "3,1", "t": "4,2"},
                                   {"p": "bar", "t": "62.5"}])  # a number in it: data (the reader's error)
def test_data_is_no_units_row(cells: dict[str, str]) -> None:
    assert units_row(cells) is None


def test_decimal_comma_numbers_are_data() -> None:
    assert units_row({"p": "3,1", "t": "4,2"}, decimal=",") is None
    assert units_row({"p": "5,129", "status": "RUN"}) is None  # a number with the other mark: data, not units
    assert units_row({"p": "5.129", "status": "RUN"}, decimal=",") is None


@pytest.mark.parametrize(("cells", "why"), [
    ({"p": "bar", "t": "temperature of the bearing housing"}, "column 't' holds 'temperature of the bearing"),
    ({"p": "[bar]", "t": "degC", "f": "2026-01-01T00:00:00"}, "a units row ('p': 'bar'), but column 'f'"),
])
def test_a_messy_row_is_a_clear_error(cells: dict[str, str], why: str) -> None:
    with pytest.raises(UnitsRowError, match=why.replace("(", r"\(").replace(")", r"\)")):
        units_row(cells)
