"""Operating states at the edge, without a broker: Ingest -> InlineScoring/Scorer -> Publisher.

A stopped device is not scored (its window restarts), the settling time after a start is not scored, each state
change is published retained on alerts/{device}/operating; a device far out at its start is reported once as
out_of_distribution instead of alerting.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.config import build_config
from edge_runtime.pipeline.alerts import AlertTracker
from edge_runtime.pipeline.hysteresis import AlertPolicy
from edge_runtime.pipeline.states import StateModel
from edge_runtime.pipeline.stats import Stats
from edge_runtime.service.ingest import Ingest
from edge_runtime.service.model import load_model
from edge_runtime.service.publisher import Publisher
from edge_runtime.service.scorer import InlineScoring, Scorer
from tests.edge_runtime.onnx_models import make_metadata, series, write_model
from tests.edge_runtime.schema_check import errors, load
from tests.edge_runtime.service.test_scorer import FakeLink

W, HOP, SETTLE = 8, 4, 5
STATES = StateModel("column status in RUN", SETTLE, None, ["Pressure"], [10.0], [1.0])


def make_parts(tmp_path: Path, states: bool = True, health: dict | None = None, **overrides):
    meta = make_metadata(window=W, hop=HOP, threshold=1.0)
    meta.states = STATES.to_dict() if states else None
    if health is not None:
        meta.health = health
    path = write_model(tmp_path / "m.onnx", meta)
    cfg = build_config(None, {"path": str(path), "instance": "gw1", "raise_after": 2, "clear_after": 2,
                              "queue_windows": 1000, **overrides})
    model = load_model(path)
    stats = Stats()
    ingest = Ingest(cfg, model, stats)
    scorer = Scorer(cfg, model, ingest, AlertTracker(AlertPolicy(2, 2, cfg.clear_ratio, 2), "gw1"), stats)
    link = FakeLink()
    publisher = Publisher(link)
    inline = InlineScoring(cfg, scorer, publisher)
    ingest.put = inline.put
    ingest.send = publisher.send
    ingest.on_state = lambda dev, state, since, reason: publisher.send(scorer.state_changed(dev, state, since, reason))
    return stats, ingest, inline, link


def plant(stop: tuple[int, int], n: int = 120) -> np.ndarray:
    x = series(n)
    x[stop[0] : stop[1], 1] = 10.0 + 0.1 * np.sin(np.arange(stop[1] - stop[0]))  # Pressure at its off level
    return x


def feed(ingest: Ingest, x: np.ndarray, batch: int = 1, device: str = "d1", t0: float = 1_700_000_000.0) -> None:
    for lo in range(0, len(x), batch):
        rows = x[lo : lo + batch]
        doc = ({"ts": t0 + lo, "values": rows[0].tolist()} if batch == 1 else
               {"ts": [t0 + lo + i for i in range(len(rows))], "values": rows.tolist()})
        ingest.handle(f"sensors/{device}/data", json.dumps(doc).encode())


def operating(link: FakeLink) -> list[dict]:
    docs = [(doc, retain) for topic, doc, _, retain in link.sent if topic == "alerts/d1/operating"]
    assert all(retain for _, retain in docs)
    for doc, _ in docs:
        assert errors(doc, load("operating.schema.json")) == []
    return [doc for doc, _ in docs]


@pytest.mark.parametrize("batch", [1, 16])
def test_a_stopped_device_is_not_scored_and_its_windows_restart_after_settling(tmp_path: Path, batch: int) -> None:
    stats, ingest, inline, link = make_parts(tmp_path)
    feed(ingest, plant((40, 70)), batch)
    inline.drain()
    docs = operating(link)
    assert [d["state"] for d in docs] == ["running", "stopped", "settling", "running"]
    assert [d["since"] - 1_700_000_000.0 for d in docs] == [0, 40, 70, 70 + SETTLE]
    assert [d["scored"] for d in docs] == [True, False, False, True]
    assert stats.counts["samples_stopped"] == 30 and stats.counts["samples_settling"] == SETTLE
    assert stats.counts["samples"] == 120 and stats.counts["state_changes"] == 4
    # windows only inside the running stretches 0..39 and 75..119, none across the stop
    want = (40 - W) // HOP + 1 + (45 - W) // HOP + 1
    assert stats.counts["windows_scored"] == want
    assert not [t for t, *_ in link.sent if t == "alerts/d1"]  # the stop raised nothing


def test_states_are_off_by_config(tmp_path: Path) -> None:
    stats, ingest, inline, link = make_parts(tmp_path, operating_states=False)
    feed(ingest, plant((40, 70)))
    inline.drain()
    assert operating(link) == [] and stats.counts["samples_stopped"] == 0


def test_a_device_far_out_at_its_start_is_reported_once_as_out_of_distribution(tmp_path: Path) -> None:
    stats, ingest, inline, link = make_parts(tmp_path, states=False, ood_windows=4, ood_factor=3.0)
    x = series(200)
    x[:100] *= 20.0  # 400x the variance from the start: an operating point far from training
    x[160:] *= 20.0  # a fault later on, once the device is back in distribution
    feed(ingest, x)
    inline.drain()
    docs = operating(link)
    assert [d["state"] for d in docs] == ["out_of_distribution", "running"]  # (no states: no stop to tell)
    assert "far from training" in docs[0]["reason"]
    alerts = [doc["event"] for t, doc, *_ in link.sent if t == "alerts/d1" and doc["event"] != "update"]
    assert alerts == ["raise"]  # only the later fault: nothing while out of distribution
    raised = next(doc for t, doc, *_ in link.sent if t == "alerts/d1")
    assert raised["window_end"] >= 1_700_000_000.0 + 160
    assert stats.counts["out_of_distribution"] == 1 and stats.counts["windows_out_of_distribution"] > 10


def test_held_windows_of_a_normal_start_are_decided_as_usual(tmp_path: Path) -> None:
    stats, ingest, inline, link = make_parts(tmp_path, states=False, ood_windows=4, ood_factor=3.0)
    x = series(120)
    x[8:] *= 20.0  # a fault that starts early but not far-out in every one of the first 4 windows
    feed(ingest, x)
    inline.drain()
    assert [doc["event"] for t, doc, *_ in link.sent if t == "alerts/d1" and doc["event"] != "update"] == ["raise"]
    assert operating(link) == []


def test_a_device_out_of_range_on_most_channels_is_out_of_distribution_across_a_stop(tmp_path: Path) -> None:
    ranges = {"fill": {"method": "ffill", "limit_samples": 2}, "channels": {
        c: {"min": -2.0, "max": 2.0, "margin": 0.0} for c in make_metadata().channels}}
    stats, ingest, inline, link = make_parts(tmp_path, health=ranges)
    x = plant((60, 90), n=200)
    x[:150, [0, 2, 3]] += 5.0  # three of four channels far from training, before and after the stop
    feed(ingest, x)
    inline.drain()
    docs = [(d["state"], d["since"] - 1_700_000_000.0) for d in operating(link)]
    back = 150  # two windows (16 samples) in range from 150 on: reported running from 150
    # far out from its start, and when it runs again still out of distribution, it says so, not running first (a
    # subscriber read "running": scored)
    assert docs == [("out_of_distribution", 2), ("stopped", 60), ("settling", 90),
                    ("out_of_distribution", 90 + SETTLE), ("running", back)]
    assert stats.counts["state_changes"] == len(docs)  # each published once (the replaced running not counted)
    assert stats.counts["out_of_distribution"] == 1  # one episode, reported again when it runs again
    assert not [t for t, *_ in link.sent if t == "alerts/d1"]  # no process alert
    assert not [t for t, *_ in link.sent if t == "health/d1/alerts"]  # and no out_of_range sensor alert
    assert stats.counts["windows_out_of_distribution"] > 0 and stats.counts["windows_degraded"] == 0
    assert stats.counts["windows_scored"] > 0  # scored again at the end


def test_a_running_device_that_leaves_the_range_on_most_channels_raises_its_process_alert(tmp_path: Path) -> None:
    """The trial's case: a device scored normally, then three of its four channels far out of range at once (a
    trip). It stays scored, so the process alert raises and names them; no operating state, no range alerts."""
    ranges = {"fill": {"method": "ffill", "limit_samples": 2}, "channels": {
        c: {"min": -2.0, "max": 2.0, "margin": 0.0} for c in make_metadata().channels}}
    stats, ingest, inline, link = make_parts(tmp_path, states=False, health=ranges)
    x = series(160)
    x[80:, [0, 2, 3]] = 8.0 + 5.0 * x[80:, [0, 2, 3]]  # after 80 samples in range: far out, and wilder
    feed(ingest, x)
    inline.drain()
    assert operating(link) == []
    raised = [doc for t, doc, *_ in link.sent if t == "alerts/d1" and doc["event"] == "raise"]
    assert len(raised) == 1 and raised[0]["window_end"] >= 1_700_000_000.0 + 80
    named = {c["name"] for c in raised[0]["top_channels"]}
    assert named and named <= {make_metadata().channels[i] for i in (0, 2, 3)}
    assert not [t for t, *_ in link.sent if t == "health/d1/alerts"]
    assert stats.counts["range_excursions"] == 1 and stats.counts["windows_out_of_distribution"] == 0


def test_a_process_excursion_alert_names_the_channels_that_left_their_range_and_no_zero_share_channel(
        tmp_path: Path) -> None:
    """The trial's case: an excursion where two channels jump far out of range and hold there (the model
    reconstructs a level it is given: no error on them), a third goes wild. The alert listed a channel that left its
    range as a top channel with share 0.0, which reads "not to blame". A channel with no share of the error is not a
    top channel; the channels outside their range are named apart, with the limit they crossed and by how much."""
    ranges = {"fill": {"method": "ffill", "limit_samples": 2}, "channels": {
        c: {"min": -2.0, "max": 2.0, "margin": 0.0} for c in make_metadata().channels}}
    stats, ingest, inline, link = make_parts(tmp_path, states=False, health=ranges)
    x = series(160)
    x[80:, 0] = 8.0  # Accelerometer1RMS far out, and flat
    x[80:, 1] = 0.5  # Pressure in range, flat: no error either
    x[80:, 2] = -9.0  # Temperature far out below
    x[80:, 3] = 8.0 + 15.0 * x[80:, 3]  # Volume Flow RateRMS far out and wild: the score
    feed(ingest, x)
    inline.drain()
    assert stats.counts["range_excursions"] == 1
    docs = [doc for t, doc, *_ in link.sent if t == "alerts/d1" and doc["event"] in ("raise", "update")]
    assert docs and docs[0]["event"] == "raise"
    for doc in docs:
        assert errors(doc, load("alert.schema.json")) == []
        assert [c["name"] for c in doc["top_channels"]] == ["Volume Flow RateRMS"]  # no 0.0-share filler
        assert all(c["share"] > 0 for c in doc["top_channels"])
    out = {c["name"]: c for c in docs[0]["out_of_range"]}
    assert set(out) == {"Accelerometer1RMS", "Temperature", "Volume Flow RateRMS"}
    assert (out["Accelerometer1RMS"]["direction"], out["Accelerometer1RMS"]["limit"]) == ("high", 2.0)
    assert out["Accelerometer1RMS"]["value"] == 8.0 and out["Accelerometer1RMS"]["beyond"] == 6.0
    assert (out["Temperature"]["direction"], out["Temperature"]["limit"], out["Temperature"]["beyond"]) == (
        "low", -2.0, 7.0)
    assert "outside the range seen in training" in docs[0]["summary"]
    assert "Accelerometer1RMS" in docs[0]["summary"] and "Temperature" in docs[0]["summary"]


@pytest.mark.parametrize("batch", [1, 16, 100])
def test_far_out_right_after_a_restart_is_out_of_distribution_however_the_samples_are_batched(
        tmp_path: Path, batch: int) -> None:
    """It ran in range before its stop; after the restart it may run at another operating point: each state change
    counts where it happens in the block, so the rows before the stop do not count as running in range after it."""
    ranges = {"fill": {"method": "ffill", "limit_samples": 2}, "channels": {
        c: {"min": -2.0, "max": 2.0, "margin": 0.0} for c in make_metadata().channels}}
    stats, ingest, inline, link = make_parts(tmp_path, health=ranges)
    x = plant((60, 90), n=200)
    x[90 + SETTLE:, [0, 2, 3]] += 5.0  # far out on three of four from the restart on
    feed(ingest, x, batch)
    inline.drain()
    states = [d["state"] for d in operating(link)]
    # far out from the restart: out_of_distribution is its first word after settling, not running
    assert states[:4] == ["running", "stopped", "settling", "out_of_distribution"]
    assert stats.counts["out_of_distribution"] == 1 and stats.counts["range_excursions"] == 0


@pytest.mark.parametrize("batch", [1, 2, 16])
def test_a_new_device_far_out_from_its_first_sample_never_says_running_first(tmp_path: Path, batch: int) -> None:
    """Its running waits for the range hold; a device in range is running from its first sample, as before."""
    ranges = {"fill": {"method": "ffill", "limit_samples": 2}, "channels": {
        c: {"min": -2.0, "max": 2.0, "margin": 0.0} for c in make_metadata().channels}}
    stats, ingest, inline, link = make_parts(tmp_path, health=ranges)
    x = series(40)
    x[:, [0, 2, 3]] += 5.0
    feed(ingest, x, batch)
    feed(ingest, series(40), batch, device="d2", t0=1_700_000_100.0)
    inline.drain()
    assert [(d["state"], d["since"] - 1_700_000_000.0) for d in operating(link)] == [("out_of_distribution", 2)]
    d2 = [(doc["state"], doc["since"] - 1_700_000_000.0) for t, doc, *_ in link.sent if t == "alerts/d2/operating"]
    assert d2 == [("running", 100)]
    assert stats.counts["state_changes"] == 2


def test_a_new_device_quiet_before_the_range_hold_is_still_said_running(tmp_path: Path) -> None:
    ranges = {"fill": {"method": "ffill", "limit_samples": 2}, "channels": {
        c: {"min": -2.0, "max": 2.0, "margin": 0.0} for c in make_metadata().channels}}
    stats, ingest, inline, link = make_parts(tmp_path, health=ranges)
    x = series(2)
    x[:, [0, 2, 3]] += 5.0  # two samples far out, fewer than the range hold: it cannot tell yet
    feed(ingest, x, batch=2)
    assert operating(link) == []
    ingest.check_stale(ingest.store.devices["d1"].last_seen + 1e6)
    inline.drain()
    assert [d["state"] for d in operating(link)] == ["running"]
    assert stats.counts["state_changes"] == 1


RANGES = {"fill": {"method": "ffill", "limit_samples": 2}, "channels": {
    c: {"min": -2.0, "max": 2.0, "margin": 0.0} for c in make_metadata().channels}}


def _states(link: FakeLink) -> list[tuple[str, float]]:
    return [(d["state"], d["since"] - 1_700_000_000.0) for d in operating(link)]


@pytest.mark.parametrize("batch", [1, 16])
def test_a_process_excursion_across_a_stop_is_said_running_when_it_runs_again(tmp_path: Path, batch: int) -> None:
    """Scored through its excursion: its running after the restart is not held until the excursion ends."""
    stats, ingest, inline, link = make_parts(tmp_path, health=RANGES)
    x = plant((100, 130), n=240)
    x[60:, [0, 2, 3]] += 5.0  # after 60 samples in range: out on three of four, across the stop
    feed(ingest, x, batch)
    inline.drain()
    assert _states(link) == [("running", 0), ("stopped", 100), ("settling", 130), ("running", 130 + SETTLE)]
    assert stats.counts["range_excursions"] == 1 and stats.counts["out_of_distribution"] == 0


def test_a_new_device_that_leaves_the_range_after_running_in_it_is_said_running(tmp_path: Path) -> None:
    stats, ingest, inline, link = make_parts(tmp_path, health=RANGES)
    x = series(100)
    x[50:, [0, 2, 3]] += 5.0  # in range for 50 samples (past two windows), then an excursion: one message
    feed(ingest, x, batch=100)
    inline.drain()
    assert stats.counts["range_excursions"] == 1 and stats.counts["windows_scored"] > 0
    assert _states(link) == [("running", 0)]


@pytest.mark.parametrize("batch", [1, 7])
def test_a_quiet_device_is_checked_before_its_held_running_is_paid(tmp_path: Path, batch: int) -> None:
    """Single samples wait for their check (every 16, or at a window): the stale check checks them first, so
    seven samples far out say the same sent one by one as in one message."""
    stats, ingest, inline, link = make_parts(tmp_path, health=RANGES)
    x = series(7)
    x[:, [0, 2, 3]] += 5.0
    feed(ingest, x, batch)
    ingest.check_stale(ingest.store.devices["d1"].last_seen + 1e6)
    inline.drain()
    assert _states(link) == [("out_of_distribution", 2)]


def test_a_device_handed_to_another_worker_starts_afresh_when_it_comes_back(tmp_path: Path) -> None:
    stats, ingest, inline, link = make_parts(tmp_path, health=RANGES)
    x = series(2)
    x[:, [0, 2, 3]] += 5.0
    feed(ingest, x)  # its running held: the hold has not told yet
    ingest.release(["d1"])  # a NATS partition taken by another worker
    assert ingest.health is not None and ingest.health.running_owed == {}
    feed(ingest, series(20), t0=1_700_050_000.0)  # back here much later, in range
    inline.drain()
    assert _states(link) == [("running", 50_000)]
