"""Operator commands on the scorer's devices (edge_runtime/service/commands.py): the verdict loop's rule (the last
verdict on an alert wins, a repeat changes nothing, the cap said), recalibrate's refusal. No broker (the deploy
kit's broker and ACL: tests/deploy/test_commands_acl.py).

The scorer of tests/edge_runtime/service/test_device_thresholds.py: a tiny ONNX model whose score is the window's
variance in training units; an episode of channels 0 and 1 at 5x their spread scores ~1.4 over a threshold of 1.0.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_runtime.service.commands import Commands
from edge_runtime.service.feedback_store import FeedbackStore, read_records
from edge_runtime.tools.feedback import label_rows
from tests.edge_runtime.schema_check import errors, load
from tests.edge_runtime.service.test_device_thresholds import T0, THR, make, series

REPLY = load("reply.schema.json")


class Loop:
    """A scorer with a device ``d1`` that raised and cleared alerts, and its command handler."""

    def __init__(self, tmp_path: Path, **over: Any) -> None:
        self.scorer, self.stats, self.link, self.feed = make(tmp_path, **over)
        self.state = tmp_path / "state"
        self.sent: list = []
        self.now = T0 + 10_000.0
        self.cmds = Commands("edgewatch/{instance}/command", "edgewatch/{instance}/reply", "gw1", self.scorer,
                             self.stats, FeedbackStore(self.state), self.sent.extend, clock=lambda: self.now)
        self.normal = series(4000, seed=4)

    def episode(self, channels: slice, t0: float) -> tuple[np.ndarray, list[str]]:
        """Feed an episode on ``channels`` (5x their spread); it and the ids of the alert's messages (raise first)."""
        x = self.normal[:400].copy()
        x[100:200, channels] *= 5.0
        n = len(self.link.docs("alerts/d1"))
        self.feed("d1", x, t0)
        ids = [a["alert_id"] for a in self.link.docs("alerts/d1")[n:]]
        assert len(ids) == 2, "one alert raised and cleared"
        return x, ids

    def verdict(self, alert_id: str, verdict: str) -> dict[str, Any]:
        self.now += 1.0
        reply = self.cmds.handle(json.dumps({"command": "feedback", "alert_id": alert_id, "verdict": verdict,
                                             "request_id": f"r{self.now}"}).encode())
        assert errors(reply, REPLY) == [], reply
        return reply

    def raises(self) -> list:
        return self.scorer.thresholds.devices["d1"].raises


def test_confirmed_after_a_false_alarm_withdraws_its_raise_and_the_episode_alerts_again(tmp_path: Path) -> None:
    loop = Loop(tmp_path)
    x, (raise_id, clear_id) = loop.episode(slice(0, 2), T0)
    fa = loop.verdict(raise_id, "false_alarm")
    assert fa["status"] == "accepted" and fa["change"] == "raised" and fa["threshold"] > 1.3 * THR
    undo = loop.verdict(clear_id, "confirmed")  # any message of the alert names its episode
    assert undo["status"] == "accepted" and undo["change"] == "withdrawn" and undo["alert_id"] == raise_id
    assert "withdrawn" in undo["reason"] and undo["threshold_before"] == pytest.approx(fa["threshold"])
    assert undo["threshold"] == THR and loop.raises() == []
    assert loop.stats.counts["feedback_withdrawn"] == 1
    assert [m.topic for m in loop.sent][-2:] == ["alerts/d1/state", "edgewatch/gw1/reply"]  # the lowered threshold
    assert "feedback" not in json.loads(loop.sent[-2].payload)
    loop.feed("d1", x, T0 + 1000)  # the confirmed episode again: it alerts again
    assert loop.stats.counts["alerts_raised"] == 2
    again = loop.verdict(raise_id, "false_alarm")  # and the last verdict wins once more
    assert again["change"] == "raised" and "replaces confirmed" in again["reason"]
    assert again["threshold"] == pytest.approx(fa["threshold"])


