"""The CUDA execution provider for real: runs only where onnxruntime gets a CUDA session, skipped elsewhere.

On a machine without CUDA the skip says why (the provider's own reason). The CPU fallback and the
``--provider cuda`` refusal are tested everywhere in test_model.py / test_cli.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.service.model import CUDA, EdgeModel, ModelError, load_model
from edge_runtime.tools.synthetic import Anomaly, inject, normal_series
from tests.edge_runtime.mqtt_helpers import Collector, Publisher, idle, running_daemon, wait_until
from tests.edge_runtime.onnx_models import sliding_windows

MODEL = Path(__file__).resolve().parents[2] / "models" / "demo.onnx"
TOL = 1e-3  # the CUDA provider runs convolutions in TF32 by default: scores agree to ~1e-4 relative


def cuda_model() -> EdgeModel:
    try:
        m = load_model(MODEL, "cuda", 1)
    except ModelError as exc:
        pytest.skip(f"no CUDA execution provider here: {exc}")
    return m


def test_cuda_session_is_really_cuda_and_scores_like_cpu() -> None:
    gpu = cuda_model()
    assert gpu.provider == CUDA
    assert gpu.session.get_providers()[0] == CUDA
    cpu = load_model(MODEL, "cpu", 1)
    rng = np.random.default_rng(0)
    mean = np.asarray(cpu.metadata.normalisation.mean, np.float32)
    std = np.asarray(cpu.metadata.normalisation.std, np.float32)
    for b in (1, 7, 64, 300):
        x = (mean + std * rng.standard_normal((b, cpu.window, cpu.n_channels))).astype(np.float32)
        (gs, gce), (cs, cce) = gpu.run(x), cpu.run(x)
        np.testing.assert_allclose(gs, cs, rtol=TOL, atol=TOL)
        np.testing.assert_allclose(gce, cce, rtol=TOL, atol=TOL)


def test_auto_prefers_cuda_where_it_loads() -> None:
    cuda_model()
    m = load_model(MODEL, "auto", 1)
    assert m.provider == CUDA
    assert "running on CUDA" in m.provider_reason


@pytest.mark.parametrize("batching", ["inline", "opportunistic"])
def test_daemon_on_cuda_end_to_end(mosquitto, batching: str) -> None:
    """Real broker, real daemon on the CUDA provider: scores equal the CPU's offline scores, the anomaly alerts."""
    cuda_model()
    cpu = load_model(MODEL, "cpu", 1)
    meta = cpu.metadata
    W, hop, n = meta.window, meta.hop, 1200
    x = inject(normal_series(n, meta.n_channels, seed=0, start=20000), Anomaly("level_shift", 500, 800, (1,)), seed=1)
    t0 = 1_700_000_000.0
    with running_daemon(mosquitto.url, MODEL, provider="cuda", publish_scores=True, batching=batching) as d:
        assert d.model.provider == CUDA
        assert d._online_doc()["provider"] == CUDA
        col = Collector(mosquitto.port, ["alerts/+", "scores/#"])
        pub = Publisher(mosquitto.port)
        for i in range(n):  # single-sample JSON, the common case
            pub.send("sensors/gpu/data", json.dumps({"ts": t0 + i, "values": x[i].tolist()}))
        pub.close()
        wait_until(lambda: d.stats.counts["messages"] >= n, 20, "messages")
        idle(d)
        k = (n - W) // hop + 1
        wait_until(lambda: sum(len(doc["score"]) for _, doc in col.docs("scores/")) >= k, 10, "scores")
        col.close()
    ends = [e for _, doc in col.docs("scores/") for e in doc["window_end"]]
    scores = np.asarray([s for _, doc in col.docs("scores/") for s in doc["score"]])[np.argsort(ends)]
    offline = cpu.run(sliding_windows(x, W, hop))[0]
    np.testing.assert_allclose(scores, offline, rtol=TOL, atol=TOL)
    raised = [a for a in col.alerts() if a["state"] == "raised"]
    assert any(t0 + 500 <= a["window_end"] < t0 + 800 + W for a in raised), raised
