"""trainer.data reads a CSV's time column in the unit its magnitude says (epoch ms was taken as seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.data import read_csv


@pytest.mark.parametrize(("scale", "fmt"), [(1, "{:.1f}"), (1000, "{:.0f}"), (1_000_000, "{:.0f}"),
                                            (1_000_000_000, "{:.0f}")])
def test_sample_period_from_epoch_column_in_any_unit(tmp_path: Path, scale: int, fmt: str) -> None:
    """A 100 ms recording: sample_period_s is 0.1 whatever unit the epoch column uses."""
    rows = [f"{fmt.format((1_700_000_000 + 0.1 * i) * scale)},{i % 7}" for i in range(40)]
    p = tmp_path / "x.csv"
    p.write_text("timestamp,x\n" + "\n".join(rows) + "\n")
    assert read_csv(p).sample_period_s == pytest.approx(0.1, abs=1e-4)


def test_sample_period_from_iso_column(tmp_path: Path) -> None:
    rows = [f"2024-01-01T00:00:{i:02d}.500,{i}" for i in range(30)]
    p = tmp_path / "x.csv"
    p.write_text("datetime,x\n" + "\n".join(rows) + "\n")
    assert read_csv(p).sample_period_s == pytest.approx(1.0)
