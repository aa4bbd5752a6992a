"""The evidence recorder: pre-raise ring, episode from before the raise to after the clear, bounds."""

from __future__ import annotations

import numpy as np

from edge_runtime.pipeline.evidence import VERSION, EvidenceRecorder, merge_resumed

W, HOP, C = 4, 2, 2


def windows(x: np.ndarray, t0: float, starts: range):
    """Windows of ``x`` (n, C) at ``starts``, samples 1 s apart from ``t0``."""
    w = np.stack([x[s : s + W] for s in starts]).astype(np.float32)
    ts = np.array([t0 + s for s in starts], np.float64)
    return w, ts, ts + W - 1


def feed(r: EvidenceRecorder, x: np.ndarray, starts: range, alerts=(), expected=None):
    w, t0, t1 = windows(x, 0.0, starts)
    k = len(starts)
    return r.observe("d", w, t0, t1, np.ones(k), np.ones((k, C)), list(alerts), "m1", 1.0, ["a", "b"], {"a": "bar"},
                     expected)


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


def test_the_peak_is_the_alerts_peak_not_its_raise_score() -> None:
    x = np.zeros((100, 2), np.float32)
    r = EvidenceRecorder(margin_s=1.0, ring_samples=100)
    feed(r, x, range(0, 10, HOP), [{"event": "raise", "alert_id": "d:1", "raised_alert_id": "d:1", "score": 3.0,
                                    "peak_score": 3.0, "window_end": 13.0, "anomalous_since": 11.0}])
    clear = {"event": "clear", "alert_id": "d:2", "raised_alert_id": "d:1", "score": 0.1, "peak_score": 9.5,
             "window_end": 21.0}
    feed(r, x, range(10, 20, HOP), [clear])
    _, done = feed(r, x, range(20, 30, HOP))
    (ep,) = done
    assert ep.meta()["peak_score"] == 9.5  # the score rose after the raise, with no update published


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


def test_a_cleared_episode_of_a_device_gone_quiet_is_finished_with_what_it_has() -> None:
    """The device stopped sending before the margin after the clear passed: no more is coming, so its episode is
    finished complete (it stayed open until the device expired); a raised one stays open."""
    x = np.zeros((100, 2), np.float32)
    r = EvidenceRecorder(margin_s=60.0)
    feed(r, x, range(0, 10, HOP), [{"event": "raise", "alert_id": "d:1", "window_end": 5.0, "anomalous_since": 4.0}])
    assert r.finish_quiet("d") is None  # still raised: it stays open
    _, done = feed(r, x, range(10, 20, HOP), [{"event": "clear", "alert_id": "d:2", "raised_alert_id": "d:1",
                                               "window_end": 21.0}])
    assert done == []  # the margin after the clear runs until 81
    ep = r.finish_quiet("d")
    assert ep is not None and ep.meta()["complete"] and ep.meta()["cleared_end"] == 21.0
    assert r.finish_quiet("d") is None and r.devices["d"].episode is None and r.finish_quiet("nobody") is None


def curve(k: float) -> np.ndarray:
    return np.full((W, C), k, np.float32) + np.arange(W, dtype=np.float32)[:, None]


def test_the_raise_and_update_windows_expected_curves_are_kept_with_their_times_and_bounded() -> None:
    x = np.zeros((400, 2), np.float32)
    r = EvidenceRecorder(margin_s=2.0, max_expected=3)
    raise_ = {"event": "raise", "alert_id": "d:1", "window_end": 13.0, "anomalous_since": 11.0}
    # windows start 8, 10: the raise is the second (ends 13); a curve of a window without an alert is ignored
    (ep,), _ = feed(r, x, range(8, 12, HOP), [raise_], {1: curve(1.0), 0: curve(99.0)})
    for n, start in enumerate(range(12, 20, HOP)):  # four updates, each from its batch's only window
        feed(r, x, range(start, start + HOP, HOP),
             [{"event": "update", "alert_id": f"d:{n + 2}", "window_end": start + W - 1.0}], {0: curve(2.0 + n)})
    feed(r, x, range(20, 22, HOP), [{"event": "clear", "alert_id": "d:9", "window_end": 23.0}], {0: curve(50.0)})
    _, (done,) = feed(r, x, range(30, 40, HOP))
    a, m = done.arrays(), done.meta()
    assert a["expected"].shape == (3, W, C) and a["expected"].dtype == np.float32
    np.testing.assert_array_equal(a["expected"][:, 0, 0], [1.0, 2.0, 3.0])  # the raise's, then the first updates
    np.testing.assert_array_equal(a["exp_start"], [10.0, 12.0, 14.0])
    np.testing.assert_array_equal(a["exp_end"], a["exp_start"] + W - 1)
    assert m["version"] == VERSION == 2 and m["expected_windows"] == 3 and m["expected_dropped"] == 2


def test_a_resumed_alert_joins_a_version_1_file_without_expected_curves() -> None:
    old_meta = {"alert_id": "d:1", "channels": ["a", "b"], "samples": 2, "windows": 1}  # no version: 1
    old = {"ts": np.array([1.0, 2.0]), "values": np.zeros((2, C), np.float32), "win_end": np.array([2.0]),
           "win_score": np.array([2.0]), "win_error": np.zeros((1, C), np.float32)}
    new_meta = {"version": 2, "alert_id": "d:1", "channels": ["a", "b"], "samples": 1, "windows": 1,
                "expected_windows": 1}
    new = {"ts": np.array([3.0]), "values": np.zeros((1, C), np.float32), "win_end": np.array([3.0]),
           "win_score": np.array([2.0]), "win_error": np.zeros((1, C), np.float32),
           "exp_start": np.array([0.0]), "exp_end": np.array([3.0]), "expected": curve(7.0)[None]}
    meta, arrays = merge_resumed((old_meta, old), (new_meta, new))
    assert meta["version"] == 2 and meta["samples"] == 3 and meta["expected_windows"] == 1
    assert arrays["ts"].tolist() == [1.0, 2.0, 3.0] and arrays["expected"].shape == (1, W, C)
    meta, arrays = merge_resumed((new_meta, new), (new_meta, new))  # both with curves: joined
    assert arrays["expected"].shape == (2, W, C) and arrays["exp_start"].tolist() == [0.0, 0.0]
