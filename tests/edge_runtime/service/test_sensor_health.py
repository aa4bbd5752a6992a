"""The ingest path's sensor health (service/sensor_health.py) without a broker: stale devices, the window mask,
degraded devices, config overrides checked against the model, a reload that keeps raised alerts."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.config import Config, ConfigError
from edge_runtime.pipeline.stats import Stats
from edge_runtime.service.ingest import Ingest
from edge_runtime.service.model import load_model
from tests.edge_runtime.onnx_models import write_health_model
from tests.edge_runtime.schema_check import errors, load

T0 = 1_700_000_000.0
CH = ["a", "b", "c", "d"]


@pytest.fixture
def model(tmp_path: Path):
    return load_model(write_health_model(tmp_path / "m.onnx", CH), provider="cpu")


def _ingest(model, **cfg) -> tuple[Ingest, list, list]:
    sent: list = []
    put: list = []
    ing = Ingest(Config(**cfg).validate(), model, Stats())
    ing.send = sent.extend
    ing.put = lambda item: put.append(item) or 0
    return ing, sent, put


def _feed(ing: Ingest, device: str, rows: np.ndarray, start: int = 0) -> None:
    for i, row in enumerate(rows.tolist()):
        vals = [None if v != v else v for v in row]
        ing.handle(f"sensors/{device}/data", json.dumps({"ts": T0 + start + i, "values": vals}).encode())


def _normal(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (n, len(CH))).clip(-4, 4)


def test_a_window_leaves_a_faulty_channel_out_and_a_device_past_the_share_is_degraded(model) -> None:
    ing, sent, put = _ingest(model)
    x = _normal(40)
    x[20:, 1] = np.nan  # b drops out for good
    _feed(ing, "p", x)
    masks = [None if it.excluded is None else it.excluded.tolist() for it in put]
    assert masks[0] is None  # before the dropout
    assert masks[-1] == [False, True, False, False]  # past the fill limit of 2: b left out
    kinds = [json.loads(m.payload)["kind"] for m in sent if m.topic == "health/p/alerts"]
    assert kinds == ["missing"]
    assert ing.stats.counts["values_filled"] == 20 and ing.stats.missing == {"null": 20}
    y = _normal(40, seed=1)
    y[10:, :3] = np.nan  # three of four gone: more than half
    n_before = len(put)
    _feed(ing, "q", y)
    q_put = sum(it.n for it in put[n_before:])
    assert q_put <= 2  # the windows before the dropout passed the fill limit
    assert q_put + ing.stats.counts["windows_degraded"] == (40 - 8) // 4 + 1  # the rest: counted, not scored
    health = [json.loads(m.payload) for m in sent if m.topic == "health/q"]
    assert health[-1]["state"] == "degraded" and health[-1]["degraded"] is True


def test_a_quiet_device_is_stale_once_and_clears_when_it_sends_again(model) -> None:
    ing, sent, _ = _ingest(model)
    _feed(ing, "p", _normal(10))
    ring = ing.store.devices["p"]
    ing.check_stale(ring.last_seen + 4.0)
    assert not [m for m in sent if m.topic == "health/p/alerts"]
    ing.check_stale(ring.last_seen + 6.0)
    ing.check_stale(ring.last_seen + 7.0)
    stale = [json.loads(m.payload) for m in sent if m.topic == "health/p/alerts"]
    assert [(a["kind"], a["state"], a["channel"]) for a in stale] == [("stale", "raised", None)]
    assert stale[0]["since"] == T0 + 9
    _feed(ing, "p", _normal(10, seed=2), start=10)
    again = [json.loads(m.payload) for m in sent if m.topic == "health/p/alerts"]
    assert [(a["kind"], a["state"]) for a in again] == [("stale", "raised"), ("stale", "cleared")]


def test_channel_limits_override_the_model_and_unknown_names_stop_the_start(model) -> None:
    ing, sent, _ = _ingest(model, channel_limits={"a": {"max": 0.5, "margin": 0.0}})
    x = _normal(20) * 0.1
    x[10:, 0] = 1.0  # within the model's range, above the override
    _feed(ing, "p", x)
    kinds = [(json.loads(m.payload)["channel"], json.loads(m.payload)["kind"]) for m in sent
             if m.topic == "health/p/alerts"]
    assert kinds == [("a", "out_of_range")]
    with pytest.raises(ConfigError, match="health.channel_limits: 'zz' is not one of the model's channels"):
        _ingest(model, channel_limits={"zz": {"max": 1.0}})


def test_a_reload_with_the_same_channels_keeps_raised_sensor_alerts(model) -> None:
    ing, sent, _ = _ingest(model)
    x = _normal(30)
    x[10:, 2] = 9.0  # out of range
    _feed(ing, "p", x)
    assert ing.health is not None and ing.health.alerts.faults("p")[0]["kind"] == "out_of_range"
    ing.configure(model, keep_windows=True)
    assert ing.health.alerts.faults("p")[0]["kind"] == "out_of_range"


def test_checks_off_restores_the_old_decoding(model) -> None:
    ing, sent, put = _ingest(model, sensor_checks=False)
    assert ing.health is None
    ing.handle("sensors/p/data", b'{"ts": 1700000000, "values": [1, null, 3, 4]}')
    assert ing.stats.drops == {"non_numeric": 1} and sent == []
    assert replace(Config(), sensor_checks=False).validate().sensor_checks is False


def test_with_checks_off_a_quiet_device_is_still_found_once_after_the_stale_limit(model) -> None:
    """No stale alert, but the caller (the evidence of a cleared alert waiting for data that will not come) hears
    of it after the same delay as with the checks on (the model's 5 s here), once until it sends again."""
    ing, sent, _ = _ingest(model, sensor_checks=False)
    _feed(ing, "p", _normal(10))
    seen = ing.store.devices["p"].last_seen
    assert ing.stale_limit_s() == 5.0
    assert ing.check_stale(seen + 4.0) == [] and ing.check_stale(seen + 6.0) == ["p"]
    assert ing.check_stale(seen + 7.0) == []  # once
    _feed(ing, "p", _normal(10, seed=2), start=10)
    seen = ing.store.devices["p"].last_seen
    assert ing.check_stale(seen + 1.0) == [] and ing.check_stale(seen + 6.0) == ["p"]  # quiet again
    assert sent == []  # and no alert or health document
    ing, _, _ = _ingest(model, sensor_checks=False, stale_after_s=2.0)
    assert ing.stale_limit_s() == 2.0


def _topic(sent: list, topic: str) -> list[dict]:
    return [json.loads(m.payload) for m in sent if m.topic == topic]


def test_most_channels_out_of_range_at_once_is_one_out_of_distribution_report_not_sensor_faults(model) -> None:
    ing, sent, put = _ingest(model)
    x = _normal(200)
    x[:, :3] += 20.0  # three of four channels far outside the training range, from the start: another operating point
    x[120:, :3] -= 20.0  # back where the model was trained
    x[180:, 3] = 30.0  # then one channel alone leaves the range: a sensor fault again
    _feed(ing, "p", x)
    operating = _topic(sent, "alerts/p/operating")
    assert [d["state"] for d in operating] == ["out_of_distribution", "running"]
    assert operating[0]["since"] == T0 + 2  # the range hold (3 samples)
    assert operating[1]["since"] == T0 + 120 and operating[1]["scored"] is True
    assert "3 of 4 channels outside the range seen in training" in operating[0]["reason"]
    sensor = [(d["state"], d["kind"], d["channel"]) for d in _topic(sent, "health/p/alerts")]
    assert sensor == [("raised", "out_of_range", "d")]  # none for a, b, c: they were never failing sensors
    d = _topic(sent, "health/p/alerts")[0]  # dated back to the first sample outside the range (the hold is 3)
    assert (d["since"], d["at"]) == (T0 + 180, T0 + 182)
    assert d["last_good_value"] == pytest.approx(x[179, 3]) and d["last_good_time"] == T0 + 179
    assert ing.stats.counts["out_of_distribution"] == 1
    not_scored = ing.stats.counts["windows_out_of_distribution"]
    assert not_scored >= (120 - 8) // 4 and ing.stats.counts["windows_degraded"] == 0
    assert sum(it.n for it in put) + not_scored == (200 - 8) // 4 + 1  # the rest scored, d masked at the end
    health = _topic(sent, "health/p")
    assert any(h["state"] == "out_of_distribution" and h["out_of_distribution"] for h in health)
    assert health[-1]["out_of_distribution"] is False


def test_a_channel_raised_out_of_range_is_cleared_when_the_device_turns_out_of_distribution(model) -> None:
    ing, sent, _ = _ingest(model)
    x = _normal(60)
    x[6:, 0] += 20.0  # a first, alone, before the device ran in range for two windows (16 samples): a sensor fault
    x[12:, 1:3] += 20.0  # then b and c too: the plant is elsewhere
    _feed(ing, "p", x)
    sensor = [(d["state"], d["channel"], d.get("reason", "")) for d in _topic(sent, "health/p/alerts")]
    assert sensor == [("raised", "a", ""), ("cleared", "a", "out_of_distribution")]
    assert [d["state"] for d in _topic(sent, "alerts/p/operating")] == ["out_of_distribution"]
    assert [errors(d, load("sensor_alert.schema.json")) for d in _topic(sent, "health/p/alerts")] == [[], []]


def test_a_device_that_ran_in_range_and_leaves_it_on_most_channels_is_scored_as_a_process_excursion(model) -> None:
    """Not an unknown operating point: the process moved (a trip, a burst line). The windows stay scored, whole,
    so the process alert raises and names the channels; the channels are not reported as failing sensors."""
    ing, sent, put = _ingest(model)
    x = _normal(140)
    x[30:, 0] += 20.0  # a alone, after 30 samples in range: a sensor fault
    x[40:90, 1:3] += 20.0  # then b and c too, for 50 samples: the process left the range
    x[90:, 0] -= 20.0
    x[120:, 3] = 30.0  # back in range for 30 samples (> 16), then d alone: a sensor fault again
    _feed(ing, "p", x)
    sensor = [(d["state"], d["channel"], d.get("reason", "")) for d in _topic(sent, "health/p/alerts")]
    assert sensor == [("raised", "a", ""), ("cleared", "a", "process_excursion"), ("raised", "d", "")]
    assert [errors(d, load("sensor_alert.schema.json")) for d in _topic(sent, "health/p/alerts")] == [[], [], []]
    assert _topic(sent, "alerts/p/operating") == []  # the device runs: no operating state changes
    assert ing.stats.counts["range_excursions"] == 1 and ing.stats.counts["out_of_distribution"] == 0
    assert ing.stats.counts["windows_out_of_distribution"] == 0 and ing.stats.counts["windows_degraded"] == 0
    assert sum(it.n for it in put) == (140 - 8) // 4 + 1  # every window scored
    inside = [it for it in put if it.t_end[0] >= T0 + 42 and it.t_end[-1] <= T0 + 89]
    assert inside and all(it.excluded is None or not it.excluded.any() for it in inside)  # with a, b and c
    assert all(h["out_of_distribution"] is False for h in _topic(sent, "health/p"))
    ing, sent, put = _ingest(model, range_excludes=True)  # out-of-range channels left out: degraded instead
    _feed(ing, "p", x)
    assert ing.stats.counts["range_excursions"] == 1 and ing.stats.counts["windows_degraded"] > 0
    assert _topic(sent, "alerts/p/operating") == [] and ing.stats.counts["windows_out_of_distribution"] == 0


def test_a_device_that_stopped_must_run_in_range_again_before_an_excursion(model) -> None:
    """After a stop the machine may start at another operating point: far out from its restart is
    out_of_distribution again, not an excursion."""
    ing, sent, _ = _ingest(model)
    x = _normal(40)
    _feed(ing, "p", x)
    assert ing.health is not None
    ing.health.state_changed("p", "stopped", T0 + 40, "stopped", ing.store.devices["p"])
    ing.health.state_changed("p", "running", T0 + 50, "running", ing.store.devices["p"])
    y = _normal(40, seed=3)
    y[:, :3] += 20.0
    _feed(ing, "p", y, start=50)
    assert [d["state"] for d in _topic(sent, "alerts/p/operating")] == ["out_of_distribution"]
    assert ing.stats.counts["range_excursions"] == 0


def test_a_spike_shorter_than_the_range_hold_stays_in_the_process_score(model) -> None:
    ing, sent, put = _ingest(model)
    x = _normal(40)
    x[20:22, 2] = 40.0  # two samples far out: a process spike
    _feed(ing, "p", x)
    assert not _topic(sent, "health/p/alerts")
    assert all(it.excluded is None for it in put)  # scored with c, so the process alert can see it


def test_an_out_of_range_channel_stays_in_the_process_score_by_default(model) -> None:
    """An out-of-range value is a real reading (a process excursion beyond the training range, or a failed
    sensor): by default it stays in the process score, so the process alert sees it and names it, and its
    out_of_range sensor alert is raised all the same."""
    ing, sent, put = _ingest(model)
    y = _normal(40)
    y[22:, 2] = 40.0 + np.arange(18) * 0.5  # out of range for good, and moving
    _feed(ing, "q", y)
    assert all(it.excluded is None for it in put) and sum(it.n for it in put) == (40 - 8) // 4 + 1
    assert [json.loads(m.payload)["kind"] for m in sent if m.topic == "health/q/alerts"] == ["out_of_range"]
    assert ing.stats.counts["windows_degraded"] == 0
    # frozen out there (a failed sensor's gross value): left out once it is flat past its stuck limit (6 here)
    ing, sent, put = _ingest(model)
    y[22:, 2] = 40.0
    _feed(ing, "r", y)
    masks = {int(it.t_end[0] - T0): None if it.excluded is None else it.excluded.tolist() for it in put}
    assert masks[27] is None and all(masks[t] == [False, False, True, False] for t in (31, 35, 39)), masks


def test_with_range_excludes_a_range_run_shorter_than_the_hold_leaves_the_channel_out(model) -> None:
    """health.range_excludes: W 8, hop 4: windows end at samples 7, 11, ..., 23, 27. A run out of range that
    has not yet lasted range_hold (3) samples when a window is cut leaves that channel out of the window: a run
    that goes on is a sensor fault whose first samples must not raise a process alert, one that ends was a
    spike, and the next window, which still spans it, is scored with the channel."""
    ing, sent, put = _ingest(model, range_excludes=True)
    x = _normal(40)
    x[22:24, 2] = 40.0  # a two-sample spike ending at a window's last sample
    _feed(ing, "p", x)
    masks = {int(it.t_end[0] - T0): None if it.excluded is None else it.excluded.tolist() for it in put}
    assert masks[23] == [False, False, True, False] and masks[19] is None and masks[27] is None
    assert not _topic(sent, "health/p/alerts")  # no sensor fault
    ing, sent, put = _ingest(model, range_excludes=True)
    y = _normal(40)
    y[22:, 2] = 40.0  # out of range for good: masked from the first window cut during the run on
    _feed(ing, "q", y)
    masks = {int(it.t_end[0] - T0): None if it.excluded is None else it.excluded.tolist() for it in put}
    assert masks[19] is None and all(masks[t] == [False, False, True, False] for t in (23, 27, 31, 35, 39))
    assert [json.loads(m.payload)["kind"] for m in sent if m.topic == "health/q/alerts"] == ["out_of_range"]


def test_with_a_warm_up_the_site_range_is_learnt_first_then_checked(model) -> None:
    ing, sent, put = _ingest(model, warmup="60")
    x = _normal(200)
    x[:, :3] += 20.0  # another site: three channels outside the training range, all the time
    x[150:160, 3] = 500.0  # later a gross value on d, for 10 samples: still a sensor fault
    _feed(ing, "p", x)
    assert not _topic(sent, "alerts/p/operating")  # not out_of_distribution: its own range was learnt
    assert ing.stats.counts["ranges_learnt"] == 1 and ing.stats.counts["windows_out_of_distribution"] == 0
    sensor = [(d["state"], d["kind"], d["channel"]) for d in _topic(sent, "health/p/alerts")]
    assert sensor == [("raised", "out_of_range", "d"), ("cleared", "out_of_range", "d")]
    assert sum(it.n for it in put) == (200 - 8) // 4 + 1  # every window handed on (d in the score: range_excludes off)
    assert ing.stats.counts["windows_degraded"] == 0


def test_a_device_whose_messages_are_all_dropped_is_one_rejected_alert_until_one_decodes(model) -> None:
    """Wrong channels (a firmware update, a wrong model): the drops are counted as before, and the device is
    also seen as a fault of its own on health/{device}/alerts, not only in counters and the log."""
    ing, sent, put = _ingest(model)
    for i in range(8):
        ing.handle("sensors/w/data", json.dumps({"ts": T0 + i, "values": [1.0, 2.0, 3.0]}).encode())
        if i == 3:
            assert _topic(sent, "health/w/alerts") == []  # four in a row: not yet
    _feed(ing, "ok", _normal(10))  # another device carries on
    (raised,) = _topic(sent, "health/w/alerts")
    assert (raised["kind"], raised["state"], raised["channel"]) == ("rejected", "raised", None)
    assert raised["detail"] == "wrong_channels: expected 4 values per sample, got 3"
    assert ing.stats.drops == {"wrong_channels": 8} and ing.stats.sensor_faults == {"rejected": 1}
    health = _topic(sent, "health/w")  # retained: the dashboard's health column shows it
    assert health[-1]["state"] == "fault" and health[-1]["faults"][0]["kind"] == "rejected"
    _feed(ing, "w", _normal(3), start=8)  # fixed
    docs = _topic(sent, "health/w/alerts")
    assert [(d["kind"], d["state"]) for d in docs] == [("rejected", "raised"), ("rejected", "cleared")]
    assert docs[1]["raised_alert_id"] == raised["alert_id"] and docs[1]["seq"] > raised["seq"]
    assert [errors(d, load("sensor_alert.schema.json")) for d in docs] == [[], []]
    assert _topic(sent, "health/w")[-1]["state"] == "ok"
    assert all(errors(h, load("health.schema.json")) == [] for h in _topic(sent, "health/w"))
    assert not _topic(sent, "health/ok/alerts") and sum(it.n for it in put) == (10 - 8) // 4 + 1
    ing.handle("sensors/w/data", b"not json")  # one bad message after good ones: counted, no alert
    assert sum(ing.stats.drops.values()) == 9 and len(_topic(sent, "health/w/alerts")) == 2
    assert ing.health is not None and ing.health.alerts.faults("w") == []


def test_rejected_devices_are_bounded_and_cleared_by_a_reload_that_changes_the_channels(model, tmp_path: Path) -> None:
    ing, sent, _ = _ingest(model, max_devices=3)
    heard: list[str] = []
    forgotten: list[tuple[str, str]] = []
    ing.on_heard, ing.on_forget = heard.append, lambda dev, why: forgotten.append((dev, why))
    for d in range(10):
        for i in range(5):
            ing.handle(f"sensors/r{d}/data", json.dumps({"ts": T0 + i, "values": [1.0]}).encode())
    assert ing.health is not None and list(ing.health.rejects) == ["r7", "r8", "r9"]  # the most recent ones
    assert heard == [f"r{d}" for d in range(10)]  # each from the message that raised its rejected alert
    assert forgotten == [(f"r{d}", "evicted") for d in range(7)] and ing.health.let_go == []  # the daemon forgets them
    docs = [json.loads(m.payload) for m in sent if m.topic.endswith("/alerts")]
    assert {d["device"] for d in docs if d["state"] == "raised"} == {f"r{d}" for d in range(10)}
    # those that never decoded and are followed no more are let go (the alert state stays bounded)
    assert [(d["device"], d.get("reason")) for d in docs if d["state"] == "cleared"] == [
        (f"r{d}", "evicted") for d in range(7)]
    assert ing.health.rejected_raised == {"r7", "r8", "r9"} and len(ing.health.alerts.devices) == 3
    gone = [m for m in sent if m.topic in {f"health/r{d}" for d in range(7)} and not m.payload]
    assert len(gone) == 7 and all(m.retain for m in gone)  # their retained health documents removed too
    other = load_model(write_health_model(tmp_path / "m5.onnx", CH + ["e"]), provider="cpu")
    ing.configure(other, keep_windows=False)
    cleared = [json.loads(m.payload) for m in sent if m.topic.endswith("/alerts")][len(docs):]
    assert [(d["device"], d["state"], d.get("reason")) for d in cleared] == [
        (f"r{d}", "cleared", "reload") for d in (7, 8, 9)]


def test_a_rejected_device_pushed_out_by_others_still_clears_with_its_first_good_message(model) -> None:
    ing, sent, _ = _ingest(model, max_devices=3)
    _feed(ing, "w", _normal(10))
    for i in range(5):
        ing.handle("sensors/w/data", json.dumps({"ts": T0 + 10 + i, "values": [1.0]}).encode())
    for d in ("x", "y", "z"):  # three other devices send a bad message each: w is followed no more
        ing.handle(f"sensors/{d}/data", b"[1]")
    assert ing.health is not None and "w" not in ing.health.rejects
    _feed(ing, "w", _normal(3, seed=4), start=15)
    assert [(d["kind"], d["state"]) for d in _topic(sent, "health/w/alerts")] == [
        ("rejected", "raised"), ("rejected", "cleared")]


def test_a_rejected_device_is_heard_so_neither_stale_nor_idle_and_raised_again_after_it_was_forgotten(model) -> None:
    ing, sent, _ = _ingest(model)
    _feed(ing, "w", _normal(10))
    ring = ing.store.devices["w"]
    ring.last_seen -= 100.0  # its last good sample came 100 s ago (the stale limit is 5 s) ...
    for i in range(5):  # ... since then only garbage
        ing.handle("sensors/w/data", json.dumps({"ts": T0 + 10 + i, "values": [1.0]}).encode())
    now = time.monotonic()
    assert ring.last_seen >= now - 1.0  # it sends: heard, not idle
    ing.check_stale(now + 1.0)
    assert [d["kind"] for d in _topic(sent, "health/w/alerts")] == ["rejected"]
    assert ing.health is not None
    ing.send(ing.health.forget("w", "expired"))
    for i in range(5):  # it goes on sending garbage: raised again
        ing.handle("sensors/w/data", json.dumps({"ts": T0 + 20 + i, "values": [1.0]}).encode())
    assert [(d["state"], d.get("reason")) for d in _topic(sent, "health/w/alerts")] == [
        ("raised", None), ("cleared", "expired"), ("raised", None)]


def _feed_blocks(ing: Ingest, device: str, rows: np.ndarray, block: int, start: int = 0) -> None:
    for lo in range(0, len(rows), block):
        part = rows[lo : lo + block]
        ing.handle(f"sensors/{device}/data", json.dumps(
            {"ts": [T0 + start + lo + i for i in range(len(part))], "values": part.tolist()}).encode())


@pytest.mark.parametrize(("block", "raise_after"), [(1, 1), (16, 1), (1, 4), (7, 4)])
def test_a_channel_still_out_of_range_when_the_device_leaves_out_of_distribution_is_no_ok_flap(
        model, block: int, raise_after: int) -> None:
    """The trial's case: a device out_of_distribution comes back on most channels, one stays out of range. Its
    health went out_of_distribution -> ok -> fault (the out-of-range run was hidden while out of distribution
    and counted again from nought), an ``ok`` a subscriber reads as "all good". That channel's fault is there
    from the moment the device is back: out_of_distribution -> fault, no ``ok`` between."""
    ing, sent, _ = _ingest(model, sensor_raise_after=raise_after)
    x = _normal(200)
    x[:120, :3] += 20.0  # a, b, c far out from the start: out of distribution ...
    x[:, 3] += 20.0 + 0.1 * np.arange(200)  # ... and d too, moving, never back
    _feed_blocks(ing, "p", x, block)
    states = [h["state"] for h in _topic(sent, "health/p")]
    after = states[states.index("out_of_distribution"):]
    assert [s for i, s in enumerate(after) if i == 0 or s != after[i - 1]] == ["out_of_distribution", "fault"]
    operating = _topic(sent, "alerts/p/operating")
    assert [(d["state"], d["since"] - T0) for d in operating] == [("out_of_distribution", 2), ("running", 120)]
    (raised,) = _topic(sent, "health/p/alerts")
    assert (raised["state"], raised["channel"], raised["kind"]) == ("raised", "d", "out_of_range")
    assert raised["at"] - T0 == 135  # when the device is back in distribution: 16 samples in range from 120
    assert raised["since"] == T0  # its run out of range, dated from its start
    assert all(errors(h, load("health.schema.json")) == [] for h in _topic(sent, "health/p"))


@pytest.mark.parametrize("block", [1, 2])
def test_a_new_device_far_out_from_its_first_sample_says_out_of_distribution_first_not_ok(model, block: int) -> None:
    """The range hold (3 samples) decides whether a new device is out of distribution: its first health document
    waits for it, so a subscriber never reads an ``ok`` that the next check takes back (it did: ``ok`` at the
    first sample, ``out_of_distribution`` at the next check)."""
    ing, sent, _ = _ingest(model)
    x = _normal(40)
    x[:, :3] += 20.0
    _feed_blocks(ing, "p", x[:2], block)
    assert _topic(sent, "health/p") == []  # checked, two samples out of range: the hold is not reached yet
    _feed_blocks(ing, "p", x[2:], block, start=2)
    states = [h["state"] for h in _topic(sent, "health/p")]
    assert states and states[0] == "out_of_distribution" and "ok" not in states


def _first_health(ing: Ingest, sent: list, x: np.ndarray) -> tuple[int, str]:
    for i in range(len(x)):
        _feed(ing, "p", x[i : i + 1], start=i)
        if docs := _topic(sent, "health/p"):
            return i, docs[0]["state"]
    return -1, ""


def test_a_new_device_back_in_range_before_the_hold_gets_its_ok_at_the_next_check(model) -> None:
    x = _normal(20)
    x[:2, 0] += 20.0  # a two-sample excursion on one channel at its first samples: shorter than the hold
    at, state = _first_health(*_ingest(model)[:2], x)
    assert state == "ok" and 2 <= at < 16  # the next check after it is back (CHECK_EVERY at most)
    at, state = _first_health(*_ingest(model)[:2], _normal(20))
    assert (at, state) == (0, "ok")  # a device in range from its first sample: its ok at once, as before


def test_a_new_device_that_goes_quiet_inside_the_hold_still_gets_its_health_document(model) -> None:
    """Second read: two samples with a channel out of range (the hold is 3), then silence. The stale alert was
    raised but the first health document held back for good: Home Assistant's Sensor health showed nothing."""
    ing, sent, _ = _ingest(model)
    x = _normal(2)
    x[:, 0] += 20.0
    _feed(ing, "p", x)
    ing.check_stale(ing.store.devices["p"].last_seen + 60.0)
    assert [(a["kind"], a["state"]) for a in _topic(sent, "health/p/alerts")] == [("stale", "raised")]
    assert [h["state"] for h in _topic(sent, "health/p")] == ["stale"]


@pytest.mark.parametrize(("block", "hold"), [(2, 3), (4, 3), (8, 3), (2, 4), (4, 8), (16, 16)])
def test_a_device_whose_blocks_end_out_of_range_gets_its_health_document(model, block: int, hold: int) -> None:
    """Second read: each message's last sample briefly out of range: the hold applied at every check, and the
    device never got a health document in 400 samples. It waits only while the device is new (a count that
    stopped at exactly the hold, when the blocks divide it, kept it waiting)."""
    ing, sent, _ = _ingest(model, range_hold=hold)
    x = _normal(400)
    x[block - 1 :: block, 0] += 20.0
    _feed_blocks(ing, "p", x, block)
    assert _topic(sent, "health/p")
