"""`edgewatch-lab bench scale-out`: the pure parts (the CPU ceiling, the server's time stamps, the report)."""

from __future__ import annotations

import datetime as dt

import pytest

from lab.bench.common import summary
from lab.bench.scaleout import _rfc3339, ceiling, scaleout_md


@pytest.mark.parametrize(("w", "s", "cores", "want"), [
    (30.0, 10.0, 2, 1.5),  # two workers on two cores share them with the server: 2 / 40 vs 1 / 30
    (200.0, 10.0, 2, 1.9),  # batched payloads: the server's share is small
    (10.0, 30.0, 2, 1.0),  # the server is the bottleneck: one worker already fills what it leaves
    (30.0, 0.0, 2, 2.0),
])
def test_ceiling_is_the_cpu_bound_ratio(w: float, s: float, cores: int, want: float) -> None:
    assert ceiling(w, s, cores) == pytest.approx(want, abs=0.01)


def test_server_time_stamps_keep_nanoseconds() -> None:
    t = _rfc3339("2026-12-01T15:55:11.439541893Z")
    want = dt.datetime(2026, 12, 1, 15, 55, 11, tzinfo=dt.timezone.utc).timestamp() + 0.439541893
    assert t == pytest.approx(want, abs=1e-6)
    assert _rfc3339(None) == 0.0 and _rfc3339("2026-12-01T15:55:11Z") == pytest.approx(want - 0.439541893)


def _kind(rates: dict[int, list[float]], spm: int) -> dict:
    runs = {n: [{"msg_rate": r, "load_avg_before": [1.0, 1.0, 1.0]} for r in v] for n, v in rates.items()}
    nats = {str(n): {"runs": runs[n], "msg_rate": summary(v), "sample_rate": summary([x * spm for x in v]),
                     "speedup": summary([x / b for x, b in zip(v, rates[1], strict=True)], 2),
                     "worker_cpu_ms_per_1k": summary([30.0]), "server_cpu_ms_per_1k": summary([10.0]),
                     "cores_busy": summary([1.0]), "cores_others": summary([0.5])} for n, v in rates.items()}
    return {"messages": 1000, "samples_per_message": spm, "nats": nats, "ceiling_on_idle_cores": 1.5}


def test_report_says_met_or_missed_per_flood_kind() -> None:
    r = {"devices": 10, "partitions": 16, "cpus": 2, "repeats": 3, "load_avg_start": [1.0, 1, 1],
         "load_avg_end": [2.0, 1, 1],
         "kinds": {"single": _kind({1: [100, 110, 90], 2: [130, 150, 140]}, 1),
                   "batch": _kind({1: [10, 10, 10], 2: [17, 18, 16]}, 50)}}
    md = scaleout_md(r)
    single, batch = md.split("### batch")
    assert "2 workers vs 1: 1.36x (target 1.6x: **missed**)" in single
    assert "2 workers vs 1: 1.70x (target 1.6x: **met**)" in batch
    assert "| NATS, 2 worker(s) | 140 (130-150) | 140 (130-150) | 1.36 (1.30-1.56)x" in single
