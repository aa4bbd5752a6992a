"""The daemon's sensor checks replayed offline (trainer/sensor_view.py) against the daemon's own ingest path
(edge_runtime.service.ingest.Ingest fed the same samples, message by message): the same channels left out of each
window, the same windows not scored; and a masked window's score by the contract's rule. The scores against a real
daemon over MQTT: tests/reliability/test_sensor_health.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.config import Config
from edge_runtime.pipeline.health import renormalised_score
from edge_runtime.pipeline.stats import Stats
from edge_runtime.service.ingest import Ingest
from edge_runtime.service.model import load_model
from tests.edge_runtime.onnx_models import write_health_model
from trainer.sensor_view import _ood_rows, masked_scores, sensor_view

T0 = 1_700_000_000.0
CH = ["a", "b", "c", "d"]


@pytest.fixture
def model(tmp_path: Path):
    return load_model(write_health_model(tmp_path / "m.onnx", CH), provider="cpu")


def _faulty(n: int = 240) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (n, len(CH))).clip(-4, 4)
    x[20:50, 0] = 1.5  # a stuck (in range)
    x[60:90, 1] = 40.0 + rng.normal(0, 1, 30)  # b out of range and moving: a reading
    x[95:116, 0] = -1.0  # a stuck again ...
    x[95:110, 2] = np.nan  # ... while c is missing past its fill limit: two of four left out
    x[106:108, 1] = 9.0  # and b out of range for two samples (fewer than the hold): pending, not faulty
    x[125:141, 3] = 9.0  # d frozen out of range: a failed sensor's gross value
    x[150:170, 1:] = 50.0 + rng.normal(0, 1, (20, 3))  # three of four out of range at once: out of distribution
    x[200:225, 0], x[200:225, 2], x[200:225, 3] = -1.0, np.nan, 9.0  # three of four faulty: degraded
    return x


def _daemon_masks(model, x: np.ndarray, range_excludes: bool) -> dict[int, list[bool]]:
    """Window end (sample index) -> the channels the daemon's ingest left out, for each window it handed on."""
    put: list = []
    ing = Ingest(Config(range_excludes=range_excludes).validate(), model, Stats())
    ing.send = lambda msgs: None
    ing.put = lambda item: put.append(item) or 0
    for i, row in enumerate(x.tolist()):
        ing.handle("sensors/p/data", json.dumps({"ts": T0 + i, "values": [None if v != v else v for v in row]}).encode())
    out = {}
    for it in put:
        for k in range(it.n):
            out[int(round(it.t_end[k] - T0))] = [False] * len(CH) if it.excluded is None else it.excluded.tolist()
    return out


@pytest.mark.parametrize("range_excludes", [False, True])
def test_the_offline_view_leaves_out_and_skips_what_the_daemon_does(model, range_excludes: bool) -> None:
    x = _faulty()
    daemon = _daemon_masks(model, x, range_excludes)
    view = sensor_view(model.metadata, x, range_excludes=range_excludes)
    assert view is not None
    w, hop = model.metadata.window, model.metadata.hop
    ends = range(w - 1, len(x), hop)  # the windows the daemon cuts
    offline = {e: view.excluded[e - w + 1].tolist() for e in ends if view.scored[e - w + 1]}
    assert offline == daemon
    # three of four far out after running in range: a process excursion, scored as the daemon scores it (with
    # range_excludes those three are left out: degraded)
    i = 160 - w + 1
    assert not view.out_of_distribution[i] and view.scored[i] != range_excludes and view.degraded[i] == range_excludes
    assert daemon[47][0] and daemon[139][3]  # stuck a, and d frozen out of range, are left out either way
    assert daemon[87][1] == range_excludes  # b out of range but moving: left out only with the option
    assert 107 in daemon and daemon[107][1] == range_excludes  # two of four faulty: not degraded; b pending
    assert view.degraded[215 - w + 1] and 215 not in daemon  # degraded: not scored, offline and in the daemon


