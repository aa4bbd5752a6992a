"""The false-alarm threshold rule and the command documents (edge_runtime/pipeline/feedback.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_runtime.pipeline.feedback import (
    DIRECTION_WEIGHT,
    MAX_RAISES,
    CommandError,
    FalseAlarm,
    FeedbackRule,
    ThresholdRaise,
    after_false_alarm,
    apply_false_alarms,
    current_factor,
    describe_signature,
    global_factor,
    is_repeat,
    needed_factor,
    parse_command,
    profiles,
    record_false_alarm,
    reply_doc,
    request_id_of,
    signature_of,
    similarity,
    standing,
    standing_verdicts,
    window_factors,
)
from tests.edge_runtime.schema_check import errors, load

DAY = 86400.0
RULE = FeedbackRule(margin=0.05, max_factor=3.0, half_life_s=7 * DAY)


def test_a_false_alarm_raises_just_above_its_peak() -> None:
    r = after_false_alarm(RULE, None, base=1.0, peak=1.6, now=0.0)
    assert current_factor(RULE, r, 0.0) == pytest.approx(1.68) and r.false_alarms == 1


def test_the_raise_is_capped_at_max_factor() -> None:
    r = after_false_alarm(RULE, None, base=1.0, peak=40.0, now=0.0)
    assert current_factor(RULE, r, 0.0) == 3.0


def test_the_raise_decays_with_its_half_life() -> None:
    r = after_false_alarm(RULE, None, base=1.0, peak=2.0 / 1.05, now=0.0)
    assert current_factor(RULE, r, 7 * DAY) == pytest.approx(1.5)
    assert current_factor(RULE, r, 70 * DAY) == pytest.approx(1.0, abs=1e-3)
    assert current_factor(FeedbackRule(half_life_s=0), r, 1e9) == pytest.approx(2.0)  # 0: no decay


def test_a_second_false_alarm_keeps_the_larger_raise() -> None:
    r = after_false_alarm(RULE, None, 1.0, 2.0, 0.0)
    r2 = after_false_alarm(RULE, r, 1.0, 1.2, 1.0)
    assert current_factor(RULE, r2, 1.0) == pytest.approx(current_factor(RULE, r, 1.0)) and r2.false_alarms == 2


@pytest.mark.parametrize(("verdicts", "judgement"), [
    (["false_alarm", "confirmed"], "confirmed"), (["confirmed", "false_alarm"], "false_alarm"),
    (["false_alarm", "ack"], "false_alarm"), (["ack"], ""), (["false_alarm", "confirmed", "false_alarm"], "false_alarm"),
])
def test_the_last_verdict_on_an_alert_wins_and_an_ack_changes_nothing(verdicts: list[str], judgement: str) -> None:
    now = ""
    for v in verdicts:
        now = standing(now, v)
    assert now == judgement
    records = [{"alert_id": "a", "device": "d", "verdict": v} for v in verdicts]
    assert standing_verdicts(records).get("a", {}).get("verdict", "") == judgement
    assert standing_verdicts(records, device="other") == {}


def test_a_verdict_the_alert_has_is_a_repeat() -> None:
    assert is_repeat("false_alarm", False, "false_alarm") and not is_repeat("confirmed", False, "false_alarm")
    assert is_repeat("", True, "ack") and not is_repeat("false_alarm", False, "ack")
    assert not is_repeat("", False, "confirmed")


def test_false_alarms_fold_into_raises_and_one_left_out_is_as_if_never_sent() -> None:
    a = FalseAlarm("a", 1.0, 1.6, 0.0, (1.0, 0.0), "x")
    b = FalseAlarm("b", 1.0, 2.0, DAY, (0.0, 1.0), "y")
    c = FalseAlarm("c", 1.0, 1.2, 2 * DAY, (1.0, 0.0), "x")
    both, i = apply_false_alarms(RULE, [], [a, b, c])
    assert len(both) == 2 and i == 0 and both[0].false_alarms == 2
    without_a, _ = apply_false_alarms(RULE, [], [b, c])
    assert without_a == apply_false_alarms(RULE, [], [b])[0] + apply_false_alarms(RULE, [], [c])[0]
    assert apply_false_alarms(RULE, both, []) == (both, -1)


def test_the_needed_factor_is_uncapped() -> None:
    assert needed_factor(RULE, 1.0, 4.0) == pytest.approx(4.2) and needed_factor(RULE, 2.0, 2.0) == pytest.approx(1.05)


def test_a_peak_below_the_base_changes_nothing() -> None:
    assert current_factor(RULE, after_false_alarm(RULE, None, 1.0, 0.5, 0.0), 0.0) == 1.0


def test_raise_documents_round_trip_and_bad_ones_are_refused() -> None:
    r = ThresholdRaise(1.5, 10.0, 2)
    assert ThresholdRaise.from_doc(r.to_doc()) == r
    for bad in ({"factor": 0.5, "since": 0}, {"factor": "x", "since": 0}, [], {"factor": float("nan"), "since": 0}):
        assert ThresholdRaise.from_doc(bad) is None


def test_parse_feedback_command() -> None:
    cmd = parse_command(json.dumps({"command": "feedback", "alert_id": "a1", "verdict": "false_alarm", "note": "x",
                                    "request_id": "r1"}))
    assert (cmd.command, cmd.alert_id, cmd.verdict, cmd.note, cmd.request_id) == ("feedback", "a1", "false_alarm", "x", "r1")
    assert parse_command(b'{"command": "recalibrate", "device": "d1"}').device == "d1"


@pytest.mark.parametrize(("payload", "why"), [
    (b"not json", "not JSON"), (b"[1]", "not a JSON object"), (b'{"command": "reboot"}', "'command'"),
    (b'{"command": "feedback", "alert_id": "a", "verdict": "maybe"}', "'verdict'"),
    (b'{"command": "feedback", "verdict": "ack"}', "alert_id"), (b'{"command": "recalibrate"}', "device"),
    (b'{"command": "feedback", "alert_id": 5, "verdict": "ack"}', "must be a string"),
    (b'{"command": "feedback", "alert_id": "a", "verdict": "ack", "note": "' + b"x" * 600 + b'"}', "longer"),
    (b"{" * 5000, "larger than"),
])
def test_malformed_commands_are_refused_with_a_reason(payload: bytes, why: str) -> None:
    with pytest.raises(CommandError, match=why):
        parse_command(payload)


def test_request_id_survives_a_refusal_and_the_reply_fits_its_schema() -> None:
    payload = b'{"command": "reboot", "request_id": "r9"}'
    assert request_id_of(payload) == "r9" and request_id_of(b"garbage") == ""
    doc = reply_doc("gw1", "r9", "reboot", "refused", "'command' must be one of feedback, recalibrate", 1.0)
    assert errors(doc, load("reply.schema.json")) == []
    assert errors(json.loads(payload), load("command.schema.json")) != []
    ok = {"command": "feedback", "alert_id": "a1", "verdict": "ack"}
    assert errors(ok, load("command.schema.json")) == []


def test_a_profile_carries_the_excess_and_which_way_the_level_moved() -> None:
    ce = np.array([[3.0, 1.0, 1.0], [3.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    p = profiles(ce, normal=np.ones(3), z=np.array([[2.0, 0.0, 0.0], [-0.5, 0.0, 0.0], [5.0, 0.0, 0.0]]))
    assert p.shape == (3, 6)
    assert p[0].tolist() == [2.0, 0, 0, 2.0 * DIRECTION_WEIGHT, 0, 0]  # high, fully
    assert p[1].tolist() == [2.0, 0, 0, -1.0 * DIRECTION_WEIGHT, 0, 0]  # half-way low
    assert not p[2].any()  # no excess: no profile, whatever the level did


def test_similarity_tells_other_channels_and_the_other_direction_apart() -> None:
    up = signature_of(np.array([1.0, 0.1, 0.0, DIRECTION_WEIGHT, 0.0, 0.0]))
    same, other, down, flat = ([1.0, 0.1, 0, DIRECTION_WEIGHT, 0, 0], [0.1, 1.0, 0, 0, DIRECTION_WEIGHT, 0],
                               [1.0, 0.1, 0, -DIRECTION_WEIGHT, 0, 0], [1.0, 0.1, 0, 0, 0, 0])
    s = similarity(np.array([same, other, down, flat, [0.0] * 6]), up)
    assert s[0] == pytest.approx(1.0, abs=1e-3) and s[1] < 0.3 and s[4] == 0.0
    assert s[2] == pytest.approx(0.6, abs=0.02) and s[3] == pytest.approx(0.89, abs=0.02)  # see profiles()
    assert describe_signature(up, ["p", "t", "v"]) == "p high, t" if up[1] >= 0.1 * sum(up[:3]) else "p high"


def test_a_raise_applies_to_windows_like_its_false_alarm_only() -> None:
    sig = signature_of(np.array([1.0, 0.0, 0.0, 0.5, 0.0, 0.0]))
    raises, i = record_false_alarm(RULE, [], base=1.0, peak=2.0, now=0.0, signature=sig, label="p high")
    assert i == 0 and raises[0].signature == sig
    f = window_factors(RULE, raises, np.array([[2.0, 0, 0, 1.0, 0, 0], [0, 2.0, 0, 0, 1.0, 0]]), 0.0)
    assert f.tolist() == [pytest.approx(2.1), 1.0]
    assert global_factor(RULE, raises, 0.0) == 1.0
    # a second false alarm like it grows that raise; one unlike it is kept beside it
    raises, i = record_false_alarm(RULE, raises, 1.0, 2.5, 1.0, signature_of(np.array([1.0, 0.05, 0, 0.5, 0, 0])))
    assert (len(raises), i, raises[0].false_alarms) == (1, 0, 2) and raises[0].factor == pytest.approx(2.625)
    raises, i = record_false_alarm(RULE, raises, 1.0, 1.5, 2.0, signature_of(np.array([0, 1.0, 0, 0, -0.5, 0])))
    assert (len(raises), i) == (2, 1)
    # similarity 0: the old rule, one raise for every window
    every, _ = record_false_alarm(FeedbackRule(similarity=0.0), [], 1.0, 2.0, 0.0, signature=sig)
    assert every[0].signature == () and global_factor(RULE, every, 0.0) == pytest.approx(2.1)


def test_at_most_max_raises_are_kept() -> None:
    raises: list[ThresholdRaise] = []
    for k in range(MAX_RAISES + 2):
        v = np.zeros(2 * (MAX_RAISES + 2))
        v[k] = 1.0
        raises, _ = record_false_alarm(RULE, raises, 1.0, 1.2 + 0.1 * k, float(k), signature_of(v))
    assert len(raises) == MAX_RAISES and raises[-1].factor == pytest.approx((1.2 + 0.1 * (MAX_RAISES + 1)) * 1.05)


def test_signature_documents_round_trip_and_bad_ones_are_refused() -> None:
    r = ThresholdRaise(1.5, 10.0, 2, (0.8, 0.0, 0.6, 0.0), "a high")
    assert ThresholdRaise.from_doc(r.to_doc()) == r
    for sig in ([0.5, 0.5, 0.5], [-1.0, 0.0], [0.0, 0.0], ["x", 1.0], [True, 1.0]):
        assert ThresholdRaise.from_doc({"factor": 1.5, "since": 0, "signature": sig}) is None
