"""trainer.data reads a CSV's time column in the unit its magnitude says (epoch ms was taken as seconds)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from trainer.data import load_paths, read_csv


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


def test_irregular_sampling_is_said_once_with_the_period_taken(tmp_path, caplog) -> None:
    rng = np.random.default_rng(0)
    t = np.cumsum(rng.choice([0.8, 1.0, 2.5], size=60))
    f = tmp_path / "irregular.csv"
    f.write_text("timestamp,x\n" + "".join(f"{1.7e9 + v:.3f},{i % 7}\n" for i, v in enumerate(t)))
    with caplog.at_level(logging.WARNING, logger="trainer.data"):
        s = read_csv(f)
    assert s.sample_period_s == 1.0
    assert [r.getMessage() for r in caplog.records if "irregular sampling" in r.getMessage()] and \
        "median 1 s" in caplog.text
    caplog.clear()
    g = tmp_path / "regular.csv"
    jitter = np.cumsum(np.where(np.arange(60) % 9 == 0, 2.0, 1.0))  # 1 s stamps, now and then 2 s (as SKAB's)
    g.write_text("timestamp,x\n" + "".join(f"{1.7e9 + v:.3f},{i % 7}\n" for i, v in enumerate(jitter)))
    with caplog.at_level(logging.WARNING, logger="trainer.data"):
        read_csv(g)
    assert "irregular" not in caplog.text


@pytest.mark.parametrize("stamp", ["epoch", "epoch_ms", "iso"])
def test_a_file_with_a_time_gap_is_read_as_parts_no_window_across_it(tmp_path: Path, stamp: str, caplog) -> None:
    """The trial: a 24 h jump inside one file was windowed across by fit and evaluate (63 windows spanning it),
    where the daemon restarts its window at a gap (input.gap_s: 10 sample periods)."""
    from datetime import datetime, timezone

    t = np.r_[np.arange(300.0), 86_400.0 + np.arange(200.0)] + 1.7e9
    cell = {"epoch": lambda v: f"{v:.0f}", "epoch_ms": lambda v: f"{v * 1000:.0f}",
            "iso": lambda v: datetime.fromtimestamp(v, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")}[stamp]
    body = "".join(f"{cell(v)},{i % 7},{i % 5}\n" for i, v in enumerate(t))
    f = tmp_path / "g.csv"
    f.write_text("timestamp,a,b\n" + body)
    parts = load_paths([f])
    assert [len(p.values) for p in parts] == [300, 200]
    assert parts[1].name.endswith("(part 2 of 2, data rows 300..499)") and parts[0].sample_period_s == 1.0
    np.testing.assert_array_equal(parts[1].values[0], [300 % 7, 300 % 5])
    assert "1 time gap(s) longer than 10 sample periods" in caplog.text and "data row(s) 300" in caplog.text
    # a step of a few periods (a lost sample or two) is no gap: one part
    g = tmp_path / "h.csv"
    g.write_text("timestamp,a,b\n" + "".join(f"{1.7e9 + i + (3 if i > 100 else 0):.0f},{i % 7},{i % 5}\n"
                                             for i in range(300)))
    assert len(load_paths([g])) == 1
