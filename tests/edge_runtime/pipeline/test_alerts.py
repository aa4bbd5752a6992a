"""The hysteresis state machine and the alert payload."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edge_runtime.pipeline.alerts import AlertPolicy, AlertTracker, StateError, top_channels

CH = ["a", "b", "c"]


def tracker(k: int = 3, m: int = 2, ratio: float = 0.5) -> AlertTracker:
    ids = (f"id{i}" for i in itertools.count())
    return AlertTracker(AlertPolicy(k, m, ratio, top_channels=2), "gw1", id_factory=lambda dev, seq: next(ids), clock=lambda: 99.0)


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
    assert raised["schema_version"] == 2


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


def test_top_channels_shares() -> None:
    assert top_channels(np.asarray([2, 2, 0], np.float32), CH, 1)[0]["share"] == 0.5


def test_a_channel_with_no_part_of_the_error_is_not_a_top_channel() -> None:
    """Listed with share 0.0 it reads "not to blame" beside those that are (a screened, excluded or exactly
    expected channel): fewer than k are named, none for a window without error."""
    assert [t["name"] for t in top_channels(np.asarray([2, 0, 1], np.float32), CH, 3)] == [CH[0], CH[2]]
    assert top_channels(np.asarray([0, 0, 0], np.float32), CH, 3) == []
    assert top_channels(np.asarray([1e-9, 0, 1], np.float32), CH, 3) == [{"name": CH[2], "share": 1.0}]


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


def test_an_adopted_alert_carries_its_peak_and_anomalous_since_from_the_state() -> None:
    t = tracker()
    t.adopt({**_retained(), "peak_score": 4.5, "peak_time": 120.0, "anomalous_since": 100.0}, _topic("p1"), _topic)
    st = t.devices["p1"]
    assert (st.peak_score, st.peak_time, st.anomalous_since) == (4.5, 120.0, 100.0)
    assert t.state_payload("p1")["peak_score"] == 4.5  # and the next state keeps them for the next restart
    cleared = feed(t, [0.1, 0.1], dev="p1")
    assert cleared[0]["peak_score"] == 4.5 and "peak 4.5x threshold" in cleared[0]["summary"]
    for bad in ("x", float("nan"), True, None, -1.0):  # an unknown or malformed peak: unknown (0), not an error
        t = tracker()
        t.adopt({**_retained(), "peak_score": bad, "anomalous_since": bad}, _topic("p1"), _topic)
        assert t.devices["p1"].peak_score == 0.0 and t.devices["p1"].anomalous_since == _retained()["since"]


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


# -- version 2: what a person can act on -------------------------------------------------------------


def v2_tracker(k: int = 2, m: int = 2, interval: float = 10.0) -> AlertTracker:
    return AlertTracker(AlertPolicy(k, m, 0.5, top_channels=2, critical_ratio=3.0, update_interval_s=interval),
                        "gw1", clock=lambda: 1.8e9)


def v2_feed(t: AlertTracker, scores: list[float], ce: np.ndarray, t0: float = 0.0, detail=None) -> list[dict]:
    s = np.asarray(scores, np.float32)
    ts = t0 + np.arange(len(s), dtype=np.float64)
    return t.update("pump:7", s, ce, ts, ts + 9, 1.0, CH, "m1", normal=np.array([1.0, 1.0, 1.0]),
                    units={"b": "bar"}, detail=detail)


def test_alert_id_is_device_and_seq_and_links_raise_update_clear() -> None:
    t = v2_tracker(interval=1.0)
    ce_b = np.tile([[1.0, 5.0, 1.0]], (4, 1))  # b departs
    ce_c = np.tile([[1.0, 1.0, 9.0]], (4, 1))  # then c
    out = v2_feed(t, [2, 2, 2, 2], ce_b) + v2_feed(t, [2, 2, 2, 2], ce_c, 4) + v2_feed(t, [0.1, 0.1], ce_c[:2], 8)
    assert [a["event"] for a in out] == ["raise", "update", "clear"]
    assert [a["state"] for a in out] == ["raised", "raised", "cleared"]
    assert [a["alert_id"] for a in out] == ["pump:7:1", "pump:7:2", "pump:7:3"]
    assert {a["raised_alert_id"] for a in out} == {"pump:7:1"}
    assert out[0]["raised_alert_id"].rsplit(":", 1) == ["pump:7", "1"]
    assert [x["name"] for x in out[1]["top_channels"]][0] == "c"


def test_excess_shares_rank_the_departing_channel_not_the_largest_raw_error() -> None:
    t = v2_tracker()
    # a is always 4 (its normal is 4: noisy), b departs from a normal of 1 to 3
    s = np.array([[4.0, 3.0, 1.0]] * 2)
    out = t.update("d", np.array([2.0, 2.0]), s, np.arange(2.0), np.arange(2.0) + 9, 1.0, CH, "m1",
                   normal=np.array([4.0, 1.0, 1.0]))
    tops = out[0]["top_channels"]
    assert tops[0] == {"name": "b", "share": 0.375, "excess_share": 1.0}
    assert tops[1]["excess_share"] == 0.0


def test_raise_has_measured_expected_unit_direction_severity_and_summary() -> None:
    t = v2_tracker()
    asked = []

    def detail(i: int):
        asked.append(i)
        return np.array([0.0, 3.1, 7.0]), np.array([0.0, 4.6, 5.0])

    out = v2_feed(t, [1.5, 4.0, 4.0], np.tile([[1.0, 5.0, 2.0]], (3, 1)), detail=detail)
    (a,) = out
    assert asked == [1]  # only the raising window is explained
    assert a["top_channels"][0] == {"name": "b", "share": 0.625, "excess_share": 0.8, "measured": 3.1,
                                    "expected": 4.6, "direction": "low", "unit": "bar"}
    assert a["top_channels"][1]["direction"] == "high" and "unit" not in a["top_channels"][1]
    assert a["severity"] == "critical" and a["score_ratio"] == 4.0
    assert a["summary"] == "critical: b low: mean 3.1 bar, expected 4.6 (also c)"
    assert a["anomalous_since"] == 9.0 and a["anomalous_since_iso"] == "1970-01-01T00:00:09.000Z"
    assert a["time_iso"] == "2027-01-15T08:00:00.000Z" and a["window_end_iso"] == "1970-01-01T00:00:10.000Z"
    assert a["peak_score"] == 4.0


def test_a_step_in_the_windows_last_samples_is_quoted_at_its_peak_not_its_mean() -> None:
    """The window mean of a late step reads close to normal; the summary quotes the sample that departs most."""
    t = v2_tracker()

    def detail(i: int):  # means, then the peak samples: b 1.5 bar down at the end, c as its mean
        return (np.array([0.0, 4.62, 7.0]), np.array([0.0, 4.72, 5.0]),
                np.array([0.0, 3.2, 7.5]), np.array([0.0, 4.7, 5.0]))

    (a,) = v2_feed(t, [1.5, 4.0, 4.0], np.tile([[1.0, 5.0, 2.0]], (3, 1)), detail=detail)
    b = a["top_channels"][0]
    assert (b["measured"], b["expected"], b["peak_measured"], b["peak_expected"]) == (4.62, 4.72, 3.2, 4.7)
    assert a["summary"] == "critical: b low: 3.2 bar, expected 4.7 (window mean 4.62) (also c)"



def test_anomalous_since_spans_calls_and_clear_reports_duration_and_peak() -> None:
    t = v2_tracker(k=3, interval=0)
    ce = np.tile([[1.0, 5.0, 1.0]], (2, 1))
    assert v2_feed(t, [0.1, 2.0], ce) == []  # the run starts at window 1 (window_end 10)
    (r,) = v2_feed(t, [2.0, 2.5], ce, 2)
    assert r["anomalous_since"] == 10.0 and r["severity"] == "warning"
    out = v2_feed(t, [6.0, 2.0, 0.1, 0.1], np.tile([[1.0, 5.0, 1.0]], (4, 1)), 4)
    (c,) = out  # interval 0: no updates, even though the severity changed to critical
    assert c["event"] == "clear" and c["duration_s"] == 16.0 - 10.0
    assert c["peak_score"] == 6.0 and c["peak_time"] == 13.0 and c["severity"] == "critical"
    assert c["summary"] == "back to normal after 6s (peak 6x threshold)"
    (r2,) = v2_feed(t, [2.0, 2.0, 2.0], ce[:1].repeat(3, 0), 20)
    assert r2["anomalous_since"] == 29.0 and r2["peak_score"] == 2.0  # a new alert starts afresh


def test_updates_are_rate_limited_and_only_on_a_change() -> None:
    t = v2_tracker(k=1, interval=10.0)
    ce_b, ce_c = [1.0, 5.0, 1.0], [1.0, 1.0, 9.0]
    # raise at window 0; same channels for a while (no update); c takes over at 3 but the interval holds it to 10
    ce = np.array([ce_b] * 3 + [ce_c] * 12)
    out = v2_feed(t, [2.0] * 15, ce)
    assert [(a["event"], a["window_end"]) for a in out] == [("raise", 9.0), ("update", 19.0)]
    out = v2_feed(t, [5.0], np.array([ce_c]), 30)  # the severity changes
    assert [(a["event"], a["severity"]) for a in out] == [("update", "critical")]


def test_version_2_payloads_satisfy_the_schema_and_version_1_fields_stay() -> None:
    from tests.edge_runtime import schema_check

    schema = schema_check.load("alert.schema.json")
    t = v2_tracker(k=1, interval=1.0)
    out = v2_feed(t, [2.0, 5.0, 0.1, 0.1], np.array([[1.0, 5.0, 1.0], [1, 1, 9], [1, 1, 1], [1, 1, 1]]),
                  detail=lambda i: (np.array([1.0, 2.0, 3.0]), np.array([1.5, 2.5, 3.5])))
    assert [a["event"] for a in out] == ["raise", "update", "clear"]
    v1 = set(schema["required"])
    for a in out:
        assert schema_check.errors(a, schema) == [], a
        assert v1 <= set(a) and a["schema_version"] == 2
    st, alert = t.forget("pump:7", "expired", 1.0, CH, "m1")
    assert alert is None  # already cleared
