"""Scaling: how edgewatch's own cost grows with devices, window length and channel count.

In-process, without MQTT: the daemon's real :class:`~edge_runtime.service.daemon.Ingest` (decode -> window ->
queue) is fed single-sample JSON payloads on this thread while the daemon's inference worker
(batch -> infer -> decide) runs on its own, exactly as paho's thread would feed it. Reported per point:
messages (= samples) per second until every window is scored, windows per second, and microseconds of
edgewatch per message. Models for other window lengths and channel counts are exported with the
trainer (untrained weights: the cost does not depend on them); that axis needs the train extra.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from edge_runtime.config import build_config
from edge_runtime.service.model import EdgeModel, load_model
from lab.bench.common import summary, trainer_tool
from lab.bench.ingest import expected_windows

log = logging.getLogger(__name__)


def payloads(devices: int, samples: int, n_channels: int, seed: int = 0) -> list[tuple[str, bytes]]:
    """``devices x samples`` (topic, single-sample JSON) pairs, devices interleaved, timestamps 1 s apart."""
    from edge_runtime.tools.synthetic import normal_series

    rows = [",".join(f"{v:.5g}" for v in r) for r in normal_series(samples, n_channels, seed).tolist()]
    topics = [f"sensors/dev{d:05d}/data" for d in range(devices)]
    return [(t, b'{"ts":%.3f,"values":[%s]}' % (1.7e9 + i, rows[i].encode())) for i in range(samples) for t in topics]


def pipeline_rate(model: EdgeModel, msgs: list[tuple[str, bytes]], expect_windows: int, devices: int) -> dict[str, float]:
    """Feed ``msgs`` through a fresh daemon's ingest with its inference worker running; time to last window."""
    from edge_runtime.service.daemon import Daemon

    cfg = build_config(None, {"path": str(model.path), "provider": "cpu", "stats_interval_s": 0,
                               "watch_interval_s": 0, "queue_windows": 1_000_000, "max_devices": max(devices, 1),
                               "log_level": "WARNING", "instance": "bench-scaling"})
    cfg = dataclasses.replace(cfg, batching="opportunistic")  # an inference thread, as the daemon's threaded mode
    d = Daemon(cfg, model)
    d.batching.start()
    handle, st = d.ingest.handle, d.stats.counts
    t0 = time.perf_counter()
    for topic, payload in msgs:
        handle(topic, payload)
    t_in = time.perf_counter()
    deadline = t_in + 120
    while st["windows_scored"] < expect_windows and time.perf_counter() < deadline:
        time.sleep(0.001)
    el = time.perf_counter() - t0
    d.request_stop()
    d.batching.stop(5.0)
    lost = expect_windows - st["windows_scored"]
    return {"msg_rate": len(msgs) / el, "window_rate": st["windows_scored"] / el, "us_per_msg": el / len(msgs) * 1e6,
            "ingest_us_per_msg": (t_in - t0) / len(msgs) * 1e6, "windows_lost": lost}


def _point(model: EdgeModel, devices: int, samples: int, repeats: int) -> dict[str, Any]:
    msgs = payloads(devices, samples, model.n_channels)
    exp = devices * expected_windows(samples, model.window, model.metadata.hop)
    runs = [pipeline_rate(model, msgs, exp, devices) for _ in range(repeats)]
    return {"devices": devices, "window": model.window, "channels": model.n_channels, "samples_per_device": samples,
            "messages": len(msgs), "windows": exp,
            **{k: summary([r[k] for r in runs], 2) for k in ("msg_rate", "window_rate", "us_per_msg", "ingest_us_per_msg")},
            "windows_lost": int(sum(r["windows_lost"] for r in runs))}


def export_untrained(window: int, n_channels: int, out_dir: Path) -> Path:
    """An untrained conv autoencoder exported by the trainer in a child process (needs the train extra)."""
    out = out_dir / f"w{window}-c{n_channels}.onnx"
    res = trainer_tool("untrained", window, n_channels, out)
    if not res.get("ok"):
        raise RuntimeError(res.get("why"))
    return out


def bench_scaling(model_path: str, devices: tuple[int, ...] = (1, 10, 100, 1000, 10_000),
                  windows: tuple[int, ...] = (32, 64, 128, 256), channels: tuple[int, ...] = (1, 4, 16, 64),
                  repeats: int = 3, axis_devices: int = 100, min_messages: int = 20_000) -> dict[str, Any]:
    """Three axes: devices (the given model), window length and channel count (trainer-exported models)."""
    base = load_model(model_path, "cpu", 1)
    w0, hop0 = base.window, base.metadata.hop
    out: dict[str, Any] = {"model": model_path, "repeats": repeats, "devices": [], "window": [], "channels": []}
    for d in devices:
        samples = max(w0 + hop0, -(-min_messages // d))
        out["devices"].append(_point(base, d, samples, repeats))
    with tempfile.TemporaryDirectory(prefix="edgewatch-scaling-") as tmp:
        try:
            for w in windows:
                m = load_model(export_untrained(w, base.n_channels, Path(tmp)), "cpu", 1)
                samples = max(w + 8 * m.metadata.hop, -(-min_messages // axis_devices))
                out["window"].append(_point(m, axis_devices, samples, repeats))
            for c in channels:
                m = load_model(export_untrained(w0, c, Path(tmp)), "cpu", 1)
                samples = max(w0 + 8 * m.metadata.hop, -(-min_messages // axis_devices))
                out["channels"].append(_point(m, axis_devices, samples, repeats))
        except RuntimeError as exc:
            out["note"] = f"window/channel axes skipped: exporting their models failed: {exc}"
    return out


def plot_scaling(res: dict[str, Any], path: Path) -> Path | None:
    """A three-panel PNG (msg/s and windows/s against each axis); None where matplotlib is absent."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, key, label in zip(axes, ("devices", "window", "channels"),
                              ("devices", "window length W", "channels C"), strict=True):
        pts = res.get(key) or []
        if not pts:
            ax.set_visible(False)
            continue
        x = [p[key] for p in pts]
        ax.plot(x, [p["msg_rate"]["median"] for p in pts], "o-", label="samples/s (1 per message)")
        ax.plot(x, [p["window_rate"]["median"] for p in pts], "s--", label="windows/s")
        ax.set_xscale("log", base=10 if key == "devices" else 2)
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("per second (median)")
    axes[0].legend(fontsize=8)
    fig.suptitle("edgewatch pipeline (decode, window, batch, infer, decide), in-process, 1 thread")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
