"""Per-channel sensor health: fill, learned limits, incremental checks, masked score (pure)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.pipeline.health import (
    MISSING,
    OK,
    OUT_OF_RANGE,
    STUCK,
    ChannelHealth,
    HealthError,
    HealthLimits,
    check_document,
    describe,
    fill_block,
    fill_column,
    frozen_in_training,
    is_stale,
    learn_limits,
    longest_flat,
    renormalised_score,
)

CH = ["a", "b", "c"]


def _normal(n: int = 600, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.column_stack([np.sin(np.arange(n) / 10.0) * 5 + 20, rng.normal(3.0, 0.5, n), rng.normal(0, 1, n)])
    if n > 104:
        x[100:104, 0] = x[99, 0]  # flat for 4 steps in normal running
    return x


def _limits(health: dict | None = None, **kw) -> HealthLimits:
    return HealthLimits.build(learn_limits(_normal(), 10.0, CH) if health is None else health, CH,
                              [20.0, 3.0, 0.0], 10.0, **kw)


@pytest.mark.parametrize(("method", "expected"), [
    ("ffill", [1.0, 1.0, 1.0, 4.0, 4.0]),
    ("zero", [0.0, 1.0, 0.0, 4.0, 0.0]),
    ("interpolate", [1.0, 1.0, 2.5, 4.0, 4.0]),
])
def test_fill_column_methods(method: str, expected: list[float]) -> None:
    assert fill_column(np.array([np.nan, 1.0, np.nan, 4.0, np.nan]), method).tolist() == expected


def test_fill_refuses_an_empty_column_and_names_it() -> None:
    with pytest.raises(ValueError, match="column 1: column has no values"):
        fill_block(np.array([[1.0, np.nan], [2.0, np.nan]]), "ffill")


def test_learn_limits_range_margin_flat_and_stale() -> None:
    x = _normal()
    h = learn_limits(x, 10.0, CH)
    a = h["channels"]["a"]
    assert a["min"] == pytest.approx(x[:, 0].min()) and a["max"] == pytest.approx(x[:, 0].max())
    assert a["margin"] == pytest.approx(1.0 * (a["max"] - a["min"]))
    assert a["longest_flat_samples"] == 4 and a["max_flat_samples"] == 10  # 1.5 x 4 < the minimum 10
    assert h["stale_after_s"] == 100.0 and h["fill"] == {"method": "ffill", "limit_samples": 5}
    check_document(h, CH)


def test_one_long_flat_stretch_in_training_is_warned_of_and_many_short_ones_are_not() -> None:
    """A sensor frozen for 100 samples while training was recorded loosens its stuck limit to 150: said, with
    the fix; a channel flat in many such stretches is not a frozen one."""
    x = _normal(2000)
    x[700:801, 1] = x[700, 1]  # b: frozen for 100 steps
    for k in range(0, 2000, 100):  # c: a valve that rests: flat in 20 stretches of 30, under half the time
        x[k : k + 31, 2] = x[k, 2]
    h = learn_limits(x, 2.0, CH)
    b, c = h["channels"]["b"], h["channels"]["c"]
    assert (b["longest_flat_samples"], b["flat_samples"], b["max_flat_samples"]) == (100, 100, 150)
    assert (c["longest_flat_samples"], c["flat_samples"], c["max_flat_samples"]) == (30, 600, 45)
    (warning,) = frozen_in_training(h, 2.0)
    assert warning.startswith("channel 'b' was flat for 100 samples in a row in training (200 s)")
    assert "(150 samples)" in warning and "[health.channel_limits.b] max_flat_samples" in warning
    lines = describe(h)
    assert "longest in training 100, one stretch: a sensor frozen in training?" in lines[2]
    assert "frozen" not in lines[1] + lines[3]
    x[700:720, 1] = x[700:720, 0]  # a stretch of 80 with noise before it: still most of b's flat samples
    assert frozen_in_training(learn_limits(x, None, CH))[0].startswith("channel 'b' was flat for 80 samples in a "
                                                                        "row in training, most")
    assert frozen_in_training(learn_limits(_normal(2000), 2.0, CH)) == []


def test_learn_limits_turns_stuck_off_for_a_set_point_and_does_not_join_blocks() -> None:
    x = _normal()
    x[:, 2] = 7.0  # a constant set point: flat all the time
    h = learn_limits([x[:300], x[300:]], None, CH)
    assert h["channels"]["c"]["max_flat_samples"] == 0
    assert h["stale_after_s"] == 60.0
    assert longest_flat(np.array([[1.0], [1.0], [2.0], [2.0], [2.0]]), np.zeros(1)).tolist() == [2]


@pytest.mark.parametrize(("doc", "match"), [
    ({"fill": {"method": "linear"}}, "fill.method"),
    ({"fill": {"limit_samples": -1}}, "limit_samples"),
    ({"stale_after_s": 0}, "stale_after_s"),
    ({"channels": {"zz": {}}}, "not one of the model's channels"),
    ({"channels": {"a": {"min": 2, "max": 1}}}, "min > max"),
    ({"channels": {"a": {"max_flat_samples": 1.5}}}, "max_flat_samples"),
    ({"channels": {"a": {"margin": float("nan")}}}, "margin"),
])
def test_check_document_names_the_bad_field(doc: dict, match: str) -> None:
    with pytest.raises(HealthError, match=match):
        check_document(doc, CH)


def _run(lim: HealthLimits, rows: np.ndarray, chunk: int) -> np.ndarray:
    h = ChannelHealth(lim)
    return np.concatenate([h.update(rows[i:i + chunk].astype(np.float32)) for i in range(0, len(rows), chunk)])


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_a_frozen_channel_is_stuck_after_its_limit_whatever_the_message_size(chunk: int) -> None:
    x = _normal(400, seed=1)
    x[200:, 1] = x[200, 1]
    codes = _run(_limits(), x, chunk)
    assert (codes[:, [0, 2]] == OK).all()
    first = int(np.argmax(codes[:, 1] == STUCK))
    assert first == 211  # flat steps from sample 201 on; stuck once more than 10 in a row (the 11th)
    assert (codes[first:, 1] == STUCK).all() and (codes[:first, 1] == OK).all()


@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_missing_values_are_carried_forward_up_to_the_limit_then_missing(chunk: int) -> None:
    x = _normal(60, seed=2)
    x[20:32, 2] = np.nan  # 12 missing: 5 carried, then missing
    lim = _limits()
    h = ChannelHealth(lim)
    rows = x.astype(np.float32)
    codes = np.concatenate([h.update(rows[i:i + chunk]) for i in range(0, len(rows), chunk)])
    assert not np.isnan(rows).any()  # filled in place
    assert (rows[20:32, 2] == np.float32(x[19, 2])).all()  # the last good value
    assert (codes[20:25, 2] == OK).all() and (codes[25:32, 2] == MISSING).all() and (codes[32:, 2] == OK).all()
    assert (codes[:, :2] == OK).all()


def test_a_channel_that_never_had_a_value_gets_the_neutral_value_and_is_missing_after_the_limit() -> None:
    h = ChannelHealth(_limits(fill_limit=0))
    rows = np.array([[20.0, np.nan, 0.1]], dtype=np.float32)
    assert h.update(rows).tolist() == [[OK, MISSING, OK]]
    assert rows[0, 1] == 3.0 and h.excluded().tolist() == [False, True, False]


@pytest.mark.parametrize(("value", "code"), [(20.0, OK), (34.0, OK), (36.0, OUT_OF_RANGE), (-100.0, OUT_OF_RANGE)])
def test_out_of_range_outside_the_learned_range_and_margin(value: float, code: int) -> None:
    h = ChannelHealth(_limits(range_hold=1))
    assert h.update(np.array([[value, 3.0, 0.0]], np.float32))[0, 0] == code


def test_out_of_range_only_after_the_hold_a_brief_excursion_stays_in_the_process_score() -> None:
    h = ChannelHealth(_limits(range_hold=3))
    spike = np.array([[20.0, 3.0, 0.0], [50.0, 3.0, 0.1], [50.0, 3.0, 0.0], [20.0, 3.0, 0.1]], np.float32)
    assert h.update(spike)[:, 0].tolist() == [OK, OK, OK, OK]  # two samples out: a process spike, not a fault
    held = np.array([[50.0, 3.0, 0.0]] * 4, np.float32)
    assert h.update(held[:2])[:, 0].tolist() == [OK, OK]
    assert h.update(held[2:])[:, 0].tolist() == [OUT_OF_RANGE, OUT_OF_RANGE]  # the hold counts across blocks
    assert h.out_runs[:, 0].tolist() == [3, 4]
    assert h.update(np.array([[20.0, 3.0, 0.1]], np.float32))[0, 0] == OK and h.out_run[0] == 0


def test_config_overrides_win_over_learned_limits_and_unknown_channels_are_refused() -> None:
    lim = _limits(overrides={"a": {"max": 21.0, "margin": 0.0}, "b": {"max_flat_samples": 0, "fill_limit": 2}},
                  fill_limit=7)
    assert lim.hi[0] == 21.0 and lim.max_flat[1] == 0 and lim.lo[0] < 20 and lim.fill_limit.tolist() == [7, 2, 7]
    with pytest.raises(HealthError, match="zz"):
        _limits(overrides={"zz": {"max": 1.0}})


def test_an_empty_document_checks_nothing_but_the_fill() -> None:
    lim = _limits({})
    h = ChannelHealth(lim)
    x = np.full((50, 3), 5.0, np.float32)
    assert (h.update(x) == OK).all()  # no range, no stuck check without limits
    assert lim.fill_limit.tolist() == [5, 5, 5] and lim.stale_after_s == 100.0


def test_stale_uses_the_limit() -> None:
    lim = _limits()
    assert not is_stale(100.0, 0.5, lim) and is_stale(100.6, 0.5, lim)


def test_renormalised_score_is_the_score_when_nothing_is_excluded_and_drops_the_excluded_share() -> None:
    ce = np.array([[1.0, 1.0, 4.0, 0.0], [0.5, 1.5, 1.0, 0.0]])
    weight = np.array([1.0, 1.0, 1.0, 0.0])  # the last channel is screened out
    none = np.zeros(4, bool)
    assert renormalised_score(ce, none, weight).tolist() == pytest.approx(ce.mean(axis=1).tolist())
    ex = np.array([False, False, True, False])
    # (1 + 1) / 4 * 3 / 2 = 0.75: the kept healthy channels' mean share, in the score's units
    assert renormalised_score(ce, ex, weight).tolist() == pytest.approx([0.75, 0.75])
    assert renormalised_score(ce, np.ones(4, bool), weight).tolist() == [0.0, 0.0]


def test_renormalised_score_with_a_power_mean_takes_the_root_of_the_healthy_mean() -> None:
    e = np.array([[1.0, 2.0, 0.5, 0.0]])
    weight = np.array([4 / 3, 4 / 3, 4 / 3, 0.0])
    ce = weight * e**3  # format 4's channel_error, power 3
    score = ce.mean(axis=1) ** (1 / 3)
    assert renormalised_score(ce, np.zeros(4, bool), weight, 3.0).tolist() == pytest.approx(score.tolist())
    ex = np.array([False, True, False, False])
    assert renormalised_score(ce, ex, weight, 3.0).tolist() == pytest.approx([((1 + 0.125) / 2) ** (1 / 3)])


def test_describe_lists_every_channel() -> None:
    lines = describe(learn_limits(_normal(), 10.0, CH))
    assert lines[0].startswith("sensor health (checked by the edge as it runs): a gap of up to 5 missing samples is filled (ffill)") and len(lines) == 4
    assert "no limits stored" in describe({})[0]
    x = _normal()
    x[:, 1] = 7.0  # a constant channel: its accepted range is 7 +- 7, said so
    line = describe(learn_limits(x, 10.0, CH))[2]
    assert f"  {CH[1]}: in range 0 .. 14 (training constant 7, widened by 7 on each side)" in line


@pytest.mark.parametrize("chunk", [1, 5, 9, 10, 50, 500, 5000])
def test_check_plain_fast_path_gives_the_same_states_as_update(chunk: int) -> None:
    x = _normal(500 if chunk < 5000 else 9000, seed=3)  # 5000: beyond TILE_ROWS, the bounds broadcast
    x[100:130, 1] = x[100, 1]  # stuck
    x[200:203, 0] = x[200, 0]  # a short flat run: fine
    x[300:305, 2] = 99.0  # out of range
    lim = _limits()
    fast, slow = ChannelHealth(lim), ChannelHealth(lim)
    got, want = [], []
    for i in range(0, len(x), chunk):
        block = x[i:i + chunk].astype(np.float32)
        c = fast.check_plain(block)
        got.append(np.zeros(block.shape, np.uint8) if c is None else c)
        want.append(slow.update(block.copy()))
    np.testing.assert_array_equal(np.concatenate(got), np.concatenate(want))
    assert fast.quiet  # back on the fast path once every channel is ok again


@pytest.mark.parametrize("seed", range(6))
def test_check_plain_agrees_with_update_on_quantised_channels_with_runs_near_their_limits(seed: int) -> None:
    """Quantised channels hold their value for 0-19 samples at a time (stuck limit 6 or 9; some mostly move,
    with a run just past their limit now and then), one channel has no stuck check, now and then a value leaves the range: blocks of random sizes give the same codes and
    the same flat runs (of the checked channels) through check_plain as through update."""
    rng = np.random.default_rng(seed)
    n = 3000
    cols = []
    for choices in ([1] * 60 + [2, 7, 8], [1] * 60 + [3, 10, 11], [1, 20], [1] * 6 + [2, 3, 8, 12]):
        holds = rng.choice(choices, size=n)
        levels = np.round(np.cumsum(rng.choice([-1.0, 1.0], size=n)) * 0.1 + 10.0, 1)
        cols.append(np.repeat(levels, holds)[:n])
    x = np.column_stack(cols)
    x[rng.integers(0, n, 8), rng.integers(0, 4, 8)] = 1e6  # out of range now and then
    health = {"fill": {"method": "ffill", "limit_samples": 3}, "stale_after_s": 60, "channels": {
        f"c{j}": {"min": -1e3, "max": 1e3, "margin": 0.0, "flat_tol": 0.01, "max_flat_samples": k}
        for j, k in enumerate([6, 9, 0, 6])}}
    lim = HealthLimits.build(health, [f"c{j}" for j in range(4)], [10.0] * 4, 1.0, range_hold=1)
    fast, slow = ChannelHealth(lim), ChannelHealth(lim)
    checked = lim.max_flat > 0
    i, got, want = 0, [], []
    while i < n:
        k = int(rng.choice([1, 2, 4, 5, 8, 16, 40, 100, 300]))
        block = x[i:i + k].astype(np.float32)
        c = fast.check_plain(block)
        got.append(np.zeros(block.shape, np.uint8) if c is None else c)
        want.append(slow.update(block.copy()))
        np.testing.assert_array_equal(fast.flat_run[checked], slow.flat_run[checked])
        i += k
    codes = np.concatenate(want)
    assert (codes == STUCK).any() and (codes == OUT_OF_RANGE).any()  # the stream has both
    np.testing.assert_array_equal(np.concatenate(got), codes)


def test_tiled_bounds_are_shared_rows_that_grow_up_to_their_cap() -> None:
    from edge_runtime.pipeline.health import TILE_ROWS

    lim = _limits()
    lo, hi, tol = lim.tiled(10)
    assert lo.shape == hi.shape == tol.shape == (10, len(CH)) and lo.dtype == np.float32
    np.testing.assert_array_equal(lo[3], lim.lo.astype(np.float32))
    np.testing.assert_array_equal(tol[0], np.where(lim.max_flat == 0, -1.0, lim.flat_tol))
    assert lim.tiled(300)[0].shape == (300, len(CH)) and lim.tiled(10)[0].base is lim.tiled(300)[0].base
    assert lim.tiled(TILE_ROWS + 1)[0].shape == (len(CH),)  # beyond the cap: one row that broadcasts


def test_limits_widened_for_one_device_keep_no_tiles() -> None:
    """input.warmup widens one device's limits: its own HealthLimits, whose bounds broadcast (no per-device
    copies of up to TILE_ROWS rows), and its checks still agree with update()."""
    lim = _limits()
    fast, slow = ChannelHealth(lim), ChannelHealth(lim)
    for ch in (fast, slow):
        ch.widen(lim.lo - 1.0, lim.hi + 1.0)
    assert fast.limits.tile_rows == 0 and fast.limits.tiled(100)[0].shape == (len(CH),)
    x = _normal(300, seed=5).astype(np.float32)
    x[100:130, 1] = x[100, 1]  # stuck
    got = [fast.check_plain(x[i:i + 50]) for i in range(0, 300, 50)]
    want = [slow.update(x[i:i + 50].copy()) for i in range(0, 300, 50)]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(np.zeros_like(w) if g is None else g, w)


def test_flat_runs_are_counted_the_same_in_row_blocks_as_in_one_pass() -> None:
    from edge_runtime.pipeline.health import _flat_steps

    rng = np.random.default_rng(3)
    x = rng.normal(size=(1000, 3))
    x[100:180, 0] = 2.0  # flat runs that cross block boundaries
    x[500:507, 1] = -1.0
    x[::2, 2] = 0.5  # flat every other step: many short runs
    x[300, 1] = np.nan
    tol = np.full(3, 1e-9)
    whole = _flat_steps(x, tol, chunk=10**9)
    for chunk in (1, 7, 64, 999):
        got = _flat_steps(x, tol, chunk=chunk)
        np.testing.assert_array_equal(got[0], whole[0])
        np.testing.assert_array_equal(got[1], whole[1])
    assert whole[0].tolist() == [79, 6, 0] and whole[1][0] == 79


def test_describe_lists_channels_in_the_models_order_not_the_stored_sorted_one() -> None:
    h = learn_limits(_normal(), 1.0, CH)
    h["channels"] = dict(sorted(h["channels"].items(), reverse=True))  # as a document read back may hold them
    assert [ln.split(":")[0].strip() for ln in describe(h, ["b", "c", "a"])[1:]] == ["b", "c", "a"]
    assert [ln.split(":")[0].strip() for ln in describe(h)[1:]] == ["a", "b", "c"]


def test_an_older_model_without_flat_samples_is_not_marked_frozen() -> None:
    from edge_runtime.pipeline.health import lone_flat_stretch

    assert not lone_flat_stretch({"max_flat_samples": 60, "longest_flat_samples": 40})
    assert lone_flat_stretch({"max_flat_samples": 60, "longest_flat_samples": 40, "flat_samples": 40})
