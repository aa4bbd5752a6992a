"""The evaluation plot: time on the x axis, the channels that depart most in their own panels, long files
thinned without losing spikes, raises and clears marked; drawn for a 14-channel file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainer.data import Series
from trainer.plots import MAX_CHANNEL_PANELS, draw, envelope, top_channels, track


def test_top_channels_are_those_that_depart_where_it_matters() -> None:
    rng = np.random.default_rng(0)
    z = rng.standard_normal((1000, 14))
    z[600:650, 9] += 8.0  # the anomaly
    z[100:110, 3] += 20.0  # a bigger excursion outside the focus
    focus = np.zeros(1000, dtype=bool)
    focus[590:660] = True
    assert top_channels(z, focus, 3)[0] == 9
    assert top_channels(z, None, 3)[0] == 3  # no focus: the whole file


def test_envelope_keeps_spikes_and_bounds_points() -> None:
    x = np.arange(100_000, dtype=np.float64)
    y = np.zeros(100_000)
    y[54_321] = 7.0
    y[77_777] = -3.0
    ex, ey = envelope(x, y, 2000)
    assert len(ex) <= 2100 and ey.max() == 7.0 and ey.min() == -3.0
    assert np.all(np.diff(ex) >= 0) and 54_321.0 in ex


def test_track_uses_timestamps_and_marks_raises_and_clears(tmp_path: Path) -> None:
    n, c = 600, 14
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, c)).astype(np.float32)
    x[300:340, 11] += 6
    labels = np.zeros(n, dtype=np.int8)
    labels[300:340] = 1
    ts = 1_790_000_000.0 + 10.0 * np.arange(n)
    s = Series("plant.csv", x, [f"ch{i}" for i in range(c)], labels=labels, ts=ts)
    raised = np.zeros(n, dtype=bool)
    raised[310:360] = True
    score = np.r_[np.full(15, np.nan), np.abs(rng.standard_normal(n - 15)) + 1]
    t = track(s, score, np.zeros(c), np.ones(c), 2.0, raised, np.array([310]))
    assert t.timed and t.x[0] == ts[0] and t.x[-1] == ts[-1]
    assert t.channels[0] == "ch11" and len(t.channels) == MAX_CHANNEL_PANELS and t.hidden == c - MAX_CHANNEL_PANELS
    assert t.raises.tolist() == [310] and t.clears.tolist() == [360]
    untimed = track(Series("a.npz", x, s.channels), score, np.zeros(c), np.ones(c), 2.0, raised, np.array([310]))
    assert not untimed.timed and untimed.x[-1] == n - 1
    png = tmp_path / "p.png"
    draw([t, untimed], png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
