"""The false-alarm threshold rule and the command documents (edge_runtime/pipeline/feedback.py)."""

from __future__ import annotations

import json

import pytest

from edge_runtime.pipeline.feedback import (
    CommandError,
    FeedbackRule,
    ThresholdRaise,
    after_false_alarm,
    current_factor,
    parse_command,
    reply_doc,
    request_id_of,
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
