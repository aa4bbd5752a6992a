"""Issue 20 item 3 (and the decoder parts of item 10): one far-future timestamp no longer blinds a device,
a device whose clock jumps back for good is reset, dropped samples do not keep a device alive, and numbers
are read the same in every payload form.

The first test: real Mosquitto, an in-process daemon, a really exported ONNX file. The others drive
:class:`~edge_runtime.service.ingest.Ingest` (real decoder and window store) with a real model, no broker."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.config import build_config
from edge_runtime.pipeline.batcher import WindowBuffer
from edge_runtime.pipeline.decode import DecodeError, Decoder
from edge_runtime.pipeline.stats import Stats
from edge_runtime.service.ingest import Ingest
from edge_runtime.service.model import load_model
from tests.edge_runtime.mqtt_helpers import Collector, Publisher, idle, running_daemon, wait_until
from tests.edge_runtime.onnx_models import CHANNELS4, make_metadata, series, write_model

W, HOP = 16, 4
YEAR = 365.25 * 86400


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return write_model(tmp_path / "m.onnx", make_metadata(window=W, hop=HOP, threshold=0.5))


def _send(pub: Publisher, device: str, x: np.ndarray, t0: float) -> None:
    for i in range(x.shape[0]):
        pub.send(f"sensors/{device}/data", json.dumps({"ts": t0 + i, "values": x[i].tolist()}))


def test_a_far_future_sample_is_refused_and_the_raised_device_clears(mosquitto, model: Path) -> None:
    col = Collector(mosquitto.port, ["alerts/#"])
    t0 = time.time() - 3000
    with running_daemon(mosquitto.url, model, log_interval_s=3600.0) as d:
        pub = Publisher(mosquitto.port)
        x = series(60, seed=2)
        x[:, 1] += 4.0 * np.random.default_rng(2).standard_normal(60).astype(np.float32)
        _send(pub, "dev", x, t0)  # anomalous: raises
        pub.flush()
        wait_until(lambda: any(a["state"] == "raised" for a in col.alerts()), 10, "raised")
        pub.send("sensors/dev/data", json.dumps({"ts": time.time() + 20 * YEAR, "values": [0, 0, 0, 0]}))
        _send(pub, "dev", series(200, seed=3), t0 + 100)
        pub.close()
        wait_until(lambda: d.stats.counts["samples"] >= 260, 10, "normal samples accepted")
        idle(d)
        assert d.stats.drops["future"] == 1
        assert d.stats.drops["out_of_order"] == 0
        wait_until(lambda: any(a["state"] == "cleared" for a in col.alerts()), 10, "cleared")
    col.close()


def _ingest(model_path: Path, **overrides: object) -> tuple[Ingest, WindowBuffer, Stats]:
    cfg = build_config(None, {"path": str(model_path), "instance": "t", "log_interval_s": 3600.0, **overrides})
    stats = Stats()
    buf = WindowBuffer(10_000)
    return Ingest(cfg, load_model(model_path), stats, buf.put), buf, stats


def _one(ing: Ingest, device: str, t: float, csv: bool = False) -> None:
    payload = f"{t!r},1,2,3,4" if csv else json.dumps({"ts": t, "values": [1, 2, 3, 4]})
    ing.handle(f"sensors/{device}/data", payload.encode())


@pytest.mark.parametrize("csv", [False, True])
def test_a_device_whose_clock_jumps_back_for_good_is_reset(model: Path, csv: bool) -> None:
    ing, buf, stats = _ingest(model)
    t = time.time() - 1000
    for i in range(40):
        _one(ing, "rebooted", t + i, csv)
    for i in range(100):  # rebooted: its clock starts again from 0
        _one(ing, "rebooted", 1000.0 + i, csv)
    assert stats.counts["clock_resets"] == 1
    after = stats.counts["samples"] - 40
    assert stats.drops["out_of_order"] + after == 100
    assert after >= 100 - ing.cfg.clock_reset_after
    assert buf.n == (40 - W) // HOP + 1 + (after - W) // HOP + 1  # windows from the new clock too


def test_a_few_late_samples_are_dropped_not_a_reset(model: Path) -> None:
    ing, _, stats = _ingest(model)
    t = time.time() - 1000
    for i in range(40):
        _one(ing, "late", t + i)
    for i in range(3):
        _one(ing, "late", t + i)
    _one(ing, "late", t + 41)
    assert stats.drops["out_of_order"] == 3 and stats.counts["clock_resets"] == 0


def test_dropped_samples_do_not_refresh_last_seen(model: Path) -> None:
    ing, _, _ = _ingest(model, clock_reset_after=1000)
    t = time.time() - 1000
    _one(ing, "stale", t + 10)
    seen = ing.store.devices["stale"].last_seen
    time.sleep(0.01)
    for i in range(5):
        _one(ing, "stale", t + i)  # all out of order
    assert ing.store.devices["stale"].last_seen == seen
    assert ing.store.expire(seen + 1.0, 1.0) == ["stale"]


@pytest.mark.parametrize("payload", [b"1_7e9,1,2,3,4", b"1,2_0,3,4", b"1.0,2,3,4_4"])
def test_underscores_in_numbers_are_refused(payload: bytes) -> None:
    with pytest.raises(DecodeError) as exc:
        Decoder(CHANNELS4).decode(payload, 0.0)
    assert exc.value.reason in ("non_numeric", "bad_timestamp")


def test_future_tolerance_is_configurable_and_applies_to_every_form() -> None:
    now = 1_700_000_000.0
    dec = Decoder(CHANNELS4, max_future_s=60.0)
    ok = now + 59
    for p in [json.dumps({"ts": ok, "values": [1, 2, 3, 4]}), f"{ok!r},1,2,3,4",
              json.dumps({"ts": [now, ok], "values": [[1, 2, 3, 4]] * 2})]:
        dec.decode(p.encode(), now)
    bad = now + 61
    for p in [json.dumps({"ts": bad, "values": [1, 2, 3, 4]}), f"{bad!r},1,2,3,4",
              json.dumps({"ts": [now, bad], "values": [[1, 2, 3, 4]] * 2}),
              json.dumps([{"ts": bad, "values": [1, 2, 3, 4]}]),
              json.dumps({"ts": "2999-01-01T00:00:00Z", **dict.fromkeys(CHANNELS4, 1)}),
              json.dumps({"ts": bad * 1000, "values": [1, 2, 3, 4]})]:  # in ms
        with pytest.raises(DecodeError) as exc:
            dec.decode(p.encode(), now)
        assert exc.value.reason == "future", p
    Decoder(CHANNELS4, max_future_s=0.0).decode(json.dumps({"ts": bad * 10, "values": [1, 2, 3, 4]}).encode(), now)


def test_integer_literals_read_like_the_same_float() -> None:
    dec = Decoder(CHANNELS4)
    big = dec.decode(b'{"values":[1000000000000000000000000000000,2,3,4]}', 0.0).values
    assert big.tolist() == dec.decode(b'{"values":[1e30,2,3,4]}', 0.0).values.tolist()
    batch = dec.decode(b'{"values":[[1000000000000000000000000000000,2,3,4]]}', 0.0).values
    assert batch[0, 0] == np.float32(1e30)
    with pytest.raises(DecodeError) as exc:
        dec.decode(b'{"values":[' + b"9" * 400 + b',2,3,4]}', 0.0)
    assert exc.value.reason == "non_finite"
    with pytest.raises(DecodeError) as exc:
        dec.decode(b'{"values":[["1", 2, 3, 4]]}', 0.0)
    assert exc.value.reason == "non_numeric"


def test_duplicates_are_still_detected_after_a_reload_that_changes_w(model: Path, tmp_path: Path) -> None:
    ing, _, stats = _ingest(model)
    t = time.time() - 1000
    for i in range(20):
        _one(ing, "dup", t + i)
    other = load_model(write_model(tmp_path / "m32.onnx", make_metadata(window=32, hop=HOP, threshold=0.5)))
    ing.configure(other, keep_windows=False)  # what a reload to another W does
    _one(ing, "dup", t + 19)  # sent again (a redelivery)
    _one(ing, "dup", t + 5)
    assert stats.drops["duplicate"] == 1 and stats.drops["out_of_order"] == 1
    _one(ing, "dup", t + 20)
    assert stats.counts["samples"] == 21 and stats.counts["gaps"] == 0


def test_simulated_and_replayed_streams_never_run_ahead_of_the_clock() -> None:
    from edge_runtime.tools.simulate import stream_start

    now, duration = 1_800_000_000.0, 600.0
    assert stream_start(now, duration, 1.0) == now  # real time: starts now, each sample stamped as sent
    for speed in (0.0, 2.0, 10.0, 1000.0):  # 0: --fast
        t0 = stream_start(now, duration, speed)
        sent_last = now + (duration / speed if speed else 0.0)  # wall time the last sample leaves
        assert t0 + duration <= sent_last + 1e-6
        assert sent_last - (t0 + duration) < 300.0  # and not far behind it either
