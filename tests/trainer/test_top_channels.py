"""``top_channels`` under fit's default score names the channel that departs, not the largest or noisiest one
(issue 12: a channel's error relative to its own normal error), through the exported model and the edge's code."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_runtime.pipeline.explain import top_channels
from edge_runtime.pipeline.windowing_offline import sliding_windows
from edge_runtime.service.model import load_model
from edge_runtime.tools.synthetic import normal_series
from trainer.api import train_and_export

NAMES = ["big_noisy", "quiet_small", "c", "d"]


def test_the_quiet_channel_that_departs_is_named_first(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    x = normal_series(2400, 4, seed=3).astype(np.float64)
    x[:, 0] = 1e6 * (x[:, 0] + rng.normal(0, 1.5, len(x)))  # a million times larger, and noisy for its size
    x[:, 1] = 1e-3 * x[:, 1]  # a thousand times smaller
    path = tmp_path / "m.onnx"
    meta = train_and_export(x[:1600].astype(np.float32), NAMES, path, seed=0, epochs=40)
    assert meta.scoring["power"] == 3  # fit's default score
    sd = float(np.std(x[:1600, 1]))
    test = x[1600:].copy()
    test[400:500, 1] += 4 * sd  # the quiet channel departs by 4 of its std
    model = load_model(path, provider="cpu")
    w = meta.window
    win = sliding_windows(test.astype(np.float32), w, 1)
    _, ce = model.run(win)
    normal = meta.scoring["channel_error_ref"]
    inside = range(400, 500 - w + 1)  # windows wholly inside the departure
    named = [top_channels(ce[k], NAMES, 1, normal)[0]["name"] for k in inside]
    assert named.count("quiet_small") >= 0.9 * len(named), named
    before = [top_channels(ce[k], NAMES, 1, normal)[0]["name"] for k in range(0, 400 - w)]
    assert before.count("big_noisy") < 0.5 * len(before)  # the noisy one does not lead the normal windows
