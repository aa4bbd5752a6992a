"""The hysteresis state machine and the alert payload."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edge_runtime.pipeline.alerts import AlertPolicy, AlertTracker, StateError, top_channels

CH = ["a", "b", "c"]


def tracker(k: int = 3, m: int = 2, ratio: float = 0.5) -> AlertTracker:
    ids = (f"id{i}" for i in itertools.count())
    return AlertTracker(AlertPolicy(k, m, ratio, top_channels=2), "gw1", id_factory=lambda: next(ids), clock=lambda: 99.0)


def feed(t: AlertTracker, scores: list[float], dev: str = "d") -> list[dict]:
    s = np.asarray(scores, np.float32)
    ce = np.tile(np.array([[1.0, 3.0, 0.0]], np.float32), (len(s), 1))
    ts = np.arange(len(s), dtype=np.float64)
    return t.update(dev, s, ce, ts, ts + 9, 1.0, CH, "m1")


def test_single_noisy_window_does_not_raise() -> None:
    t = tracker()
    assert feed(t, [5, 0.1, 5, 5, 0.2, 5]) == []


def test_raise_after_k_and_clear_after_m_below_clear_level() -> None:
    t = tracker()
    out = feed(t, [2, 2, 2, 2, 0.7, 0.4, 0.7, 0.4, 0.3])
    assert [a["state"] for a in out] == ["raised", "cleared"]
    raised, cleared = out
    assert raised["seq"] == 1 and cleared["seq"] == 2
    assert raised["window_start"] == 2.0 and raised["window_end"] == 11.0  # the k-th window
    assert cleared["window_end"] == 17.0  # 0.7 is above the clear level 0.5 and resets the run
    assert raised["alert_id"] == "id0" and cleared["alert_id"] == "id1"
    assert cleared["raised_alert_id"] == "id0" == raised["raised_alert_id"]
    assert raised["top_channels"] == [{"name": "b", "share": 0.75}, {"name": "a", "share": 0.25}]
    assert raised["threshold"] == 1.0 and raised["clear_level"] == 0.5
    assert raised["instance"] == "gw1" and raised["model_id"] == "m1" and raised["device"] == "d"
    assert raised["schema_version"] == 1


def test_state_carries_across_calls_and_devices_are_independent() -> None:
    t = tracker()
    assert feed(t, [2, 2], "x") == []
    assert feed(t, [2, 2], "y") == []
    assert [a["device"] for a in feed(t, [2], "x")] == ["x"]
    assert t.state_payload("x")["state"] == "raised"
    assert t.state_payload("y")["state"] == "cleared"


def test_reraise_after_clear() -> None:
    t = tracker(k=1, m=1)
    out = feed(t, [2, 0.1, 2])
    assert [a["state"] for a in out] == ["raised", "cleared", "raised"]
    assert [a["seq"] for a in out] == [1, 2, 3]


@pytest.mark.parametrize(("ce", "want"), [([0, 0, 0], 0.0), ([2, 2, 0], 0.5)])
def test_top_channels_shares(ce, want) -> None:
    assert top_channels(np.asarray(ce, np.float32), CH, 1)[0]["share"] == want


def test_forget_clears_a_raised_device_and_keeps_its_seq() -> None:
    t = tracker(k=1)
    raised = feed(t, [2, 3])[0]
    st, alert = t.forget("d", "expired", 1.0, CH, "m1")
    assert st is not None and alert is not None and "d" not in t.devices
    assert alert["state"] == "cleared" and alert["reason"] == "expired" and alert["seq"] == 2
    assert alert["raised_alert_id"] == raised["alert_id"] and alert["score"] == 3.0  # the last window
    assert alert["window_end"] == 10.0 and alert["clear_level"] == 0.5
    assert "reason" not in raised
    assert [a["seq"] for a in feed(t, [2])] == [3]  # back again: seq carries on


def test_forget_of_a_normal_device_sends_nothing_and_seq_memory_is_bounded() -> None:
    t = AlertTracker(AlertPolicy(1, 1, 0.5), "gw1", seq_memory=2)
    for dev in "abc":
        feed(t, [2], dev)
        feed(t, [0.1], dev)  # raised then cleared: seq 2, state cleared
        assert t.forget(dev, "evicted", 1.0, CH, "m1")[1] is None
    assert dict(t.past_seq) == {"b": 2, "c": 2}
    t.remember_seq("b", 1)  # an older seq never lowers it
    assert t.past_seq["b"] == 2 and list(t.past_seq) == ["c", "b"]
    assert t.forget("nobody", "expired", 1.0, CH, "m1") == (None, None)


def _topic(device: str) -> str:
    return f"alerts/{device}/state"


def _retained(**kw: object) -> dict:
    return {"schema_version": 1, "device": "p1", "state": "raised", "seq": 7, "raised_alert_id": "r9",
            "since": 5.0, "instance": "gw1", **kw}


def test_adopt_tracks_a_retained_raised_device_and_clears_it_on_normal_data() -> None:
    t = tracker()
    assert t.adopt(_retained(), _topic("p1"), _topic) == "p1"
    st = t.devices["p1"]
    assert (st.state, st.seq, st.alert_id) == ("raised", 7, "r9")
    cleared = feed(t, [0.1, 0.1], dev="p1")
    assert [a["state"] for a in cleared] == ["cleared"]
    assert cleared[0]["seq"] == 8 and cleared[0]["raised_alert_id"] == "r9"


@pytest.mark.parametrize("doc, topic", [
    (_retained(instance="other"), _topic("p1")),  # another instance's state
    (_retained(), _topic("p2")),  # topic and device disagree
])
def test_adopt_ignores_what_is_not_this_instances_state(doc: object, topic: str) -> None:
    t = tracker()
    assert t.adopt(doc, topic, _topic) is None
    assert t.devices == {} and not t.past_seq


@pytest.mark.parametrize("doc", [
    _retained(state="weird"), _retained(seq="x"), _retained(seq=float("inf")), _retained(seq=1.5),
    _retained(seq=True), _retained(seq=-1), _retained(seq=2**53), _retained(seq=10**30), _retained(device=3),
    _retained(device=""), _retained(raised_alert_id=[1]), _retained(instance=None), {"state": "raised"}, ["p1"], "raised", 7,
])
def test_adopt_refuses_a_malformed_state(doc: object) -> None:
    t = tracker()
    with pytest.raises(StateError):
        t.adopt(doc, _topic("p1"), _topic)
    assert t.devices == {} and not t.past_seq


def test_adopt_carries_seq_on_from_a_cleared_state_and_never_goes_back() -> None:
    t = tracker()
    assert t.adopt(_retained(state="cleared", seq=4), _topic("p1"), _topic) is None
    assert feed(t, [5, 5, 5], dev="p1")[0]["seq"] == 5  # remembered seq 4: the next alert is 5
    assert t.adopt(_retained(seq=2), _topic("p1"), _topic) is None  # this run already published seq 5
    assert t.devices["p1"].seq == 5
