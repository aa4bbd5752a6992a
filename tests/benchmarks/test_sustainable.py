"""The live sustainable-rate criterion used by ``edgewatch-lab bench latency``."""

from __future__ import annotations

from typing import Any

from lab.bench.ingest import keeps_up


def _run(**over: Any) -> dict[str, Any]:
    r = {"target_rate": 1000.0, "achieved_publish_rate": 990.0, "windows_expected": 50, "windows_scored": 50,
         "scores_received": 50, "drops": {}, "broker_dropped": 0, "score_ms": {"p50": 2.0, "p99": 9.0, "p99.9": 12.0}}
    r.update(over)
    return r


def test_keeps_up_only_when_nothing_lost_and_no_backlog() -> None:
    assert keeps_up(_run())
    assert not keeps_up(_run(achieved_publish_rate=900.0))  # the publishers could not hold the pace
    assert not keeps_up(_run(windows_scored=49))
    assert not keeps_up(_run(scores_received=49))
    assert not keeps_up(_run(drops={"queue_full": 1}))
    assert not keeps_up(_run(broker_dropped=3))
    assert not keeps_up(_run(score_ms={"p50": 900.0, "p99": 1700.0, "p99.9": 1800.0}))  # a backlog built up
    assert not keeps_up(_run(score_ms={"p50": None, "p99": None, "p99.9": None}))
