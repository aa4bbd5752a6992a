"""The evidence store: size and age bounds (oldest evicted), survival across restarts, corrupt files, a folder
that cannot be written; the recorder and the store together under a flood of alerts."""

from __future__ import annotations

import resource
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.pipeline.evidence import EvidenceRecorder
from edge_runtime.pipeline.stats import Stats
from edge_runtime.service.evidence_store import Evidence, EvidenceError, EvidenceStore, decode, file_name

C = 3


def episode(i: int, n: int = 400, seed: int = 0) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed + i)
    meta = {"alert_id": f"pump:{i}", "device": "pump", "model_id": "m1", "threshold": 1.0, "channels": ["a", "b", "c"]}
    arrays = {"ts": np.arange(n, dtype=np.float64) + 1000 * i, "values": rng.standard_normal((n, C)).astype(np.float32),
              "win_end": np.arange(n // 8, dtype=np.float64), "win_score": rng.random(n // 8),
              "win_error": rng.random((n // 8, C)).astype(np.float32)}
    return meta, arrays


def test_the_oldest_alerts_are_evicted_past_the_size_limit_and_the_folder_never_exceeds_it(tmp_path: Path) -> None:
    clock = iter(range(10_000))
    stats = Stats()
    store = EvidenceStore(tmp_path, max_bytes=60_000, max_age_s=0, stats=stats, clock=lambda: float(next(clock)))
    for i in range(40):
        assert store.write(*episode(i))
        on_disk = sum(p.stat().st_size for p in tmp_path.iterdir())
        assert on_disk <= 60_000 and on_disk == store.total_bytes()
    kept = [e.alert_id for e in store.entries()]
    assert kept and kept[-1] == "pump:39" and "pump:0" not in kept
    assert kept == [f"pump:{i}" for i in range(40 - len(kept), 40)]  # the newest, oldest evicted first
    assert stats.counts["evidence_evicted"] == 40 - len(kept) and stats.counts["evidence_written"] == 40


def test_age_limit_and_restart_survival(tmp_path: Path) -> None:
    now = [100.0]
    store = EvidenceStore(tmp_path, max_bytes=1 << 20, max_age_s=50, clock=lambda: now[0])
    store.write(*episode(1))
    now[0] = 120.0
    store.write(*episode(2))
    meta, arrays = EvidenceStore(tmp_path, max_bytes=1 << 20, max_age_s=0).read("pump:2")  # a new process
    assert meta["alert_id"] == "pump:2" and np.array_equal(arrays["values"], episode(2)[1]["values"])
    now[0] = 160.0
    store.write(*episode(3))  # pump:1 (written at 100) is now older than 50 s
    assert [e.alert_id for e in store.entries()] == ["pump:2", "pump:3"]
    with pytest.raises(EvidenceError, match="no evidence for alert 'pump:1'"):
        store.read("pump:1")


def test_a_corrupt_file_is_removed_and_counted_and_the_others_are_kept(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path)
    store.write(*episode(1))
    store.write(*episode(2))
    path = tmp_path / file_name("pump:1")
    path.write_bytes(path.read_bytes()[:100])  # cut short
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    (tmp_path / "pump:9.tmp").write_bytes(b"half a write")
    stats = Stats()
    again = EvidenceStore(tmp_path, stats=stats)
    assert [e.alert_id for e in again.entries()] == ["pump:2"]
    assert stats.drops["evidence_corrupt"] == 2 and sorted(p.name for p in tmp_path.iterdir()) == [file_name("pump:2")]
    with pytest.raises(ValueError, match="not an evidence file"):
        decode(b"garbage")


def test_an_unusable_folder_degrades_the_store_not_the_caller(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("a file where the folder should be")  # unusable even for root
    stats = Stats()
    store = EvidenceStore(tmp_path / "file" / "evidence", stats=stats)
    assert not store.usable and stats.drops["evidence_write_error"] == 1
    assert store.write(*episode(1)) is False and stats.drops["evidence_write_error"] == 2


def test_a_full_disk_is_counted_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stats = Stats()
    store = EvidenceStore(tmp_path, stats=stats)
    real_open = open

    def full(path, mode="r", *a, **kw):
        if "w" in mode and str(path).endswith(".tmp"):
            raise OSError(28, "No space left on device")
        return real_open(path, mode, *a, **kw)

    monkeypatch.setattr("builtins.open", full)
    assert store.write(*episode(1)) is False
    monkeypatch.undo()
    assert stats.drops["evidence_write_error"] == 1 and list(tmp_path.iterdir()) == []
    assert store.write(*episode(2))  # space again: it works again


def flood(folder: Path, hours: float, max_bytes: int, alert_every_s: float = 4.0) -> tuple[EvidenceStore, Stats, list[float]]:
    """A simulated stream of ``hours`` (1 Hz, W=16, hop 2, 4 channels) with an alert every ``alert_every_s``,
    fed through the recorder and the store at full speed; RSS (MiB) sampled along the way."""
    from edge_runtime.pipeline.alerts import AlertTracker
    from edge_runtime.pipeline.hysteresis import AlertPolicy

    w, hop, c = 16, 2, 4
    stats = Stats()
    store = EvidenceStore(folder, max_bytes=max_bytes, max_age_s=0, stats=stats)
    ev = Evidence(store, EvidenceRecorder(margin_s=10.0, ring_samples=256), stats, queue_max=10_000)
    tracker = AlertTracker(AlertPolicy(1, 1, 0.8, 3), "soak")
    rng = np.random.default_rng(0)
    n = int(hours * 3600)
    period = int(alert_every_s)
    rss = []
    block = 400  # samples per call
    for b0 in range(0, n - w, block):
        starts = np.arange(b0, min(b0 + block, n - w), hop)
        t0 = starts.astype(np.float64)
        x = rng.standard_normal((len(starts), w, c)).astype(np.float32)
        cycle = max(2, period // hop)  # windows per alert: the first above (raise), the rest below (clear)
        scores = np.where((starts // hop) % cycle == 0, 2.0, 0.1)
        ce = rng.random((len(starts), c)).astype(np.float32)
        alerts = tracker.update("dev", scores, ce, t0, t0 + w - 1, 1.0, ["a", "b", "c", "d"], "m1")
        ev.observe("dev", x, t0, t0 + w - 1, scores, ce, alerts, "m1", 1.0, ["a", "b", "c", "d"], {})
        while ev._q.qsize():
            item = ev._q.get_nowait()
            ev._write(item)
        if b0 % (block * 50) == 0:
            rss.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return store, stats, rss


def test_a_flood_of_alerts_stays_within_the_size_limit(tmp_path: Path) -> None:
    store, stats, _ = flood(tmp_path, hours=0.1, max_bytes=40_000)
    assert stats.counts["evidence_written"] > 60 and stats.counts["evidence_evicted"] > 0
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) <= 40_000


@pytest.mark.soak
def test_soak_an_hour_of_alerts_every_few_seconds_stays_bounded_on_disk_and_in_memory(tmp_path: Path) -> None:
    store, stats, rss = flood(tmp_path, hours=1.0, max_bytes=256 << 10)
    on_disk = sum(p.stat().st_size for p in tmp_path.iterdir())
    print(f"\nevidence soak: {stats.counts['evidence_written']} writes, {stats.counts['evidence_evicted']} evicted, "
          f"{len(store.index)} kept, {on_disk} bytes on disk (limit {256 << 10}), max RSS {rss[0]:.1f} -> {rss[-1]:.1f} MiB")
    assert on_disk <= 256 << 10 and stats.counts["evidence_written"] > 1600 and stats.counts["evidence_evicted"] > 500
    half = len(rss) // 2
    assert rss[-1] - rss[half] < 10, rss  # no growth over the second half of the hour


def test_a_stop_writes_the_open_alerts_evidence_marked_incomplete(tmp_path: Path) -> None:
    stats = Stats()
    store = EvidenceStore(tmp_path, stats=stats)
    ev = Evidence(store, EvidenceRecorder(margin_s=5.0), stats)
    ev.start()
    w = np.zeros((3, 4, C), np.float32)
    t0 = np.array([0.0, 2.0, 4.0])
    raise_ = {"event": "raise", "state": "raised", "alert_id": "d:1", "raised_alert_id": "d:1", "window_end": 7.0,
              "anomalous_since": 5.0, "score": 2.0}
    ev.observe("d", w, t0, t0 + 3, np.ones(3), np.ones((3, C)), [raise_], "m1", 1.0, ["a", "b", "c"], {})
    ev.stop(5.0)
    meta, arrays = EvidenceStore(tmp_path).read("d:1")
    assert meta["reason"] == "stopped" and meta["complete"] is False and len(arrays["ts"]) == 8  # 0..7, each once
    assert stats.counts["evidence_written"] == 2  # at the raise, and at the stop


@pytest.mark.parametrize("kept", [True, False])
def test_an_adopted_alerts_evidence_joins_the_file_its_raise_wrote_or_starts_one(tmp_path: Path, kept: bool) -> None:
    """After a restart (the alert adopted as raised): its windows and clear go on in the same record; when that
    file is gone (evicted), what the resumed part holds is written alone."""
    if kept:
        stats = Stats()
        first = Evidence(EvidenceStore(tmp_path, stats=stats), EvidenceRecorder(margin_s=5.0), stats)
        w = np.zeros((3, 4, C), np.float32)
        t0 = np.array([0.0, 2.0, 4.0])
        raise_ = {"event": "raise", "state": "raised", "alert_id": "d:1", "raised_alert_id": "d:1",
                  "window_end": 7.0, "anomalous_since": 5.0, "score": 2.0}
        first.observe("d", w, t0, t0 + 3, np.ones(3), np.ones((3, C)), [raise_], "m1", 1.0, ["a", "b", "c"], {})
        first.stop(5.0)  # samples 0..7, marked stopped
    stats = Stats()
    ev = Evidence(EvidenceStore(tmp_path, stats=stats), EvidenceRecorder(margin_s=5.0), stats)
    ev.resume("d", "d:1", 5.0, "m1", 1.0, ["a", "b", "c"], {})
    w = np.ones((2, 4, C), np.float32)
    t0 = np.array([10.0, 12.0])
    clear = {"event": "clear", "state": "cleared", "alert_id": "d:2", "raised_alert_id": "d:1", "window_end": 15.0,
             "score": 0.1}
    ev.observe("d", w, t0, t0 + 3, np.array([3.0, 0.1]), np.ones((2, C)), [clear], "m1", 1.0, ["a", "b", "c"], {})
    for later in (4.0, 8.0):  # normal windows up to the margin after the clear (20): finished
        ev.observe("d", w, t0 + later, t0 + later + 3, np.zeros(2), np.zeros((2, C)), [], "m1", 1.0,
                   ["a", "b", "c"], {})
    ev.stop(5.0)
    meta, arrays = EvidenceStore(tmp_path).read("d:1")
    assert meta["complete"] and meta["resumed"] and meta["cleared_end"] == 15.0
    if kept:
        assert meta["restarts"] == 1 and [e["event"] for e in meta["events"]] == ["raise", "clear"]
        assert arrays["ts"].tolist() == [*range(8), *range(10, 21)] and meta["peak_score"] == 2.0  # the raise's
    else:
        assert "restarts" not in meta and [e["event"] for e in meta["events"]] == ["clear"]
        assert arrays["ts"].tolist() == list(range(10, 21))


def test_an_unknown_alert_says_how_many_are_kept_not_an_internal_limit(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path, max_bytes=1 << 62, max_age_s=0)  # as `edgewatch evidence` opens it
    with pytest.raises(EvidenceError) as exc:
        store.read_bytes("nope")
    assert str(exc.value) == ("no evidence for alert 'nope' (0 alert(s) kept; the oldest go past "
                              "alerts.evidence_max_mb or evidence_max_age_s)")


def test_the_evidence_command_on_a_file_says_it_is_not_a_folder(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from edge_runtime.cli import main

    f = tmp_path / "x.csv"
    f.write_text("a\n")
    for where, what in ((f, "not a folder"), (tmp_path / "none", "no such folder")):
        res = CliRunner(env={"EDGEWATCH_CONFIG": ""}).invoke(main, ["evidence", "list", "--dir", str(where)])
        assert (res.exit_code, res.output.strip()) == (66, f"edgewatch evidence: error: {where}: {what} (the "
                                                          "daemon's alerts.evidence_dir)")
