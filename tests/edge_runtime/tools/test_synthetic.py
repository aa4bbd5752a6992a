"""The synthetic generator: deterministic, seamless chunks, correlated channels, labelled anomalies."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from edge_runtime.tools import synthetic as syn


def test_normal_series_is_deterministic_and_shaped() -> None:
    a = syn.normal_series(500, 5, seed=3)
    b = syn.normal_series(500, 5, seed=3)
    assert a.shape == (500, 5) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, syn.normal_series(500, 5, seed=4))


@pytest.mark.parametrize("cut", [1, 700, 1024, 1500])
def test_consecutive_chunks_join_seamlessly(cut: int) -> None:
    whole = syn.normal_series(3000, 4, seed=1)
    first = syn.normal_series(cut, 4, seed=1, start=0)
    rest = syn.normal_series(3000 - cut, 4, seed=1, start=cut)
    np.testing.assert_array_equal(np.concatenate([first, rest]), whole)


def test_channels_are_correlated_and_not_constant() -> None:
    x = syn.normal_series(5000, 4, seed=0)
    corr = np.corrcoef(x.T)
    off_diag = np.abs(corr[~np.eye(4, dtype=bool)])
    assert off_diag.max() > 0.5
    assert np.all(x.std(axis=0) > 0)


def test_channel_names_unique_and_realistic() -> None:
    names = syn.channel_names(12)
    assert names[:3] == ["pressure", "temperature", "vibration"]
    assert len(set(names)) == 12


@pytest.mark.parametrize("kind", syn.ANOMALY_KINDS)
def test_inject_changes_only_the_span_and_channel(kind: str) -> None:
    x = syn.normal_series(400, 3, seed=0)
    a = syn.Anomaly(kind, 100, 160, (1,))
    y = syn.inject(x, a, seed=2)
    assert y is not x
    np.testing.assert_array_equal(y[:100], x[:100])
    np.testing.assert_array_equal(y[160:], x[160:])
    np.testing.assert_array_equal(y[:, [0, 2]], x[:, [0, 2]])
    assert not np.allclose(y[100:160, 1], x[100:160, 1])


def test_inject_rejects_bad_spans() -> None:
    x = syn.normal_series(100, 2)
    with pytest.raises(ValueError, match="past the series length"):
        syn.inject(x, syn.Anomaly("spike", 50, 150, (0,)))
    with pytest.raises(ValueError, match="unknown anomaly kind"):
        syn.Anomaly("meteor", 1, 2, (0,))


def test_random_anomalies_do_not_overlap_and_labels_match() -> None:
    an = syn.random_anomalies(5000, 4, 10, seed=1, min_len=20, max_len=60)
    assert [a.kind for a in an[:6]] == list(syn.ANOMALY_KINDS)
    spans = sorted((a.start, a.end) for a in an)
    assert all(e1 <= s2 for (_, e1), (s2, _) in zip(spans, spans[1:], strict=False))
    x, labels = syn.labelled_series(5000, 4, an, seed=1)
    assert labels.dtype == np.int8 and labels.sum() == sum(a.end - a.start for a in an)


def test_module_does_not_import_torch() -> None:
    code = "import sys, edge_runtime.tools.synthetic, edge_runtime.pipeline.windowing_offline; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_main_writes_labelled_csv(tmp_path) -> None:
    out = tmp_path / "x.csv"
    assert syn.main([str(out), "--steps", "600", "--channels", "3", "--anomalies", "2"]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "timestamp,pressure,temperature,vibration,anomaly"
    assert len(lines) == 601


def test_stops_sit_at_the_off_level_and_run_up_again():
    names = syn.channel_names(4)  # pressure, temperature, vibration, current
    x = syn.normal_series(3000, 4, seed=1)
    y = syn.apply_stops(x, names, [(1000, 1500)], settle=30)
    assert np.array_equal(y[:1000], x[:1000])
    assert np.abs(y[1010:1500, 0]).max() < 0.1  # pressure ~0 while stopped
    assert y[1499, 1] < x[1499, 1] - 10  # the temperature cooled
    assert np.allclose(y[1600:, 0], x[1600:, 0], atol=0.05)  # pressure back after the run-up
    with pytest.raises(ValueError):
        syn.apply_stops(x, names, [(2900, 3100)])


def test_sensor_faults():
    x = syn.normal_series(500, 3, seed=2)
    f = syn.sensor_fault(x, "freeze", 100, 200, [1])
    assert np.all(f[100:200, 1] == x[99, 1]) and np.array_equal(f[:, 0], x[:, 0])
    assert np.isnan(syn.sensor_fault(x, "dropout", 10, 20, [0])[10:20, 0]).all()
    far = syn.sensor_fault(x, "out_of_range", 10, 20, [2])[15, 2]
    assert far > x[:, 2].max() + 10 * x[:, 2].std()
    assert syn.KIND_CLASS["stuck"] == "sensor" and syn.KIND_CLASS["drift"] == "process"
    with pytest.raises(ValueError):
        syn.sensor_fault(x, "dead", 0, 1, [0])
