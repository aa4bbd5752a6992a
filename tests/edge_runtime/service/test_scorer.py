"""The daemon's parts alone, without a broker: Ingest -> InlineScoring/Scorer -> Publisher, and Housekeeping.

A real (tiny, exported) ONNX model; the oracle for scores is its numpy twin
(tests/edge_runtime/onnx_models.reference_scores); published messages are recorded by a fake link.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.config import build_config
from edge_runtime.pipeline.alerts import AlertTracker
from edge_runtime.pipeline.documents import Outbound
from edge_runtime.pipeline.hysteresis import AlertPolicy
from edge_runtime.pipeline.stats import Stats
from edge_runtime.service.housekeeping import Housekeeping
from edge_runtime.service.ingest import Ingest
from edge_runtime.service.model import load_model
from edge_runtime.service.publisher import Publisher
from edge_runtime.service.scorer import InlineScoring, Scorer, ThreadedScoring
from tests.edge_runtime.onnx_models import (
    make_metadata,
    reference_scores,
    series,
    sliding_windows,
    write_model,
)

W, HOP, THR = 8, 4, 1.0


class FakeLink:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict, int, bool]] = []

    def publish(self, topic: str, payload: str | bytes, qos: int = 1, retain: bool = False,
                bulk: bool = False) -> bool:
        self.sent.append((topic, json.loads(payload), qos, retain))
        return True


@pytest.fixture
def parts(tmp_path: Path):
    path = write_model(tmp_path / "m.onnx", make_metadata(window=W, hop=HOP, threshold=THR))
    cfg = build_config(None, {"path": str(path), "instance": "gw1", "publish_scores": True, "raise_after": 2,
                              "clear_after": 2, "queue_windows": 1000})
    model = load_model(path)
    stats = Stats()
    ingest = Ingest(cfg, model, stats)
    tracker = AlertTracker(AlertPolicy(cfg.raise_after, cfg.clear_after, cfg.clear_ratio, 2), "gw1")
    scorer = Scorer(cfg, model, ingest, tracker, stats)
    link = FakeLink()
    publisher = Publisher(link)
    inline = InlineScoring(cfg, scorer, publisher)
    ingest.put = inline.put
    ingest.on_forget = lambda dev, why: publisher.send(scorer.forget(dev, why))
    return cfg, model, stats, ingest, scorer, inline, link


def _feed(ingest: Ingest, device: str, x: np.ndarray, t0: float = 1_700_000_000.0) -> None:
    for i, row in enumerate(x):
        ingest.handle(f"sensors/{device}/data", json.dumps({"ts": t0 + i, "values": row.tolist()}).encode())


def test_inline_scoring_publishes_the_scores_of_every_window(parts) -> None:
    cfg, model, stats, ingest, scorer, inline, link = parts
    x = series(40)
    _feed(ingest, "d1", x)
    assert len(inline) == len(sliding_windows(x, W, HOP)) and link.sent == []  # nothing scored yet
    inline.drain()  # what the link's after_read does after a read burst
    scores = [s for topic, doc, qos, _ in link.sent if topic == "scores/d1" for s in doc["score"]]
    want, _ = reference_scores(sliding_windows(x, W, HOP), model.metadata)
    np.testing.assert_allclose(scores, want, rtol=1e-4)
    assert stats.counts["windows_scored"] == len(want) and len(inline) == 0


def test_scorer_raises_an_alert_with_a_retained_state(parts) -> None:
    cfg, model, stats, ingest, scorer, inline, link = parts
    x = series(40)
    x[20:] *= 20.0  # windows of 400x the variance: far above the threshold
    _feed(ingest, "d1", x)
    inline.drain()
    alerts = [doc for topic, doc, _, _ in link.sent if topic == "alerts/d1"]
    states = [(doc, qos, retain) for topic, doc, qos, retain in link.sent if topic == "alerts/d1/state"]
    assert [a["state"] for a in alerts] == ["raised"]
    peak = states[0][0].pop("peak_score"), states[0][0].pop("peak_time")  # the batch's highest, for a restart
    assert peak[0] >= alerts[0]["score"] and peak[1] >= alerts[0]["window_end"]
    assert states == [({"schema_version": 1, "device": "d1", "state": "raised", "raised_alert_id": alerts[0]["alert_id"],
                        "seq": 1, "since": alerts[0]["time"], "instance": "gw1",
                        "anomalous_since": alerts[0]["anomalous_since"],
                        "threshold": 1.0, "threshold_model": 1.0, "threshold_base": 1.0}, 1, True)]
    assert stats.counts["alerts_raised"] == 1


def test_forget_clears_a_raised_device_with_its_reason(parts) -> None:
    cfg, model, stats, ingest, scorer, inline, link = parts
    x = series(40)
    x[8:] *= 20.0
    _feed(ingest, "d1", x)
    inline.drain()
    link.sent.clear()
    out = scorer.forget("d1", "expired")
    assert [(m.topic, json.loads(m.payload)["state"], m.retain) for m in out] == [
        ("alerts/d1", "cleared", False), ("alerts/d1/state", "cleared", True)]
    assert json.loads(out[1].payload)["reason"] == "expired" and stats.counts["alerts_cleared"] == 1
    assert scorer.forget("d1", "expired") == []  # once


def test_windows_of_a_reshaped_model_are_dropped_and_counted(parts, tmp_path: Path) -> None:
    cfg, model, stats, ingest, scorer, inline, link = parts
    _feed(ingest, "d1", series(20))
    scorer.model = load_model(write_model(tmp_path / "w16.onnx", make_metadata(window=16, hop=4)))
    inline.drain()
    assert stats.drops["reload"] == len(sliding_windows(series(20), W, HOP)) and link.sent == []


def test_housekeeping_expires_idle_devices_and_reloads(parts, tmp_path: Path) -> None:
    cfg, model, stats, ingest, scorer, inline, link = parts
    stop = threading.Event()
    status: list[Outbound] = []

    def status_message() -> Outbound:
        status.append(Outbound("edgewatch/gw1/status", '{"state": "online"}', retain=True))
        return status[-1]

    hk = Housekeeping(cfg, scorer, inline, Publisher(link), stats.snapshot, status_message, stop)
    _feed(ingest, "d1", series(12))
    last_seen = ingest.store.devices["d1"].last_seen
    assert hk.expire_idle(last_seen + cfg.device_idle_s - 1) == []
    assert hk.expire_idle(last_seen + cfg.device_idle_s + 1) == ["d1"] and stats.counts["devices_expired"] == 1
    write_model(Path(cfg.path), make_metadata(window=16, hop=4, model_id="v2"))  # W changes: windows reset
    _feed(ingest, "d2", series(12))
    assert hk.reload("test") is True
    assert scorer.model.model_id == "v2" and ingest.store.window == 16 and len(inline) == 0
    assert stats.counts["reloads"] == 1 and len(status) == 1
    assert link.sent[-1] == ("edgewatch/gw1/status", {"state": "online"}, 1, True)


def test_threaded_scoring_scores_on_its_own_thread(parts) -> None:
    cfg, model, stats, ingest, scorer, inline, link = parts
    stop = threading.Event()
    threaded = ThreadedScoring(cfg, scorer, Publisher(link), stop)
    ingest.put = threaded.put
    names: list[str] = []
    run = scorer.score

    def spy(items):
        names.append(threading.current_thread().name)
        return run(items)

    scorer.score = spy  # type: ignore[method-assign]
    threaded.start()
    _feed(ingest, "d1", series(40))
    stop.set()
    threaded.stop(5.0)
    assert stats.counts["windows_scored"] == len(sliding_windows(series(40), W, HOP))
    assert set(names) == {"edgewatch-infer"}


def _inline_parts(tmp_path: Path, **cfg_over: object) -> tuple[Stats, Ingest, InlineScoring]:
    """A small model's ingest -> inline scoring, no broker."""
    path = write_model(tmp_path / "small.onnx", make_metadata(window=W, hop=HOP, threshold=THR))
    cfg = build_config(None, {"path": str(path), "instance": "gw1", "publish_scores": True, **cfg_over})
    model = load_model(path)
    stats = Stats()
    ingest = Ingest(cfg, model, stats)
    scorer = Scorer(cfg, model, ingest, AlertTracker(AlertPolicy(), "gw1"), stats)
    inline = InlineScoring(cfg, scorer, Publisher(FakeLink()))
    ingest.put, ingest.settle = inline.put, inline.settle
    return stats, ingest, inline