def test_a_withdrawal_leaves_the_other_false_alarms_as_if_it_had_never_been_sent(tmp_path: Path) -> None:
    alone = Loop(tmp_path / "alone")
    _, (b_alone, _) = alone.episode(slice(2, 4), T0)
    alone.now += 1.0  # at the time the second false alarm comes in the other run
    alone.verdict(b_alone, "false_alarm")
    loop = Loop(tmp_path / "both")
    _, (a, _) = loop.episode(slice(0, 2), T0)
    _, (b, _) = loop.episode(slice(2, 4), T0 + 1000)
    loop.verdict(a, "false_alarm")
    loop.verdict(b, "false_alarm")
    assert len(loop.raises()) == 2
    assert loop.verdict(a, "confirmed")["change"] == "withdrawn"
    assert loop.raises() == alone.raises()


def test_the_same_verdict_twice_on_an_episode_is_already_recorded_and_changes_nothing(tmp_path: Path) -> None:
    loop = Loop(tmp_path)
    _, (raise_id, clear_id) = loop.episode(slice(0, 2), T0)
    first = loop.verdict(raise_id, "false_alarm")
    state = loop.scorer.thresholds.fields("d1", loop.now)["feedback"]
    n_sent = len(loop.sent)
    for aid in (raise_id, clear_id):  # the alert's raise and its clear share the episode
        rep = loop.verdict(aid, "false_alarm")
        assert rep["status"] == "accepted" and rep["change"] == "repeated" and "already recorded" in rep["reason"]
        assert rep["threshold"] == rep["threshold_before"] == pytest.approx(first["threshold"])
    assert loop.scorer.thresholds.fields("d1", loop.now)["feedback"]["false_alarms"] == state["false_alarms"] == 1
    assert loop.raises()[0].since == state["since"]
    assert [m.topic for m in loop.sent[n_sent:]] == ["edgewatch/gw1/reply"] * 2  # no state: nothing changed
    assert loop.verdict(raise_id, "ack")["change"] == "recorded"
    ack = loop.verdict(clear_id, "ack")
    assert ack["change"] == "repeated"
    assert loop.stats.counts["feedback_false_alarms"] == 1 and loop.stats.counts["feedback_repeated"] == 3
    assert [r["verdict"] for r in read_records(loop.state)] == ["false_alarm", "ack"]


def test_an_ack_leaves_the_verdict_standing(tmp_path: Path) -> None:
    loop = Loop(tmp_path)
    _, (raise_id, _) = loop.episode(slice(0, 2), T0)
    fa = loop.verdict(raise_id, "false_alarm")
    ack = loop.verdict(raise_id, "ack")
    assert ack["change"] == "recorded" and "false_alarm verdict on alert" in ack["reason"] and "stands" in ack["reason"]
    assert ack["threshold"] == pytest.approx(fa["threshold"]) and len(loop.raises()) == 1


def test_an_alert_adopted_after_a_restart_remembers_its_verdict_from_the_log(tmp_path: Path) -> None:
    loop = Loop(tmp_path, state_dir=str(tmp_path / "state"))
    _, (raise_id, _) = loop.episode(slice(0, 2), T0)
    fa = loop.verdict(raise_id, "false_alarm")
    assert loop.scorer.thresholds.save()
    ep = loop.scorer.thresholds.devices["d1"].episodes[raise_id]
    again = Loop(tmp_path, state_dir=str(tmp_path / "state"))  # the next daemon: raises from devices.json
    again.scorer.thresholds.adopt_alert("d1", raise_id, ep.peak, ep.window_start, again.now)  # left raised
    rep = again.verdict(raise_id, "false_alarm")
    assert rep["change"] == "repeated" and again.stats.counts["feedback_false_alarms"] == 0
    assert again.raises()[0].false_alarms == 1
    undo = again.verdict(raise_id, "confirmed")  # its raise is folded into the restored ones: said so
    assert undo["change"] == "kept" and "given before this daemon started" in undo["reason"]
    assert undo["threshold"] == undo["threshold_before"] and len(again.raises()) == 1
    assert again.scorer.thresholds.fields("d1", again.now)["threshold_feedback"] == pytest.approx(fa["threshold"],
                                                                                                  rel=1e-3)
    assert [r["verdict"] for r in read_records(again.state)] == ["false_alarm", "confirmed"]


