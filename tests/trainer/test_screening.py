"""Channel screening: constant and drifting channels out with their reason, weights, high-error notes."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.screening import format_screen, note_high_error, screen_channels, weights


def parts(rng: np.random.Generator, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Train (300, 3) and val (80, 3): noise, a constant channel, a channel whose level moves by ``shift`` std."""
    def block(n: int, level: float) -> np.ndarray:
        return np.stack([rng.normal(size=n), np.full(n, 7.0), rng.normal(level, 1.0, size=n)], axis=1)

    return block(300, 0.0), block(80, shift)


def test_constant_and_drifting_channels_are_screened_out_with_reasons() -> None:
    train, val = parts(np.random.default_rng(0), shift=2.0)
    screen = screen_channels([train], [val], ["noise", "stuck", "temp"], drift_limit=0.6)
    assert [s.kept for s in screen] == [True, False, False]
    assert "constant in training (value 7)" in screen[1].reason
    assert "drifts" in screen[2].reason and screen[2].drift == pytest.approx(2.0, abs=0.3)
    np.testing.assert_allclose(weights(screen), [3.0, 0.0, 0.0])
    text = format_screen(screen)
    assert "+ noise: kept" in text and "- stuck: constant" in text and "- temp: drifts" in text


def test_a_small_level_change_keeps_the_channel() -> None:
    train, val = parts(np.random.default_rng(1), shift=0.0)
    screen = screen_channels([train], [val], ["a", "b", "c"])
    assert [s.kept for s in screen] == [True, False, True]
    np.testing.assert_allclose(weights(screen), [1.5, 0.0, 1.5])


def test_when_every_channel_drifts_all_are_kept_and_say_so() -> None:
    rng = np.random.default_rng(2)
    train, val = rng.normal(size=(300, 2)), rng.normal(3.0, 1.0, size=(80, 2))
    screen = screen_channels([train], [val], ["a", "b"])
    assert all(s.kept for s in screen) and all("every channel drifts" in s.reason for s in screen)


def test_all_constant_has_nothing_to_learn() -> None:
    screen = screen_channels([np.ones((50, 2))], [np.ones((10, 2))], ["a", "b"])
    with pytest.raises(ValueError, match="constant"):
        weights(screen)


def test_high_normal_error_is_noted() -> None:
    rng = np.random.default_rng(3)
    train, val = rng.normal(size=(300, 3)), rng.normal(size=(80, 3))
    screen = screen_channels([train], [val], ["a", "b", "c"])
    note_high_error(screen, np.array([0.1, 0.1, 0.9]))
    assert "9.0x the median" in screen[2].reason and "median" not in screen[0].reason


def test_a_counter_at_a_large_level_is_normalised_by_its_own_spread_and_named_a_counter(caplog) -> None:
    """The trial: an energy counter at 1.5e9 (+1 a row) and an epoch-ms time column were called constant, got std 1,
    and their normalised values (up to +-1500 and +-1.5e6) swamped the autoencoder and switched on the
    cross-channel term. One rule now: a channel that moves more than a millionth of its level is not constant."""
    from trainer.data import fit_normalisation

    rng = np.random.default_rng(0)
    n = 3000
    x = np.stack([rng.normal(size=n), 1.5e9 + np.arange(n, dtype=np.float64), np.full(n, 2.0e9)], axis=1)
    train, val = x[:2400].astype(np.float32), x[2400:].astype(np.float32)
    mean, std = fit_normalisation([train], ["noise", "energy_wh", "fixed"])
    spread = float(train[:, 1].max()) - float(train[:, 1].min())  # its std (693) is under a millionth of its level
    assert std[1] == pytest.approx(spread)  # at least its range, not 1
    assert std[2] == 1.0 and "'fixed'" in caplog.text and "'energy_wh' (varies only 2.43e+03 around 1.5e+09" in caplog.text
    z = (train - mean.astype(np.float32)) / std.astype(np.float32)
    assert np.abs(z[:, 1]).max() < 3  # bounded, where std 1 gave +-1200
    screen = screen_channels([train], [val], ["noise", "energy_wh", "fixed"])
    assert not screen[1].kept and "it only rises: a counter or a time column? --exclude it, or --time-column names it" in screen[1].reason
    assert screen[0].kept and "counter" not in screen[0].reason


def test_a_heating_ramp_is_a_drifting_channel_not_a_counter() -> None:
    """Second read: a temperature rising 20 -> 30 degC (0.1 degC steps) was called a counter or a time column."""
    ramp = np.round(np.linspace(20.0, 30.0, 500), 1)
    x = np.stack([np.random.default_rng(0).normal(size=500), ramp], axis=1)
    screen = screen_channels([x[:400]], [x[400:]], ["noise", "temp"])
    assert not screen[1].kept and "drifts" in screen[1].reason and "counter" not in screen[1].reason


def test_a_blip_on_a_flat_level_keeps_std_1() -> None:
    """Second read: a pressure at 1013.2 with one row at 1013.3 in 200k would have got std 2e-4 (|z| 447)."""
    from trainer.data import fit_normalisation

    x = np.full((200_000, 1), 1013.2)
    x[5] = 1013.3
    assert fit_normalisation([x], ["p"])[1][0] == 1.0


def test_a_near_constant_channel_at_a_large_level_stays_within_one_after_normalisation(caplog) -> None:
    from trainer.data import fit_normalisation

    x = np.full((500, 1), 1.0e12) + (np.arange(500) % 2)[:, None] * 5e5  # moves 5e5: under 1e-6 of its level
    _, std = fit_normalisation([x], ["big"])
    assert std[0] == 5e5 and "varies only 5e+05 around" in caplog.text
