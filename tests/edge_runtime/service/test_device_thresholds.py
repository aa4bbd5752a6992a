"""Per-device thresholds in the scorer: warm-up calibration, a false alarm's raise, persistence. No broker.

A real (tiny) ONNX model whose score is the window's variance in training units
(tests/edge_runtime/onnx_models.py); messages go through Ingest -> InlineScoring -> Scorer; a fake link records.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.config import build_config
from edge_runtime.pipeline.alerts import AlertTracker
from edge_runtime.pipeline.hysteresis import AlertPolicy
from edge_runtime.pipeline.stats import Stats
from edge_runtime.service.ingest import Ingest
from edge_runtime.service.model import load_model
from edge_runtime.service.publisher import Publisher
from edge_runtime.service.scorer import InlineScoring, Scorer
from tests.edge_runtime.onnx_models import make_metadata, series, write_model
from tests.edge_runtime.schema_check import errors, load

W, HOP, THR = 8, 4, 1.0


class FakeLink:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    def publish(self, topic: str, payload: str | bytes, qos: int = 1, retain: bool = False, bulk: bool = False) -> bool:
        self.sent.append((topic, json.loads(payload)))
        return True

    def docs(self, topic: str) -> list[dict]:
        return [d for t, d in self.sent if t == topic]


def make(tmp_path: Path, **over):
    path = tmp_path / "m.onnx"
    if not path.exists():
        write_model(path, make_metadata(window=W, hop=HOP, threshold=THR))
    cfg = build_config(None, {"path": str(path), "instance": "gw1", "raise_after": 2, "clear_after": 2,
                              "queue_windows": 100000, "update_interval_s": 0.0, **over})
    model = load_model(path)
    stats = Stats()
    ingest = Ingest(cfg, model, stats)
    # raise/clear pairs only: updates while raised (schema 2) are tested in test_alerts and test_alert_detail
    tracker = AlertTracker(AlertPolicy(cfg.raise_after, cfg.clear_after, cfg.clear_ratio, 2,
                                       update_interval_s=cfg.update_interval_s), "gw1")
    scorer = Scorer(cfg, model, ingest, tracker, stats)
    link = FakeLink()
    inline = InlineScoring(cfg, scorer, Publisher(link))
    ingest.put = inline.put

    def feed(device: str, x: np.ndarray, t0: float) -> None:
        for i, row in enumerate(x):
            ingest.handle(f"sensors/{device}/data", json.dumps({"ts": t0 + i, "values": row.tolist()}).encode())
        inline.drain()

    return scorer, stats, link, feed


T0 = 1_700_000_000.0
NOISY = 5.0  # a site whose signals spread 5x the model's training data: scores ~25x, all above the model's threshold


def test_without_a_warmup_a_noisier_site_alarms(tmp_path: Path) -> None:
    scorer, stats, link, feed = make(tmp_path)
    feed("d1", NOISY * series(2000, seed=1), T0)
    assert stats.counts["alerts_raised"] >= 1


def test_a_warmup_calibrates_a_noisier_site_and_then_detects_a_fault(tmp_path: Path) -> None:
    scorer, stats, link, feed = make(tmp_path, warmup="1200")
    x = NOISY * series(6000, seed=1)
    feed("d1", x[:1300], T0)
    assert stats.counts["alerts_raised"] == 0 and stats.counts["calibrations"] == 1
    state = link.docs("alerts/d1/state")[-1]
    assert errors(state, load("state.schema.json")) == []
    cal = state["calibration"]
    assert cal["phase"] == "calibrated" and cal["windows"] == (1200 - W) // HOP + 1
    assert state["threshold"] == state["threshold_base"] == cal["threshold"] > 3 * THR
    feed("d1", x[1300:5000], T0 + 1300)  # more of the same normal data: no alarm
    assert stats.counts["alerts_raised"] == 0
    fault = x[5000:].copy()
    fault[200:] *= 4.0
    feed("d1", fault, T0 + 5000)
    assert stats.counts["alerts_raised"] == 1
    assert link.docs("alerts/d1")[0]["threshold"] == pytest.approx(cal["threshold"])


def test_a_warmup_over_a_stopped_machine_waits_for_running_data(tmp_path: Path) -> None:
    scorer, stats, link, feed = make(tmp_path, warmup="400")
    feed("d1", np.zeros((1000, 4), np.float32) + 3.0, T0)
    assert stats.counts["calibrations"] == 0 and scorer.thresholds.before("d1", 0)[1]  # still warming
    feed("d1", series(500, seed=2), T0 + 1000)
    assert stats.counts["calibrations"] == 1
    assert link.docs("alerts/d1/state")[-1]["calibration"]["stopped_windows"] >= 240


def test_a_warmup_far_above_the_model_is_refused(tmp_path: Path) -> None:
    scorer, stats, link, feed = make(tmp_path, warmup="200", warmup_max_factor=5.0)
    feed("d1", 20.0 * series(2000, seed=3), T0)  # scores ~400x the model's threshold
    assert stats.counts["calibrations_refused"] == 1 and stats.counts["alerts_raised"] >= 1
    state = link.docs("alerts/d1/state")[-1]
    assert state["calibration"]["phase"] == "refused" and state["threshold"] == THR


def _false_alarm_on_channels_0_1(tmp_path: Path, **over):
    """A device whose episode (channels 0 and 1 at 5x their spread: scores ~1.4, above the model's 1.0) was
    judged a false alarm; (scorer, stats, link, feed, normal data, the episode, the verdict's result)."""
    scorer, stats, link, feed = make(tmp_path, **over)
    normal = series(4000, seed=4)
    episode = normal[:400].copy()
    episode[100:200, :2] *= 5.0
    feed("d1", episode, T0)
    raised = link.docs("alerts/d1")
    assert [a["state"] for a in raised] == ["raised", "cleared"]
    found = scorer.thresholds.find(raised[0]["alert_id"], "")
    assert found is not None and found[0] == "d1"
    out = scorer.thresholds.verdict(*found, "false_alarm", time.time())
    return scorer, stats, link, feed, normal, episode, (out.before, out.after, out.applies)


def test_a_false_alarm_raises_the_threshold_above_its_peak_and_the_episode_replayed_raises_nothing(
        tmp_path: Path) -> None:
    scorer, stats, link, feed, normal, episode, (before, after, applies) = _false_alarm_on_channels_0_1(tmp_path)
    ep = scorer.thresholds.devices["d1"].episodes[link.docs("alerts/d1")[0]["alert_id"]]
    assert before == THR and after == pytest.approx(ep.peak * 1.05)
    assert applies.startswith("windows like it (") and _named(applies) == {"Accelerometer1RMS", "Pressure"}
    feed("d1", episode, T0 + 1000)  # the same episode again
    assert stats.counts["alerts_raised"] == 1
    fault = normal[1000:1400].copy()
    fault[100:, :2] *= 12.0  # a real fault on the same channels, far above the peak
    feed("d1", fault, T0 + 2000)
    assert stats.counts["alerts_raised"] == 2
    state = link.docs("alerts/d1/state")[-1]
    assert errors(state, load("state.schema.json")) == []
    assert state["threshold"] == THR and state["threshold_feedback"] == pytest.approx(after, rel=1e-3)
    assert _named(state["feedback"]["raises"][0]["channels"]) == {"Accelerometer1RMS", "Pressure"}


def _named(label: str) -> set[str]:
    """The channel names of a signature's label (``windows like it (Pressure, Accelerometer1RMS low)``)."""
    inner = label.split("(", 1)[-1].rstrip(")")
    return {part.strip().removesuffix(" high").removesuffix(" low") for part in inner.split(",")}


@pytest.mark.parametrize(("similarity", "raised"), [(0.8, True), (0.0, False)])
def test_a_fault_on_other_channels_is_judged_at_the_base_threshold(tmp_path: Path, similarity: float,
                                                                    raised: bool) -> None:
    """The raise is for windows like the false alarm: a fault on channels 2 and 3 (scores ~1.4, below the
    raised threshold) still raises; with feedback_similarity 0 (the raise for every window) it does not."""
    scorer, stats, link, feed, normal, _, (_, after, applies) = _false_alarm_on_channels_0_1(
        tmp_path, feedback_similarity=similarity)
    assert (applies == "every window") if similarity == 0 else _named(applies) == {"Accelerometer1RMS", "Pressure"}
    fault = normal[2000:2400].copy()
    fault[100:, 2:] *= 5.0
    feed("d1", fault, T0 + 3000)
    new = [a for a in link.docs("alerts/d1")[2:] if a["state"] == "raised"]
    assert bool(new) == raised
    if raised:
        assert new[0]["threshold"] == THR and new[0]["score"] < after
        assert {t["name"] for t in new[0]["top_channels"][:2]} == {"Temperature", "Volume Flow RateRMS"}


def test_calibrations_and_raises_survive_a_restart_in_the_state_file(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    scorer, stats, link, feed = make(tmp_path, warmup="400", state_dir=str(state_dir))
    feed("d1", NOISY * series(500, seed=5), T0)
    thr = scorer.thresholds.threshold("d1", time.time())
    assert thr > THR and scorer.thresholds.save()
    again, stats2, link2, feed2 = make(tmp_path, warmup="400", state_dir=str(state_dir))
    assert again.thresholds.threshold("d1", time.time()) == pytest.approx(thr)
    feed2("d1", NOISY * series(200, seed=6), T0 + 600)  # no second warm-up: scored at once
    assert stats2.counts["calibrations"] == 0 and not again.thresholds.before("d1", 0)[1]


def test_a_retained_state_restores_a_calibration_without_a_state_file(tmp_path: Path) -> None:
    scorer, stats, link, feed = make(tmp_path, warmup="400")
    feed("d1", NOISY * series(500, seed=5), T0)
    state = link.docs("alerts/d1/state")[-1]
    again, _, _, _ = make(tmp_path, warmup="400")
    again.adopt("alerts/d1/state", json.dumps(state).encode())
    assert again.thresholds.threshold("d1", time.time()) == pytest.approx(state["threshold"])


def test_a_verdict_may_name_any_message_of_the_alert_and_updates_open_no_episode(tmp_path: Path) -> None:
    scorer, stats, link, feed = make(tmp_path, update_interval_s=1.0)
    x = series(600, seed=7)
    x[100:250, :] *= 4.0  # a warning...
    x[250:400, :] *= 40.0  # ...that turns critical while raised: updates
    feed("d1", x, T0)
    msgs = link.docs("alerts/d1")
    assert "update" in [m.get("event") for m in msgs]
    raises = [m["alert_id"] for m in msgs if m.get("event") == "raise"]
    assert list(scorer.thresholds.devices["d1"].episodes) == raises  # one episode per raise, none per update
    for m in msgs:
        found = scorer.thresholds.find(m["alert_id"], "")
        assert found is not None and found[1].alert_id == m["raised_alert_id"]
    last = scorer.thresholds.devices["d1"].episodes[raises[-1]]
    assert last.peak >= max(m["score"] for m in msgs if m["raised_alert_id"] == raises[-1])


def test_a_sustained_shift_publishes_a_drift_notice_and_leaves_the_threshold_alone(tmp_path: Path) -> None:
    scorer, stats, link, feed = make(tmp_path, warmup="800", drift_window=40, drift_sustain=2)
    x = series(6000, seed=8)
    feed("d1", x[:1000], T0)  # warm-up, then normal
    thr = scorer.thresholds.threshold("d1", time.time())
    assert link.docs("alerts/d1/drift") == []
    feed("d1", 1.6 * x[1000:2000], T0 + 1000)  # scores ~2.5x the calibrated ones: a drift
    notices = link.docs("alerts/d1/drift")
    assert [n["state"] for n in notices] == ["drift"] and stats.counts["drift_notices"] == 1
    assert errors(notices[0], load("drift.schema.json")) == [] and notices[0]["ratio"] > 1.5
    assert scorer.thresholds.threshold("d1", time.time()) == thr and notices[0]["threshold"] == pytest.approx(thr)
    feed("d1", x[2000:3000], T0 + 2000)
    assert [n["state"] for n in link.docs("alerts/d1/drift")] == ["drift", "returned"]


def test_past_max_devices_the_least_recent_is_evicted_but_its_calibration_kept(tmp_path: Path) -> None:
    scorer, stats, link, feed = make(tmp_path, warmup="400", max_devices=2)
    feed("a", NOISY * series(500, seed=1), T0)
    thr_a = scorer.thresholds.threshold("a", 0.0)
    feed("b", series(500, seed=2), T0)
    scorer.thresholds.threshold("b", 0.0)
    scorer.thresholds.threshold("c", 0.0)  # a third device: "a" (least recent) leaves the table...
    assert "a" not in scorer.thresholds.devices
    assert scorer.thresholds.threshold("a", 0.0) == pytest.approx(thr_a)  # ...its calibration comes back with it


def test_recalibrating_an_unknown_device_is_refused(tmp_path: Path) -> None:
    from edge_runtime.service.commands import Commands
    from edge_runtime.service.feedback_store import FeedbackStore

    scorer, stats, link, feed = make(tmp_path, warmup="400")
    sent: list = []
    cmds = Commands("edgewatch/{instance}/command", "edgewatch/{instance}/reply", "gw1", scorer, stats,
                    FeedbackStore(None), sent.extend)
    assert "unknown" in cmds.handle(b'{"command": "recalibrate", "device": "nope"}')["reason"]
    feed("d1", series(500, seed=3), T0)
    assert cmds.handle(b'{"command": "recalibrate", "device": "d1"}')["status"] == "accepted"
    assert scorer.thresholds.before("d1", 0.0)[1]  # warming up again
    assert [m.topic for m in sent][-2:] == ["alerts/d1/state", "edgewatch/gw1/reply"]


def test_a_raise_for_windows_like_a_false_alarm_survives_a_restart(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    scorer, stats, link, feed, normal, episode, (_, after, _) = _false_alarm_on_channels_0_1(
        tmp_path, state_dir=str(state_dir))
    assert scorer.thresholds.save()
    kept = json.loads((state_dir / "devices.json").read_text())["devices"]["d1"]["feedback"]["raises"]
    assert len(kept) == 1 and len(kept[0]["signature"]) == 8
    retained = scorer.state_message("d1").payload  # what a command's reply publishes
    for how in ("state file", "retained state"):
        again, stats2, link2, feed2 = make(tmp_path, state_dir=str(state_dir) if how == "state file" else "")
        if how == "retained state":
            again.adopt("alerts/d1/state", retained.encode())
        feed2("d1", episode, T0 + 5000)  # the forgiven episode: nothing; the raise is for windows like it only
        assert stats2.counts["alerts_raised"] == 0, how
        assert again.thresholds.threshold("d1", time.time()) == THR
        assert again.thresholds.fields("d1", time.time())["threshold_feedback"] == pytest.approx(after, rel=1e-3)


def test_an_older_daemons_raise_applies_to_every_window(tmp_path: Path) -> None:
    state = {"schema_version": 1, "device": "d1", "state": "cleared", "seq": 2, "instance": "gw1",
             "feedback": {"factor": 2.0, "since": time.time(), "false_alarms": 1, "factor_now": 2.0}}
    scorer, stats, link, feed = make(tmp_path)
    scorer.adopt("alerts/d1/state", json.dumps(state).encode())
    assert scorer.thresholds.threshold("d1", time.time()) == pytest.approx(2.0 * THR, rel=1e-3)