def test_inline_overflow_while_the_sweep_scores_is_held_then_placed_not_dropped(parts, tmp_path: Path) -> None:
    """A message that overflows the buffer while another thread (the housekeeping sweep) holds the scoring lock
    is held, and ``settle`` (after the ingest lock is released) places and scores it: no window is dropped."""
    stats, ingest, inline = _inline_parts(tmp_path, queue_windows=4)
    x = series(60)
    want = len(sliding_windows(x, W, HOP))
    assert want > 4
    sweeping = threading.Event()
    done = threading.Event()

    def sweep() -> None:  # holds the scoring lock as InlineScoring.drain does from the housekeeping thread
        with inline._scoring:
            sweeping.set()
            done.wait(0.3)

    th = threading.Thread(target=sweep)
    th.start()
    sweeping.wait(5)
    ingest.handle("sensors/d1/data", json.dumps({"ts": [1_700_000_000.0 + i for i in range(60)],
                                                 "values": x.tolist()}).encode())
    done.set()
    th.join()
    inline.drain()
    assert stats.drops.get("queue_full", 0) == 0
    assert stats.counts["windows_scored"] == want


def test_the_inline_sweep_stands_back_while_a_burst_is_read_then_scores_what_waits(tmp_path: Path) -> None:
    stats, ingest, inline = _inline_parts(tmp_path)
    x = series(60)
    ingest.handle("sensors/d1/data", json.dumps({"ts": [1_700_000_000.0 + i for i in range(60)],
                                                 "values": x.tolist()}).encode())
    reading = [True]
    inline.reading = lambda: reading[0]
    later = time.monotonic() + 10.0  # the buffered windows are long overdue for the sweep
    inline.sweep(later)
    assert stats.counts["windows_scored"] == 0 and len(inline) > 0  # the burst's own drain will score them
    reading[0] = False
    inline.sweep(later)
    assert stats.counts["windows_scored"] == len(sliding_windows(x, W, HOP)) and len(inline) == 0


