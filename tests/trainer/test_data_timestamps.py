"""trainer.data reads a CSV's time column in the unit its magnitude says (epoch ms was taken as seconds)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from trainer.data import ReadOptions, count_normal_windows, load_paths, normal_windows, read_csv


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
    (s,) = load_paths([f])
    assert s.gaps == [300] and len(s.values) == 500 and s.sample_period_s == 1.0
    assert "1 time gap(s) longer than 10 sample periods" in caplog.text and "at data row(s) 300" in caplog.text
    # no window across it: 300 - 8 + 1 and 200 - 8 + 1 windows of 8, not 500 - 8 + 1
    assert count_normal_windows([s], 8) == (486, 493) and len(normal_windows([s], 8, 1)) == 486
    caplog.clear()
    (t,) = load_paths([f], opts=ReadOptions(rows=(100, None)))  # rows named as the file counts them
    assert t.gaps == [200] and "at data row(s) 300" in caplog.text
    # a step of a few periods (a lost sample or two) is no gap: one part
    g = tmp_path / "h.csv"
    g.write_text("timestamp,a,b\n" + "".join(f"{1.7e9 + i + (3 if i > 100 else 0):.0f},{i % 7},{i % 5}\n"
                                             for i in range(300)))
    assert load_paths([g])[0].gaps == []


def test_a_short_stretch_between_gaps_is_no_reason_to_refuse_the_file(tmp_path: Path) -> None:
    """Second read: cut into parts, SKAB other/13's 4- and 6-row stretches between its gaps made fit and evaluate
    refuse the whole file (fewer than one window). The windows across the gaps are left out instead."""
    from trainer.data import gap_windows

    t = 1.7e9 + np.r_[np.arange(100.0), 150 + np.arange(4.0), 200 + np.arange(100.0)]
    f = tmp_path / "s.csv"
    f.write_text("timestamp,a\n" + "".join(f"{v:.0f},{i % 3}\n" for i, v in enumerate(t)))
    (s,) = load_paths([f])
    assert s.gaps == [100, 104]
    across = gap_windows(s.gaps, len(s.values), 8)
    assert across.sum() == 11 and not across[:93].any() and not across[104:].any()  # starts 93..103


def test_gaps_in_a_second_chunk_are_found_against_the_first_chunks_step(tmp_path: Path) -> None:
    """Second read: candidates were steps above 5x each chunk's own median, so a short last chunk hid its gap."""
    from trainer.time_order import CHUNK

    n = CHUNK + 2
    t = 1.7e9 + np.arange(float(n))
    t[-2:] += 100.0  # the last two rows after a 100 s pause, in a chunk of their own
    f = tmp_path / "c.csv"
    f.write_text("timestamp,a\n" + "".join(f"{v:.0f},{i % 3}\n" for i, v in enumerate(t)))
    assert load_paths([f])[0].gaps == [n - 2]
