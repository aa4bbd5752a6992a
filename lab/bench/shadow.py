"""Shadow benchmark: what a staged model running beside the live one costs the daemon's ingest path.

The same JSON messages go through a real, unstarted :class:`~edge_runtime.service.daemon.Daemon` (decode ->
window -> batch -> ``session.run`` -> alerts; no broker: publishing is a no-op) with and without a shadow
staged by the real rollout code, interleaved repeat by repeat. ``burst``: the batch is scored after every
``burst`` messages (inline batching after a read burst); ``1``: after every message (the smallest batches,
the worst case). Reported: messages/s of each and the ratio with/without shadow.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.config import build_config
from edge_runtime.service.daemon import Daemon
from edge_runtime.service.model import load_model
from lab.bench.common import daemon_messages, feed_daemon, ratio_cell, ratios


def _daemon(model: str, tmp: Path, shadow: bool, hop: int) -> Daemon:
    cfg = build_config(None, {"path": model, "hop": hop, "instance": f"bench-{int(shadow)}", "stats_interval_s": 0.0,
                              "watch_interval_s": 0.0, "provider": "cpu", "rollout": shadow,
                              "allow_unsigned": True, "staging_dir": str(tmp / "staging"),
                              "shadow_windows": 0, "shadow_s": 0.0})
    d = Daemon(cfg)
    d.link.publish = lambda *a, **k: True  # type: ignore[method-assign]  # no broker: the cost is the edge's
    if shadow:
        d.rollout._stage(load_model(model, "cpu"), "")  # a second session of the same graph as the candidate
    return d


def _messages(d: Daemon, devices: int, per_device: int, seed: int) -> list[tuple[str, bytes]]:
    return daemon_messages(d.model.metadata, devices, per_device, seed)


def _run(d: Daemon, msgs: list[tuple[str, bytes]], burst: int) -> float:
    return feed_daemon(d, msgs, burst)[0]


def bench_shadow(model: str, devices: int = 50, per_device: int = 400, bursts: tuple[int, ...] = (1, 256),
                 repeats: int = 5, hops: tuple[int, ...] = (0, 1)) -> dict[str, Any]:
    """Messages/s through the ingest path with and without a shadow; their ratio per hop and burst size
    (hop 0: the model's own; 1: a window per sample, the most inference per message)."""
    res: dict[str, Any] = {"model": model, "devices": devices, "messages": devices * per_device, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for hop, burst in ((h, b) for h in hops for b in bursts):
            rates: dict[str, list[float]] = {"live": [], "shadow": []}
            for r in range(repeats):
                for kind in ("live", "shadow") if r % 2 == 0 else ("shadow", "live"):
                    d = _daemon(model, Path(tmp) / f"{kind}{r}{burst}{hop}", kind == "shadow", hop)
                    msgs = _messages(d, devices, per_device, seed=r)
                    rates[kind].append(_run(d, msgs, burst))
                    if kind == "shadow":
                        assert d.stats.counts["shadow_windows"] == d.stats.counts["windows_scored"] > 0
                    windows = d.stats.counts["windows_scored"]
                    batch = d.stats.snapshot()["batch_size_mean"]
            res["runs"].append({"hop": hop, "burst": burst, "windows": windows, "batch_mean": batch,
                                "live_msg_s": float(np.median(rates["live"])),
                                "shadow_msg_s": float(np.median(rates["shadow"])),
                                **ratios(rates["shadow"], rates["live"])})
    return res


def markdown(res: dict[str, Any]) -> str:
    lines = [f"## Shadow cost ({res['model']}, {res['devices']} devices, {res['messages']} messages)", "",
             "| hop | scored after every | windows | mean batch | without shadow msg/s | with shadow msg/s | ratio (median, min-max) |",
             "|---|---|---|---|---|---|---|"]
    for b in res["runs"]:
        lines.append(f"| {b['hop'] or 'model'} | {b['burst']} message(s) | {b['windows']} | {b['batch_mean']:.1f} | "
                     f"{b['live_msg_s']:.0f} | {b['shadow_msg_s']:.0f} | "
                     f"{ratio_cell(b)} |")
    return "\n".join(lines) + "\n"
