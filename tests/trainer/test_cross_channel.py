"""The cross-channel residual term (trainer/cross_channel.py): learned gate, projection, graph twin, fit."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_runtime.pipeline.windowing_offline import sliding_windows
from edge_runtime.tools.synthetic import channel_names, normal_series
from trainer import export as ex
from trainer.api import score_windows, train_and_export
from trainer.cross_channel import (
    MANY_CHANNELS,
    UNEXPLAINED_LIMIT,
    fit_cross_channel,
    normal_covariance,
    residual_terms,
)
from trainer.model import AEConfig, ConvAutoencoder

from .test_export import _raw_terms, make_meta


def low_rank(n: int, c: int, factors: int = 3, noise: float = 0.05, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(x (n, c), loadings (c, factors))``: ``c`` channels driven by a few slow common factors plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    src = np.sin(2 * np.pi * t / rng.uniform(40, 200, factors) + rng.uniform(0, 6, factors))
    load = rng.normal(0, 1, (c, factors))
    return src @ load.T + noise * rng.standard_normal((n, c)) + rng.uniform(-5, 5, c), load


def _z_cov(x: np.ndarray) -> np.ndarray:
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    return np.cov(z, rowvar=False)


def test_channels_driven_by_a_few_factors_turn_the_term_on_and_the_projection_removes_the_factors() -> None:
    x, load = low_rank(600, 20)
    kept = np.ones(20, dtype=bool)
    kept[[4, 11]] = False  # screened out: no row or column in the projection
    cc = fit_cross_channel(_z_cov(x), kept)
    assert cc.on and cc.components == 3 and cc.channels == 18
    assert cc.unexplained < 0.02
    assert cc.projection is not None
    np.testing.assert_allclose(cc.projection[[4, 11]], 0.0)
    np.testing.assert_allclose(cc.projection[:, [4, 11]], 0.0)
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    resid = z @ cc.projection
    assert np.mean(resid[:, kept] ** 2) < 0.02  # normal rows: little left once the factors are removed
    z_bad = z.copy()
    z_bad[:, 7] += 2.0  # one channel departs from the others by 2 std: most of it is left in the residual
    assert np.mean((z_bad @ cc.projection)[:, 7] ** 2) > 50 * np.mean(resid[:, 7] ** 2)
    assert "on (3 common factor(s) leave" in cc.describe()


def test_independent_channels_or_too_few_of_them_keep_the_term_off() -> None:
    rng = np.random.default_rng(1)
    off = fit_cross_channel(np.cov(rng.standard_normal((500, 8)), rowvar=False), np.ones(8, dtype=bool))
    assert not off.on and off.projection is None and off.unexplained > UNEXPLAINED_LIMIT
    assert "do not move together" in off.describe()
    x, _ = low_rank(500, 6)
    two = fit_cross_channel(_z_cov(x), np.array([1, 1, 0, 0, 0, 0], dtype=bool))
    assert not two.on and "only 2 channels" in two.describe()


def test_many_channels_with_common_causes_and_measurement_noise_turn_the_term_on_a_few_do_not() -> None:
    """A process plant (52 channels, 6 causes, measurement noise: about 30 % of the variance left to the residual)
    had the term off, and its autoencoder score missed most single-channel faults (15 of 108 events in the
    synthetic suite's process plant, 45 with the term). From MANY_CHANNELS members on it is on whatever the share;
    the same noise on fewer channels keeps it off as before (SKAB's 8)."""
    from trainer.benchmark_synthetic import process_plant

    x = process_plant(500, 52, 6, seed=3)
    members = np.ptp(x, axis=0) > 0  # the three constant set points are no members
    many = fit_cross_channel(_z_cov(x[:, members]), np.ones(int(members.sum()), dtype=bool))
    assert many.channels == 49 >= MANY_CHANNELS and many.unexplained > UNEXPLAINED_LIMIT
    assert many.on and 6 <= many.components <= 8 and many.projection is not None  # the 6 causes (the held analysers add one)
    assert f"on at {MANY_CHANNELS} or more channels whatever the share" in many.describe()
    few = x[:, : MANY_CHANNELS - 1]
    off = fit_cross_channel(_z_cov(few), np.ones(few.shape[1], dtype=bool))
    assert not off.on and off.unexplained > UNEXPLAINED_LIMIT
    assert f"above the 10 % limit for fewer than {MANY_CHANNELS} channels" in off.describe()
    # the model records the rule, and inspect says of an older model with many channels that a refit turns it on
    assert many.to_dict()["many_channels"] == MANY_CHANNELS


def test_the_covariance_is_streamed_in_chunks_and_equals_the_whole() -> None:
    x, _ = low_rank(1000, 5)
    mean, std = x.mean(axis=0), x.std(axis=0)
    cov, n = normal_covariance([x[:370], x[370:]], mean, std, chunk=64)
    assert n == 1000
    np.testing.assert_allclose(cov, np.cov((x - mean) / std, rowvar=False), rtol=1e-9, atol=1e-12)


def test_the_graph_adds_each_channels_residual_relative_to_its_reference_like_its_numpy_twin(tmp_path: Path) -> None:
    torch.manual_seed(0)
    w, c = 16, 4
    ae = ConvAutoencoder(AEConfig(n_channels=c, window=w, width=4, latent=4)).eval()
    x = normal_series(300, c, seed=3)
    windows = sliding_windows(x, w, 3)
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(c, c)))
    m = np.eye(c) - np.outer(q[:, 0], q[:, 0])  # one factor removed
    coef = [2.0, 0.5, 1.0, 3.0]
    # channel 3 is scored by the term alone (screened out of the others for drifting): no reconstruction or level
    scoring = {"weight": [1.0, 1.0, 1.0, 1.0], "ae_ref": [0.5, 0.25, 1.0, 1.0],
               "level_precision": np.diag([1.0, 2.0, 1.0, 0.0]).tolist(), "level_t2_ref": 2.0, "power": 3.0,
               "residual_projection": m.tolist(), "residual_coef": coef, "cross_only": [0.0, 0.0, 0.0, 1.0]}
    meta = replace(make_meta(c, w, x.mean(axis=0), x.std(axis=0)), architecture=ae.cfg.to_dict(), scoring=scoring,
                   format_version=5)
    rep = ex.export_model(ae, meta, tmp_path / "cc.onnx", windows)
    got = ex.run_onnx(rep.path, windows)
    mse, level = _raw_terms(ae, windows, x)
    resid = residual_terms((windows - x.mean(axis=0)) / x.std(axis=0), m)
    e = 0.5 * mse / [0.5, 0.25, 1.0, 1.0] + 0.5 * level**2 * [1.0, 2.0, 1.0, 0.0] / 2.0 + resid * coef
    e[:, 3] = resid[:, 3] * coef[3]  # the cross-only channel: its residual alone
    np.testing.assert_allclose(got["channel_error"], e**3, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["score"], np.mean(e**3, axis=1) ** (1 / 3), rtol=1e-4, atol=1e-6)
    stats = ex.stats_from_metadata(rep.meta)
    ce, score = stats.channel_scores(mse, level, resid)
    np.testing.assert_allclose(got["score"], score, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["channel_error"], ce, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="resid"):
        stats.channel_scores(mse, level)
    broken = replace(rep.meta, scoring={k: v for k, v in scoring.items() if k != "cross_only"})
    with pytest.raises(ex.ExportError, match="cross_only"):
        ex.stats_from_metadata(broken)


