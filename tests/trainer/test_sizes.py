"""Sizes chosen from the data, and the refusal when there is too little to calibrate honestly."""

from __future__ import annotations

import pytest

from trainer.sizes import (
    MAX_TRAIN_WINDOWS,
    choose_sizes,
    count_windows,
    missing_data,
    more_data_advice,
    rows_needed,
)


@pytest.mark.parametrize(("rows", "window"), [(160, 8), (320, 16), (400, 16), (1000, 32), (8000, 64), (2_000_000, 64)])
def test_window_follows_the_training_rows(rows: int, window: int) -> None:
    s = choose_sizes([rows], [rows // 4], 8)
    assert s.window == window and s.edge_hop == max(1, window // 4)
    assert s.depth == (2 if window >= 16 else 1) and s.latent == min(16, max(4, window * 8 // 16))
    assert any(f"window {window}" in n for n in s.notes)


def test_long_data_gets_a_training_hop_that_bounds_the_windows() -> None:
    s = choose_sizes([1_600_000], [400_000], 12)
    assert s.train_hop > 1 and count_windows([1_600_000], s.window, s.train_hop) <= MAX_TRAIN_WINDOWS


def test_given_sizes_are_kept() -> None:
    s = choose_sizes([320], [80], 52, window=24, hop=3, depth=1, width=8, latent=5)
    assert (s.window, s.train_hop, s.edge_hop, s.depth, s.width, s.latent) == (24, 3, 3, 1, 8, 5)
    assert choose_sizes([320], [80], 52).latent == 16


def test_too_little_data_says_what_is_missing() -> None:
    assert missing_data(305, 65, 16) is None
    msg = missing_data(75, 15, 16)
    assert msg is not None and "75 training windows (need 100)" in msg and "15 hop-1 validation windows" in msg
    n = rows_needed(16, 0.2)  # enough rows: the check passes
    tr, va = n - round(0.2 * n), round(0.2 * n)
    assert missing_data(count_windows([tr], 16), count_windows([va], 16), 16) is None
    assert missing_data(count_windows([tr], 16), count_windows([va - 1], 16), 16) is not None  # one row fewer
    assert f"about {n:,} in one file" in more_data_advice(16, 0.2) and "--force" in more_data_advice(16, 0.2)
    assert "a larger --val-fraction" in more_data_advice(16, 0.2, train_short=False, val_short=True)
    assert "a smaller --val-fraction" in more_data_advice(16, 0.2, train_short=True, val_short=False)
    assert "val-fraction," not in more_data_advice(16, 0.2)  # both short: only more rows help


def test_the_minimum_is_of_windows_at_the_training_hop_and_says_what_was_left_out() -> None:
    msg = missing_data(39, 65, 16, train_hop=8, left_out="after leaving out X")
    assert msg is not None and "39 training windows at training hop 8 (need 100)" in msg
    assert msg.endswith(", after leaving out X") and "validation" not in msg
    n = rows_needed(16, 0.2, train_hop=8)  # rows for 100 windows at hop 8 in the training part
    assert count_windows([n - round(0.2 * n)], 16, 8) >= 100 > count_windows([n - 40 - round(0.2 * n)], 16, 8)
    assert "a --hop under 8" in more_data_advice(16, 0.2, True, False, train_hop=8)
    assert "--hop" not in more_data_advice(16, 0.2, False, True, train_hop=8)  # only the validation part is short
    assert "give more normal rows" in more_data_advice(16, 0.2, normal=True)
    cal = missing_data(305, 65, 16, n_cal=25)
    assert cal is not None and "25 hop-1 windows in the --calibrate recording(s) (need 50 to calibrate" in cal
    assert "for the per-channel references" in (missing_data(305, 10, 16, n_cal=60) or "")


def test_no_val_fraction_advice_when_no_split_can_hold_both_parts() -> None:
    """The trial: 150 rows at W 8 were told 'a larger --val-fraction', then at 0.4 'a smaller' one. 164 rows are
    the least any split needs (107 for 100 training windows, 57 for 50 validation windows)."""
    advice = more_data_advice(8, 0.2, train_short=False, val_short=True, rows=150)
    assert "val-fraction," not in advice and "a larger" not in advice
    assert "150 cannot hold 100 training and 50 validation windows of 8 at any --val-fraction (at least 164" in advice
    assert "a larger --val-fraction" in more_data_advice(8, 0.2, train_short=False, val_short=True, rows=400)
