"""The evidence recorder: pre-raise ring, episode from before the raise to after the clear, bounds."""

from __future__ import annotations

import numpy as np

from edge_runtime.pipeline.evidence import EvidenceRecorder

W, HOP, C = 4, 2, 2


def windows(x: np.ndarray, t0: float, starts: range):
    """Windows of ``x`` (n, C) at ``starts``, samples 1 s apart from ``t0``."""
    w = np.stack([x[s : s + W] for s in starts]).astype(np.float32)
    ts = np.array([t0 + s for s in starts], np.float64)
    return w, ts, ts + W - 1


def feed(r: EvidenceRecorder, x: np.ndarray, starts: range, alerts=()):
    w, t0, t1 = windows(x, 0.0, starts)
    k = len(starts)
    return r.observe("d", w, t0, t1, np.ones(k), np.ones((k, C)), list(alerts), "m1", 1.0, ["a", "b"], {"a": "bar"})


def test_an_episode_holds_every_sample_from_the_margin_before_to_the_margin_after_exactly_once() -> None:
    x = np.arange(200, dtype=np.float32).reshape(100, 2)  # value = 2 x sample index (+1 on channel b)
    r = EvidenceRecorder(margin_s=5.0, ring_samples=100)
    assert feed(r, x, range(0, 40, HOP)) == ([], [])
    raise_ = {"event": "raise", "state": "raised", "alert_id": "d:1", "raised_alert_id": "d:1", "score": 3.0,
              "window_end": 43.0, "anomalous_since": 41.0}
    opened, done = feed(r, x, range(40, 42, HOP), [raise_])
    assert [e.alert_id for e in opened] == ["d:1"] and done == []
    clear = {"event": "clear", "state": "cleared", "alert_id": "d:2", "raised_alert_id": "d:1", "score": 0.1,
             "window_end": 61.0}
    _, done = feed(r, x, range(42, 60, HOP), [clear])
    assert done == []  # the margin after the clear (until 66) is not there yet
    _, done = feed(r, x, range(60, 70, HOP))
    (ep,) = done
    a = ep.arrays()
    assert a["ts"][0] == 36.0 and a["ts"][-1] == 66.0  # 41 - 5 .. 61 + 5
    assert np.array_equal(a["ts"], np.arange(36.0, 67.0))  # every sample once, in order
    assert np.array_equal(a["values"][:, 0], 2 * a["ts"])
    assert a["win_end"][0] >= 36.0 and a["win_end"][-1] <= 66.0 and a["win_error"].shape[1] == C
    m = ep.meta()
    assert m["complete"] and m["cleared_end"] == 61.0 and m["peak_score"] == 3.0 and m["units"] == {"a": "bar"}
    assert [e["event"] for e in m["events"]] == ["raise", "clear"]


def test_the_ring_and_an_episode_stay_within_their_bounds() -> None:
    x = np.zeros((5000, 2), np.float32)
    r = EvidenceRecorder(margin_s=1e9, ring_samples=50, max_samples=300)
    feed(r, x, range(0, 2000, HOP))
    d = r.devices["d"]
    assert d.ring_n == 50 and d.wring_n == 50 and sum(len(c[2]) for c in d.ring) == 50
    (ep,), _ = feed(r, x, range(2000, 2002, HOP), [{"event": "raise", "alert_id": "d:1", "window_end": 2003.0,
                                                   "anomalous_since": 2003.0}])
    feed(r, x, range(2002, 4000, HOP))
    assert ep.n_samples == 300 and ep.samples_dropped > 0 and ep.n_windows <= 300


def test_forget_finishes_an_open_episode_with_its_reason() -> None:
    x = np.zeros((100, 2), np.float32)
    r = EvidenceRecorder(margin_s=2.0)
    feed(r, x, range(0, 10, HOP), [{"event": "raise", "alert_id": "d:1", "window_end": 3.0}])
    ep = r.forget("d", "expired")
    assert ep is not None and ep.meta()["reason"] == "expired" and not ep.meta()["complete"]
    assert r.forget("d", "expired") is None and "d" not in r.devices