@pytest.mark.parametrize("range_excludes", [False, True])
def test_far_out_from_the_start_is_out_of_distribution_offline_as_in_the_daemon(model, range_excludes: bool) -> None:
    x = _faulty()
    x[:30, 1:] = 50.0 + np.random.default_rng(5).normal(0, 1, (30, 3))  # an operating point far from training
    daemon = _daemon_masks(model, x, range_excludes)
    view = sensor_view(model.metadata, x, range_excludes=range_excludes)
    assert view is not None
    w, hop = model.metadata.window, model.metadata.hop
    offline = {e: view.excluded[e - w + 1].tolist() for e in range(w - 1, len(x), hop) if view.scored[e - w + 1]}
    assert offline == daemon
    assert view.out_of_distribution[0] and 20 not in daemon  # not scored, offline and in the daemon
    i = 160 - w + 1  # the later stretch: the device had run in range, an excursion (range_excludes: degraded)
    assert not view.out_of_distribution[i] and view.scored[i] != range_excludes


def test_a_stretch_after_a_restart_is_out_of_distribution_until_the_device_ran_in_range() -> None:
    far = np.zeros(200, dtype=bool)
    far[[50, 51, 52]] = True  # 50 rows in range before: an excursion (window 8: 16 rows suffice)
    far[[110, 111]] = True  # 10 rows after a restart at 100: out of distribution
    far[[150]] = True  # after that stretch ended: an excursion again
    ood = _ood_rows(far, 8, np.array([100]))
    assert not ood[50:70].any() and ood[110:127].all() and not ood[127] and not ood[150:].any()
    assert _ood_rows(far, 8).sum() == 0  # no restart: every stretch comes after 16 rows in range
    assert _ood_rows(far, 8, np.array([40])).sum() == 3 + 15  # 10 rows after the restart at 40


def test_masked_scores_are_the_daemons_renormalised_scores(model) -> None:
    x = _faulty()
    view = sensor_view(model.metadata, x)
    assert view is not None
    w = model.metadata.window
    raw = np.array([model.run(x[i : i + w][None].astype(np.float32))[0][0] for i in range(len(x) - w + 1)])
    got = masked_scores(model, np.nan_to_num(x), raw, view)
    k = int(np.flatnonzero(view.excluded[:, 0] & view.scored)[0])  # a window without the stuck channel
    win = np.nan_to_num(x[k : k + w]).astype(np.float32).copy()
    win[:, 0] = model.metadata.normalisation.mean[0]  # the daemon fills it with the training mean
    _, ce = model.run(win[None])
    assert got[k] == pytest.approx(float(renormalised_score(ce, view.excluded[k], None, model.metadata.score_power())[0]))


def test_masked_windows_far_apart_are_scored_without_copying_the_stretch_between(model) -> None:
    import tracemalloc

    from trainer.sensor_view import SensorView

    t, w = 1_000_000, model.metadata.window
    x = np.zeros((t, len(CH)), dtype=np.float32)
    n = t - w + 1
    excluded = np.zeros((n, len(CH)), dtype=bool)
    excluded[:2, 0] = excluded[-2:, 0] = True  # one masked window pair at each end of a long recording
    view = SensorView(excluded, np.zeros(n, dtype=bool), np.zeros(n, dtype=bool))
    tracemalloc.start()
    out = masked_scores(model, x, np.zeros(n), view)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert np.count_nonzero(out) <= 4
    assert peak < 40e6, peak  # the windows between (1 M x 8 x 4 float32 = 128 MB) are never copied


@pytest.mark.parametrize("block", [5, 7, 13, 64])
def test_checked_in_blocks_the_replay_is_the_same(model, monkeypatch, block: int) -> None:
    """The replay feeds the checks in blocks of rows (bounded memory on long recordings): any block size, the same
    masks and the same windows not scored, with operating states (a stop mid-recording) too."""
    import trainer.sensor_view as sv

    x = _faulty()
    running = np.ones(len(x), dtype=bool)
    running[112:118] = False
    for kw in ({}, {"range_excludes": True}, {"running": running}):
        whole = sensor_view(model.metadata, x, **kw)
        monkeypatch.setattr(sv, "BLOCK_ROWS", block)
        parts = sensor_view(model.metadata, x, **kw)
        monkeypatch.setattr(sv, "BLOCK_ROWS", 65_536)
        assert whole is not None and parts is not None
        for name in ("excluded", "degraded", "out_of_distribution"):
            np.testing.assert_array_equal(getattr(parts, name), getattr(whole, name), err_msg=f"{kw} {name}")
