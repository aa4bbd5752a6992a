"""Issue 20 item 6: ``max_devices`` alone did not bound memory (a contract-legal W = 512, C = 32 model:
3,000 devices took RSS from 69 to 571 MB). ``input.device_memory_mb`` now caps the devices kept for the
model's W and C. A really exported large model, the real decoder and window store (no broker needed)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from edge_runtime.config import build_config
from edge_runtime.pipeline.batcher import WindowBuffer
from edge_runtime.pipeline.stats import Stats
from edge_runtime.pipeline.windows import device_bytes
from edge_runtime.service.ingest import Ingest
from edge_runtime.service.model import load_model
from tests.edge_runtime.onnx_models import make_metadata, write_model

W, C = 512, 32


def test_a_large_model_keeps_the_devices_buffers_within_the_memory_budget(tmp_path: Path, figure) -> None:
    channels = [f"c{i}" for i in range(C)]
    model = load_model(write_model(tmp_path / "big.onnx", make_metadata(window=W, hop=64, channels=channels)))
    budget_mb = 32.0
    cfg = build_config(None, {"path": str(model.path), "instance": "t", "device_memory_mb": budget_mb,
                              "log_interval_s": 3600.0})
    assert cfg.max_devices == 10_000
    stats = Stats()
    ing = Ingest(cfg, model, stats, WindowBuffer(64).put)
    cap = ing.store.max_devices
    assert cap == int(budget_mb * 2**20 // device_bytes(W, C)) < cfg.max_devices
    payload = json.dumps({"ts": time.time() - 10, "values": [0.5] * C}).encode()
    n = 3 * cap
    for i in range(n):
        ing.handle(f"sensors/d{i}/data", payload)
    kept = len(ing.store)
    buffers = sum(r.buf.nbytes + r.tbuf.nbytes for r in ing.store.devices.values())
    figure("memory_budget_large_model", window=W, channels=C, budget_mb=budget_mb, devices_sent=n, devices_kept=kept,
           buffer_mb=round(buffers / 2**20, 1), evicted=stats.counts["devices_evicted"])
    assert kept == cap
    assert buffers <= budget_mb * 2**20
    assert stats.counts["devices_evicted"] == n - cap