def test_the_alert_detail_is_in_the_devices_own_units_with_warm_up_offsets(tmp_path: Path) -> None:
    """measured: the raw window's mean; expected: the reconstruction of the scored (offset) window, shifted back;
    the whole shifted reconstruction kept for the evidence."""
    from edge_runtime.service.scorer import _Detail

    model = load_model(write_model(tmp_path / "m.onnx", make_metadata(window=W, hop=HOP, threshold=THR)))
    raw = series(W, seed=2)[None] + np.float32(5.0)  # (1, W, C) the device's values
    offset = np.full(raw.shape[2], 5.0, np.float32)
    scored = raw - offset  # what the model saw
    recon = model.reconstruct(scored)
    assert recon is not None
    detail = _Detail(model, scored, 0, raw, offset)
    measured, expected, peak_measured, peak_expected = detail(0)
    np.testing.assert_allclose(measured, raw[0].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(expected, recon[0].mean(axis=0) + 5.0, rtol=1e-5)
    # the peak: per channel the sample furthest from the shifted reconstruction, both in the device's units
    gap = np.abs(raw[0] - (recon[0] + 5.0))
    j = gap.argmax(axis=0)
    np.testing.assert_allclose(peak_measured, raw[0][j, np.arange(raw.shape[2])], rtol=1e-6)
    np.testing.assert_allclose(peak_expected, recon[0][j, np.arange(raw.shape[2])] + 5.0, rtol=1e-5)
    assert list(detail.curves) == [0] and detail.curves[0].dtype == np.float32
    np.testing.assert_allclose(detail.curves[0], recon[0] + 5.0, rtol=1e-6)
    m0, e0, _, _ = _Detail(model, raw, 0, raw, None)(0)  # no offsets: both from the same window
    np.testing.assert_allclose(m0, measured, rtol=1e-6)