def test_the_export_labels_each_alert_as_the_daemon_applied_it(tmp_path: Path) -> None:
    """Both follow the last verdict on an alert: a withdrawn false alarm is confirmed data (anomaly 1) and its
    raise is gone; a standing false alarm is normal data (0) and its raise applies; an ack changes neither."""
    loop = Loop(tmp_path)
    _, (a, a_clear) = loop.episode(slice(0, 2), T0)
    _, (b, _) = loop.episode(slice(2, 4), T0 + 1000)
    _, (c, _) = loop.episode(slice(1, 3), T0 + 2000)
    for aid, verdict in ((a, "false_alarm"), (b, "confirmed"), (c, "false_alarm"), (a_clear, "confirmed"),
                         (b, "false_alarm"), (c, "ack"), (b, "false_alarm")):
        assert loop.verdict(aid, verdict)["status"] == "accepted"
    records = list(read_records(loop.state))
    e = loop.scorer.thresholds.devices["d1"]
    applied = {fa.alert_id for fa in e.standing}
    assert applied == {b, c} and len(e.raises) == 2
    for aid in (a, b, c):
        ep = e.episodes[aid]
        inside = [ep.window_start + 0.5 * (ep.window_end - ep.window_start)]
        label = label_rows(inside, records, "d1")[0]
        assert label == (0 if aid in applied else 1) and ep.verdict == ("false_alarm" if label == 0 else "confirmed")


def test_a_false_alarm_past_the_cap_says_so_and_the_episode_still_alerts(tmp_path: Path) -> None:
    loop = Loop(tmp_path, feedback_max_factor=1.2)  # the episode peaks ~1.4 x the base
    x, (raise_id, _) = loop.episode(slice(0, 2), T0)
    rep = loop.verdict(raise_id, "false_alarm")
    assert rep["change"] == "raised" and rep["capped"] is True and rep["threshold"] == pytest.approx(1.2 * THR)
    assert "cap reached" in rep["reason"] and "cannot raise the threshold for them higher" in rep["reason"]
    assert "edgewatch-train fit" in rep["reason"] and "--evidence" in rep["reason"]
    assert loop.stats.counts["feedback_capped"] == 1
    assert list(read_records(loop.state))[-1]["capped"] is True
    loop.feed("d1", x, T0 + 1000)  # the forgiven episode alerts again: the cap is the bound
    assert loop.stats.counts["alerts_raised"] == 2
    assert "cap reached" in loop.verdict(raise_id, "false_alarm")["reason"]  # repeated: still said
    assert loop.stats.counts["feedback_capped"] == 1


def test_a_false_alarm_within_the_cap_says_nothing_of_it(tmp_path: Path) -> None:
    loop = Loop(tmp_path)
    _, (raise_id, _) = loop.episode(slice(0, 2), T0)
    rep = loop.verdict(raise_id, "false_alarm")
    assert rep["capped"] is False and "cap" not in rep["reason"] and loop.stats.counts["feedback_capped"] == 0


def test_recalibrate_with_warmups_off_is_refused_saying_how_to_turn_them_on(tmp_path: Path) -> None:
    loop = Loop(tmp_path)
    loop.episode(slice(0, 2), T0)
    rep = loop.cmds.handle(b'{"command": "recalibrate", "device": "d1"}')
    assert rep["status"] == "refused" and "warm-ups are off" in rep["reason"]
    assert "set input.warmup" in rep["reason"] and "restart the daemon" in rep["reason"]
    assert loop.stats.counts["commands_refused"] == 1