def test_fit_turns_the_term_on_for_correlated_channels_and_names_the_channel_that_breaks_away(tmp_path: Path) -> None:
    x, _ = low_rank(2600, 12, noise=0.1, seed=4)
    names = channel_names(12)
    meta = train_and_export(x[:600], names, tmp_path / "m.onnx", seed=0, epochs=40)
    cc = meta.scoring["cross_channel"]
    assert cc["on"] and cc["components"] >= 2
    w = meta.window
    test = x[1000:1400].copy()
    sd = x[:600].std(axis=0)
    test[200:, 5] += 3.0 * sd[5]  # against the pattern of the others (their factors say where it should be)
    score, ce = score_windows(tmp_path / "m.onnx", sliding_windows(test, w, 1))
    normal, after = score[: 200 - w], score[200:]
    assert normal.max() < meta.threshold.value
    assert np.median(after) > meta.threshold.value
    ref = np.asarray(meta.scoring["channel_error_ref"])
    assert np.all(np.argmax(ce[200:] - ref, axis=1) == 5)


def test_fit_keeps_the_term_off_for_channels_that_do_not_move_together(tmp_path: Path) -> None:
    x = normal_series(800, 4, seed=2)
    meta = train_and_export(x, channel_names(4), tmp_path / "m.onnx", seed=0, epochs=5)
    assert not meta.scoring["cross_channel"]["on"]
    assert "residual_projection" not in meta.scoring


