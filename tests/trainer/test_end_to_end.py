"""Train -> export -> score on synthetic data: injected anomalies above the threshold, normal windows below."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_runtime.pipeline.windowing_offline import sliding_windows, window_labels, window_starts
from edge_runtime.tools import synthetic as syn
from trainer.api import score_windows, train_and_export
from trainer.export import read_metadata

W, HOP = 32, 4


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("e2e") / "m.onnx"
    train = [syn.normal_series(3000, 4, seed=s) for s in (0, 1)]
    meta = train_and_export(
        train,
        syn.channel_names(4),
        out,
        window=W,
        hop=8,
        epochs=25,
        seed=0,
        width=16,
        latent=8,
        lr=3e-3,
        threshold_scale=1.0,  # the lognormal tail at the default budget (1 per 1,000 windows), no margin
    )
    assert meta == read_metadata(out)
    return out


def test_anomalies_above_threshold_normal_below(model: Path) -> None:
    meta = read_metadata(model)
    n = 3000
    anomalies = [
        syn.Anomaly(kind, 200 + i * 450, 200 + i * 450 + 60, (i % 4,))
        for i, kind in enumerate(syn.ANOMALY_KINDS)
    ]
    x, labels = syn.labelled_series(n, 4, anomalies, seed=3)  # a device the model has not seen
    scores, channel_error = score_windows(model, sliding_windows(x, W, HOP))
    wl = window_labels(labels, W, HOP)
    thr = meta.threshold.value
    assert np.mean(scores[wl == 0] > thr) < 0.01
    starts = window_starts(n, W, HOP)
    for a in anomalies:
        inside = (starts >= a.start) & (starts + W <= a.end)  # windows fully inside the anomaly
        assert np.median(scores[inside]) > thr, a.kind
        # the per-channel error points at the broken sensor
        assert np.argmax(channel_error[inside].mean(axis=0)) == a.channels[0], a.kind


def test_api_rejects_wrong_channel_count(tmp_path: Path) -> None:
    from trainer.data import DataError

    with pytest.raises(DataError, match="does not match 3 channels"):
        train_and_export(np.zeros((100, 2)), ["a", "b", "c"], tmp_path / "m.onnx")
