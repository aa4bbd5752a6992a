"""Counters and the rate-limited logger."""

from __future__ import annotations

import logging

from edge_runtime.pipeline.stats import RateLimitedLog, Stats


def test_snapshot_counts_drops_and_latency() -> None:
    s = Stats(latency_window=4)
    s.incr("messages", 3)
    s.drop("non_finite")
    s.drop("oversize", 2)
    for i in range(6):
        s.record_batch(2, (i + 1) / 1000.0)
    snap = s.snapshot(provider="CPUExecutionProvider")
    assert snap["messages"] == 3 and snap["batches"] == 6 and snap["windows_scored"] == 12
    assert snap["drops"] == {"non_finite": 1, "oversize": 2} and snap["dropped_total"] == 3
    assert snap["publish_lost"] == {} and snap["publish_lost_total"] == 0
    assert snap["inference_ms_p50"] == 4.5  # ring keeps the last 4: 3, 4, 5, 6 ms
    assert snap["batch_size_mean"] == 2.0 and snap["provider"] == "CPUExecutionProvider"


def test_outgoing_losses_are_counted_apart_from_input_drops() -> None:
    s = Stats()
    s.drop("malformed_json")
    s.lose("not_connected", 2)
    s.lose("critical_lost")
    snap = s.snapshot()
    assert snap["drops"] == {"malformed_json": 1} and snap["dropped_total"] == 1
    assert snap["publish_lost"] == {"critical_lost": 1, "not_connected": 2} and snap["publish_lost_total"] == 3


def test_rate_limited_log_once_per_interval_per_reason(caplog) -> None:
    now = [0.0]
    rl = RateLimitedLog(logging.getLogger("t"), 10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING):
        assert rl.log(logging.WARNING, "non_finite", "device %s bad", "d1")
        assert not rl.log(logging.WARNING, "non_finite", "device %s bad", "d2")
        assert rl.log(logging.WARNING, "oversize", "device %s big", "d3")
        now[0] = 11.0
        assert rl.log(logging.WARNING, "non_finite", "device %s bad", "d4")
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs == ["[non_finite] device d1 bad", "[oversize] device d3 big",
                    "[non_finite] device d4 bad (1 more 'non_finite' suppressed)"]