def test_a_masked_channel_is_filled_with_what_the_factors_expect_so_healthy_ones_raise_nothing(tmp_path: Path) -> None:
    from edge_runtime.pipeline.factor_fill import factor_fill, residual_projection
    from edge_runtime.pipeline.health import renormalised_score

    x, _ = low_rank(2600, 12, noise=0.1, seed=4)
    meta = train_and_export(x[:600], channel_names(12), tmp_path / "m.onnx", seed=0, epochs=40)
    proj = residual_projection(meta.scoring, 12)
    assert proj is not None
    mean = np.asarray(meta.normalisation.mean, np.float32)
    std = np.asarray(meta.normalisation.std, np.float32)
    windows = sliding_windows(x[1000:1400], meta.window, 1)
    excluded = np.zeros(12, dtype=bool)
    excluded[5] = True  # channel 5's sensor is faulty: the edge excludes it and fills its samples
    weight = np.asarray(meta.scoring["weight"])

    def masked_score(w: np.ndarray) -> np.ndarray:
        _, ce = score_windows(tmp_path / "m.onnx", w)
        ce = ce.astype(np.float64)
        ce[:, excluded] = 0.0
        return renormalised_score(ce, excluded, weight, meta.scoring["power"])

    at_mean = windows.copy()
    at_mean[..., excluded] = mean[excluded]
    by_factors = windows.copy()
    by_factors[..., excluded] = 1e3  # the faulty values, overwritten
    factor_fill(by_factors, excluded, mean, std, proj)
    got, held_at_mean = masked_score(by_factors), masked_score(at_mean)
    assert got.max() < meta.threshold.value
    # the mean fill breaks the factors' pattern: here it scores about twice as high and peaks at the threshold
    assert np.median(held_at_mean) > 1.5 * np.median(got) and held_at_mean.max() > 1.5 * got.max()


def test_a_drifting_channel_that_follows_the_factors_is_scored_by_the_term_and_one_that_wanders_is_not() -> None:
    from trainer.cross_channel import plan_cross_channel

    x, load = low_rank(1000, 10, factors=2, noise=0.1, seed=2)
    train, val = x[:800].copy(), x[800:].copy()
    step = 0.8 * load[:, 0] / np.abs(load[3, 0])  # the first factor moves in validation: channel 3 drifts with it
    val += step * train[:, 3].std()
    val[:, 9] += 3.0 * train[:, 9].std()  # channel 9 wanders off on its own in the validation part
    kept = np.ones(10, dtype=bool)
    kept[[3, 9]] = False  # both screened out for drifting (3: its level follows a slow factor)
    mean, std = train.mean(axis=0), train.std(axis=0)
    plan = plan_cross_channel(kept, np.zeros(10, dtype=bool), [train], [val], mean, std, drift_limit=0.6)
    assert plan.on
    assert plan.cross_only.tolist() == [i == 3 for i in range(10)]
    assert plan.left_out.tolist() == [i == 9 for i in range(10)]
    np.testing.assert_allclose(plan.weight, np.where(np.arange(10) == 9, 0.0, 10 / 9))
    assert "1 drifting channel(s) scored by it alone; 1 left out of it" in plan.describe()


def test_inspect_says_of_an_older_many_channel_model_with_the_term_off_that_a_new_fit_turns_it_on() -> None:
    from trainer.model_file import cross_channel_line

    old = {"on": False, "components": 6, "channels": 49, "unexplained": 0.3, "limit": 0.1}
    assert cross_channel_line(old) == (
        "cross-channel term: off (6 common factor(s) leave 30.0 % of the 49 channels' training variance unexplained, "
        "above the 10 % limit: the channels do not move together; fitted before the term was on at 20 or more "
        "channels: fit again to have it)")
    few = {**old, "channels": 8, "components": 3, "many_channels": MANY_CHANNELS}
    assert cross_channel_line(few).endswith("above the 10 % limit for fewer than 20 channels: the channels do not "
                                            "move together)")
    on = {**old, "on": True, "many_channels": MANY_CHANNELS}
    assert "on at 20 or more channels whatever the share" in cross_channel_line(on)
    power_one = {**old, "note": "a score power of 1 (format 3's plain mean)", "channels": 25}
    assert cross_channel_line(power_one) == "cross-channel term: off (a score power of 1 (format 3's plain mean))"


def test_the_many_channel_rule_counts_the_members_before_a_drifter_is_left_out_and_needs_a_factor() -> None:
    """A second read: with 20 members one channel whose residual drifts was left out, the factors refitted over 19,
    and the rule no longer held: the term went off for the 19 that move together. The count is the first one; and
    with no common factor at all (every component alike) the term stays off."""
    from trainer.benchmark_synthetic import process_plant
    from trainer.cross_channel import plan_cross_channel

    x = process_plant(600, 23, 4, seed=5)[:, :20]  # 20 varying channels, no set point
    x[450:, 3] += 3 * x[:450, 3].std()  # channel 3's level moves in the validation part: its residual drifts
    train, val = [x[:450]], [x[450:]]
    mean, std = x[:450].mean(axis=0), x[:450].std(axis=0)
    plan = plan_cross_channel(np.ones(20, bool), np.zeros(20, bool), train, val, mean, std, 0.6)
    assert plan.left_out[3] and plan.model.channels <= 19
    assert plan.on and plan.model.unexplained > UNEXPLAINED_LIMIT
    assert "counted before those whose residual drifts were left out" in plan.describe()
    flat = fit_cross_channel(np.eye(25), np.ones(25, dtype=bool))
    assert not flat.on and "no common factor" in flat.describe()
