"""Operating states: learning the stopped signature and settling time, gating samples, out-of-distribution."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.contract import ContractError
from edge_runtime.pipeline.states import (
    OUT_OF_DISTRIBUTION,
    RUNNING,
    SETTLING,
    STOPPED,
    Condition,
    DistributionCheck,
    StateError,
    StateGate,
    StateModel,
    learn,
    running_from_column,
    settled,
    transitions,
)

CHANNELS = ["speed", "current", "temperature"]


def plant(seed: int = 0, settle: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Running at ~1500 rpm / 12 A / 60 C with stops (speed and current ~0, temperature cooling) and a ramp."""
    rng = np.random.default_rng(seed)
    t = 6000
    running = np.ones(t, dtype=bool)
    for a in (1000, 2500, 4200):
        running[a : a + 400] = False
    x = np.empty((t, 3))
    x[:, 0] = 1500 + rng.normal(0, 20, t)
    x[:, 1] = 12 + rng.normal(0, 0.5, t)
    x[:, 2] = 60 + rng.normal(0, 1, t)
    for a in (1000, 2500, 4200):
        x[a : a + 400, 0] = rng.normal(0, 2, 400)
        x[a : a + 400, 1] = rng.normal(0.1, 0.02, 400)
        x[a : a + 400, 2] = 60 - 30 * (1 - np.exp(-np.arange(400) / 100)) + rng.normal(0, 1, 400)
        ramp = np.linspace(0, 1, settle)
        x[a + 400 : a + 400 + settle, 0] *= ramp
        x[a + 400 : a + 400 + settle, 1] *= ramp
    return x, running


def test_learns_which_channels_tell_a_stop_and_the_settling_time():
    x, running = plant(settle=30)
    m = learn(x, running, CHANNELS, "column status in RUN")
    assert m.stop_channels == ["speed", "current"]  # the cooling temperature overlaps its running range
    assert 20 <= m.settle_samples <= 45, m.settle_samples
    rule = m.rule(CHANNELS)
    assert rule.stopped(x[~running]).mean() > 0.99
    assert rule.stopped(x[settled(running, m.settle_samples)]).mean() == 0.0
    m.validate(CHANNELS)
    assert StateModel.from_dict(m.to_dict()) == m


def test_no_stops_in_the_data_means_nothing_to_recognise():
    x, _ = plant()
    m = learn(x, np.ones(len(x), bool), CHANNELS, "all running")
    assert m.stop_channels == [] and m.settle_samples == 0
    assert not m.rule(CHANNELS).active


def test_running_column_and_condition():
    assert running_from_column(["RUN", " run", "STOP", "idle"], ["RUN"]).tolist() == [True, True, False, False]
    c = Condition.parse("motor_speed_rpm > 100")
    assert (c.channel, c.op, c.value) == ("motor_speed_rpm", ">", 100.0)
    assert c.holds(np.array([50.0, 150.0, np.nan])).tolist() == [False, True, False]
    with pytest.raises(StateError, match="CHANNEL OP NUMBER"):
        Condition.parse("speed is high")
    assert transitions(np.array([1, 0, 0, 1, 1, 0, 1], bool)).tolist() == [3, 6]


def test_gate_stops_settles_and_runs_again_row_by_row_and_in_batches():
    x, running = plant()
    m = learn(x, running, CHANNELS, "test")
    rows, batch = StateGate(m.rule(CHANNELS), m.settle_samples), StateGate(m.rule(CHANNELS), m.settle_samples)
    kept_rows, changes_rows = [], []
    for i, row in enumerate(x[900:1600].tolist()):
        keep, change = rows.gate_row("d", row)
        kept_rows.append(keep)
        if change:
            changes_rows.append((i, change))
    kept_batch, changes_batch = [], []
    for lo in range(900, 1600, 64):  # the same samples in messages of 64
        code, ch = batch.gate("d", x[lo : min(1600, lo + 64)])
        kept_batch += (code == 0).tolist()
        changes_batch += [(lo - 900 + i, s) for i, s in ch]
    assert kept_rows == kept_batch
    assert changes_rows == changes_batch
    assert [s for _, s in changes_rows] == [RUNNING, STOPPED, SETTLING, RUNNING]  # first seen running
    assert changes_rows[1][0] == 100  # the stop at sample 1000
    assert changes_rows[3][0] - changes_rows[2][0] == m.settle_samples
    assert rows.counts() == {"devices_stopped": 0, "devices_settling": 0}
    assert not any(kept_rows[100:500 + m.settle_samples])


def test_condition_rule_is_applied_as_given():
    x, running = plant()
    m = learn(x, running, CHANNELS, "condition speed>100", Condition.parse("speed>100"))
    gate = StateGate(m.rule(CHANNELS), 0)
    code, _ = gate.gate("d", x)
    assert np.array_equal(code == 0, x[:, 0] > 100)


def test_distribution_check_reports_a_device_far_out_once_and_lets_it_back():
    check = DistributionCheck(windows=4, factor=3.0)
    out, change = check.update("d", np.array([10.0, 12, 11]), 1.0, "a")
    assert out == [] and change is None  # held while deciding
    out, change = check.update("d", np.array([9.0, 8.0]), 1.0, "b")
    assert out == [] and change == OUT_OF_DISTRIBUTION and check.is_out("d")
    out, change = check.update("d", np.array([5.0, 0.5, 0.5, 0.5]), 1.0, "c")
    assert out == [] and change is None
    out, change = check.update("d", np.array([0.5, 0.5, 0.5]), 1.0, "e")
    assert change == RUNNING and out == [("e", 1, 3)]  # alerts again from the window after the 4th below
    out, change = check.update("d", np.array([2.0]), 1.0, "f")
    assert out == [("f", 0, 1)] and change is None


def test_distribution_check_releases_held_windows_of_a_device_in_distribution():
    check = DistributionCheck(windows=3, factor=3.0)
    assert check.update("d", np.array([0.5, 5.0]), 1.0, "a") == ([], None)
    out, change = check.update("d", np.array([0.7, 2.0]), 1.0, "b")
    assert out == [("a", 0, 2), ("b", 0, 2)] and change is None
    off = DistributionCheck(windows=0, factor=3.0)
    assert off.update("d", np.array([99.0]), 1.0, "x") == ([("x", 0, 1)], None)


def test_bad_states_document_is_a_contract_error():
    from edge_runtime.contract import ModelMetadata, Normalisation, Threshold

    meta = ModelMetadata(channels=["a", "b"], window=8, hop=2, threshold=Threshold(1.0),
                         normalisation=Normalisation([0.0, 0.0], [1.0, 1.0]),
                         states={"source": "x", "stop_channels": ["zz"], "stop_level": [0.0], "stop_tolerance": [1.0]})
    with pytest.raises(ContractError, match="stop_channels"):
        meta.validate()
    meta.states = {"source": "x", "stop_channels": ["a"], "stop_level": [0.0], "stop_tolerance": [1.0]}
    back = ModelMetadata.from_json(meta.to_json())
    assert back.state_model().stop_channels == ["a"]


@pytest.mark.parametrize("text", ["s>1", "s>=1", "s<1", "s<=1", "s==1", "s!=1"])
def test_one_value_condition_matches_the_vectorised_one(text: str):
    c = Condition.parse(text)
    v = np.array([0.0, 1.0, 2.0, np.nan])
    assert [c.holds_value(float(x)) for x in v] == c.holds(v).tolist()
