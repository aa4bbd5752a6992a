"""trainer/time_order.py: a timestamp column that goes backwards is refused, repeats are counted, in chunks."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from trainer import time_order
from trainer.time_order import BadTimestampError, TimeOrder, TimeOrderError


def feed(cells: list[str], tz=None) -> TimeOrder:
    order = TimeOrder(tz)
    for i, c in enumerate(cells):
        order.add(c, i + 2)  # line 1 is the header
    order.finish()
    return order


def test_in_order_passes_and_repeats_are_counted_with_the_first_line() -> None:
    order = feed(["1", "2", "2", "3", "4", "4", "5"])
    assert (order.duplicates, order.first_duplicate) == (2, 4)
    assert feed(["1", "2", "3"]).duplicates == 0


def test_a_step_backwards_names_its_line_and_both_cells() -> None:
    with pytest.raises(TimeOrderError) as exc:
        feed(["10", "11", "12", "9", "13"])
    assert (exc.value.line, exc.value.cell, exc.value.before) == (5, "9", "12")


@pytest.mark.parametrize("at", [0, 1, 2, 3])
def test_chunk_boundaries_neither_hide_nor_invent_a_step(monkeypatch: pytest.MonkeyPatch, at: int) -> None:
    monkeypatch.setattr(time_order, "CHUNK", 4)
    cells = [str(i) for i in range(20)]
    assert feed(cells).duplicates == 0
    back = cells.copy()
    back[8 + at] = "0"
    with pytest.raises(TimeOrderError) as exc:
        feed(back)
    assert exc.value.line == 8 + at + 2
    rep = cells.copy()
    rep[8 + at] = rep[7 + at]
    assert feed(rep).duplicates == 1


def test_a_dst_fall_back_across_a_chunk_boundary_reads_as_in_one_piece(monkeypatch: pytest.MonkeyPatch) -> None:
    # Berlin, 2026-10-25: 02:00..02:59 happen twice; naive wall-clock times every 20 minutes
    hours = ["01:00", "01:20", "01:40", "02:00", "02:20", "02:40", "02:00", "02:20", "02:40", "03:00", "03:20"]
    cells = [f"2026-10-25 {h}:00" for h in hours]
    berlin = ZoneInfo("Europe/Berlin")
    for chunk in range(2, 12):
        monkeypatch.setattr(time_order, "CHUNK", chunk)
        assert feed(cells, berlin).duplicates == 0
    with pytest.raises(TimeOrderError):  # read as UTC, the repeated hour goes backwards
        feed(cells)


@pytest.mark.parametrize("bad", ["not a time", "", "nan", "-5"])
def test_a_cell_that_is_no_timestamp_is_refused_naming_its_line(bad: str) -> None:
    with pytest.raises(BadTimestampError) as info:  # as replay refuses it; it was skipped silently before
        feed(["3", "4", bad, "5"])
    assert info.value.line == 4 and info.value.cell == bad and info.value.reason
