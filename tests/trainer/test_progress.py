"""Progress lines: rates, sizes, time left for a read and an epoch, the run's range up to the epoch cap."""

from __future__ import annotations

import io

from trainer.progress import ReadProgress, duration, epoch_line, read_line


def test_duration() -> None:
    assert [duration(s) for s in (4.4, 65, 3720)] == ["4 s", "1 min 05 s", "1 h 02 min"]


def test_read_line_has_rate_bytes_and_time_left() -> None:
    line = read_line("a.csv", 1_000_000, 4.0, 100_000_000, 200_000_000, "line")
    assert line == "reading a.csv: 1,000,000 rows, 250,000 rows/s, 100 of 200 MB, 4 s left"
    assert read_line("a.xlsx", 500, 1.0, 500, 2000, "row").endswith("row 500 of 2,000, 3 s left")


def test_epoch_line_gives_the_epoch_and_the_run_range() -> None:
    # half an epoch in 10 s, epochs of 20 s so far, at least 4 more epochs (patience), cap 10
    line = epoch_line(3, 10, 50, 100, 0.1234, 10.0, 20.0, 4)
    assert "epoch   3/10 [##########          ] loss 0.12340, epoch 10 s left" in line
    assert line.endswith("run 1 min 30 s to 2 min 30 s left")


def test_read_progress_ends_with_one_full_line() -> None:
    out = io.StringIO()
    meter = ReadProgress("b.csv", "line", out, every_s=0.0, terminal=True)
    meter.update(10, 50, 100)
    meter.done(20, 90, 100)
    assert out.getvalue().count("\n") == 1 and "reading b.csv: 20 rows" in out.getvalue()
    assert "0.0 of 0.0 MB" in out.getvalue()


def test_counted_passes_chunks_through_and_reports() -> None:
    import numpy as np

    from trainer.progress import counted

    out = io.StringIO()
    chunks = [np.zeros((4, 2)), np.zeros((6, 2))]
    got = list(counted(iter(chunks), 10, "scored", True, out, every_s=0.0, terminal=True))
    assert [len(c) for c in got] == [4, 6]
    assert "\rscored: 10 of 10 windows, 0 s left" in out.getvalue()
    assert out.getvalue().endswith("\rscored: 10 of 10 windows in 0 s   \n")  # padded over the longer line
    quiet = io.StringIO()
    assert len(list(counted(iter(chunks), 10, "scored", False, quiet, every_s=0.0))) == 2 and quiet.getvalue() == ""


def test_a_log_gets_whole_lines_at_most_every_few_seconds() -> None:
    """On a file or a pipe (not a terminal) no carriage returns: one line per update, throttled to LOG_EVERY_S."""
    from trainer.progress import LOG_EVERY_S, LiveLine

    out = io.StringIO()  # not a terminal
    meter = ReadProgress("c.csv", "line", out, every_s=0.0)
    for i in range(50):
        meter.update(i, i, 100)
    meter.done(50, 100, 100)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and len(lines) == 2  # the first update, then the last line
    assert lines[0].startswith("reading c.csv: 0 rows") and lines[1].startswith("reading c.csv: 50 rows")
    line = LiveLine(io.StringIO(), every_s=0.0)
    assert not line.terminal and line.every_s == LOG_EVERY_S
    line.show("a")
    assert not line.due()
    line.last -= LOG_EVERY_S
    assert line.due()


def test_a_shorter_line_on_a_terminal_covers_the_longer_one() -> None:
    from trainer.progress import LiveLine

    out = io.StringIO()
    line = LiveLine(out, every_s=0.0, terminal=True)
    line.show("long text")
    line.show("short")
    line.end()
    assert out.getvalue() == "\rlong text\rshort    \n"
