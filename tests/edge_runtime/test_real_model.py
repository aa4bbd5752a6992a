"""The daemon with a model trained and exported by the real trainer (the `demo_model_path` fixture)."""

from __future__ import annotations

import json
import threading

import numpy as np
import onnxruntime as ort
import pytest

from edge_runtime.contract import INPUT_NAME, OUTPUT_SCORE
from edge_runtime.service.model import load_model
from edge_runtime.tools.synthetic import Anomaly, inject, normal_series
from tests.edge_runtime.mqtt_helpers import Collector, Publisher, idle, running_daemon, wait_until
from tests.edge_runtime.onnx_models import sliding_windows


@pytest.mark.parametrize("batching", ["inline", "opportunistic", "fill"])
def test_trained_model_scores_match_offline_and_anomaly_alerts(mosquitto, demo_model_path, batching: str) -> None:
    """Every batching mode scores exactly what the offline model does, and alerts on the anomaly."""
    meta = load_model(demo_model_path).metadata
    W, hop, n = meta.window, meta.hop, 1200
    normal = normal_series(n, meta.n_channels, seed=0, start=20000)  # the trained profile, unseen stretch
    x = inject(normal, Anomaly("level_shift", 500, 800, (1,)), seed=1)
    t0 = 1_700_000_000.0
    scored_on: set[str] = set()
    # CPU: the offline reference is the CPU session, compared at 1e-5 (the CUDA path: test_cuda.py)
    with running_daemon(mosquitto.url, demo_model_path, publish_scores=True, batching=batching, provider="cpu") as d:
        run = d.model.run
        d.model.run = lambda batch: (scored_on.add(threading.current_thread().name), run(batch))[1]
        threads = {t.name for t in threading.enumerate()}
        col = Collector(mosquitto.port, ["alerts/+", "scores/#"])
        pub = Publisher(mosquitto.port)
        for i in range(0, n, 50):  # batched JSON, the fast path
            pub.send("sensors/real/data", json.dumps({"ts": [t0 + j for j in range(i, i + 50)],
                                                       "values": x[i : i + 50].tolist()}))
        pub.close()
        wait_until(lambda: d.stats.counts["messages"] >= n // 50, 10, "messages")
        idle(d)
        k = (n - W) // hop + 1
        wait_until(lambda: sum(len(doc["score"]) for _, doc in col.docs("scores/")) >= k, 10, "scores")
        col.close()
    if batching == "inline":  # scored on paho's network thread, right after the read; no inference thread
        assert "edgewatch-infer" not in threads
        paho_thread = {n for n in scored_on if n.startswith("paho-mqtt-client")}
        assert paho_thread and scored_on - paho_thread <= {"edgewatch-housekeeping"}, scored_on  # + its safety net
    else:
        assert scored_on == {"edgewatch-infer"}
    ends = [e for _, doc in col.docs("scores/") for e in doc["window_end"]]
    scores = [s for _, doc in col.docs("scores/") for s in doc["score"]]
    order = np.argsort(ends)
    sess = ort.InferenceSession(str(demo_model_path), providers=["CPUExecutionProvider"])
    offline = sess.run([OUTPUT_SCORE], {INPUT_NAME: sliding_windows(x, W, hop)})[0]
    np.testing.assert_allclose(np.asarray(scores)[order], offline, atol=1e-5, rtol=1e-5)
    raised = [a for a in col.alerts() if a["state"] == "raised"]
    during = [a for a in raised if t0 + 500 <= a["window_end"] < t0 + 800 + W]
    assert during, raised
    assert during[0]["top_channels"][0]["name"] == meta.channels[1]
