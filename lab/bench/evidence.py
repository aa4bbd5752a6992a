"""Evidence benchmark: what keeping the evidence around every alert costs the daemon's ingest path.

The same JSON messages go through a real, unstarted :class:`~edge_runtime.service.daemon.Daemon` (decode ->
window -> batch -> ``session.run`` -> alerts; no broker: publishing is a no-op) with ``alerts.evidence_dir``
off and on (its writer thread running, as in the daemon), interleaved repeat by repeat. A fifth of the devices
have an anomaly of ``anomaly_s`` samples every ``every_s``, so alerts (and evidence files) keep coming. Also the
cost of the alerts' measured/expected detail: a single-window ``reconstruct`` call against one batch's
``session.run``. Reported: messages/s of each and the ratio on/off; evidence files written, their mean size and
the share of it the expected curves take (the ``exp_*``/``expected`` members' compressed bytes).
"""

from __future__ import annotations

import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.config import build_config
from edge_runtime.service.daemon import Daemon
from lab.bench.common import daemon_messages, feed_daemon, ratio_cell, ratios


def _daemon(model: str, tmp: Path, evidence: bool, hop: int) -> Daemon:
    over: dict[str, Any] = {"path": model, "hop": hop, "instance": f"bench-{int(evidence)}", "stats_interval_s": 0.0,
                            "watch_interval_s": 0.0, "provider": "cpu", "raise_after": 2, "clear_after": 2}
    if evidence:
        over.update(evidence_dir=str(tmp / "evidence"), evidence_margin_s=30.0)
    d = Daemon(build_config(None, over))
    d.link.publish = lambda *a, **k: True  # type: ignore[method-assign]  # no broker: the cost is the edge's
    if d.evidence is not None:
        d.evidence.start()
        ev, inner = d.evidence, d.evidence.observe
        ev.spent_s = 0.0  # type: ignore[attr-defined]  # seconds inside observe on the ingest thread

        def timed(*a: Any) -> None:
            t0 = time.perf_counter()
            inner(*a)
            ev.spent_s += time.perf_counter() - t0  # type: ignore[attr-defined]
        ev.observe = timed  # type: ignore[method-assign, assignment]
    return d


def _file_sizes(d: Daemon) -> tuple[float, float]:
    """Mean bytes of the evidence files ``d`` kept, and the share the expected curves' members take."""
    assert d.evidence is not None
    total = curves = 0
    files = list(d.evidence.store.index.values())
    for e in files:
        total += e.size
        with zipfile.ZipFile(e.path) as z:
            curves += sum(i.compress_size for i in z.infolist() if i.filename.startswith(("exp_", "expected")))
    return (total / len(files) if files else 0.0), (curves / total if total else 0.0)


def _detail_cost(d: Daemon, repeats: int = 300) -> dict[str, float]:
    """Median seconds of one 64-window batch run and of one single-window reconstruct (an alert's detail)."""
    meta, model = d.model.metadata, d.model
    rng = np.random.default_rng(0)
    x = (np.asarray(meta.normalisation.mean) + np.asarray(meta.normalisation.std)
         * rng.standard_normal((64, meta.window, meta.n_channels))).astype(np.float32)

    def med(fn: Any) -> float:
        fn()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return float(np.median(ts))

    batch, one = med(lambda: model.run(x)), med(lambda: model.reconstruct(x[:1]))
    return {"batch64_run_us": batch * 1e6, "reconstruct_1_us": one * 1e6, "ratio": one / batch}


def bench_evidence(model: str, devices: int = 50, per_device: int = 400, bursts: tuple[int, ...] = (1, 256),
                   repeats: int = 5, hops: tuple[int, ...] = (0,), every_s: int = 40, anomaly_s: int = 12
                   ) -> dict[str, Any]:
    """Messages/s through the ingest path with evidence off and on; their ratio per hop and burst size."""
    res: dict[str, Any] = {"model": model, "devices": devices, "messages": devices * per_device, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for hop, burst in ((h, b) for h in hops for b in bursts):
            rates: dict[str, list[float]] = {"off": [], "on": []}
            cpu: dict[str, list[float]] = {"off": [], "on": []}
            written = alerts = 0
            share: list[float] = []
            sizes: list[tuple[float, float]] = []
            for r in range(repeats):
                for kind in ("off", "on") if r % 2 == 0 else ("on", "off"):
                    d = _daemon(model, Path(tmp) / f"{kind}{r}{burst}{hop}", kind == "on", hop)
                    msgs = daemon_messages(d.model.metadata, devices, per_device, r,
                                           lambda dev, i: dev % 5 == 0 and i % every_s < anomaly_s)
                    t_run = time.perf_counter()
                    wall, own = feed_daemon(d, msgs, burst)
                    t_run = time.perf_counter() - t_run
                    rates[kind].append(wall)
                    cpu[kind].append(own)
                    if d.evidence is not None:
                        share.append(d.evidence.spent_s / t_run)  # type: ignore[attr-defined]
                        d.evidence.stop(10.0)
                        sizes.append(_file_sizes(d))
                        written = d.stats.counts["evidence_written"]
                        alerts = d.stats.counts["alerts_raised"]
                        assert written >= alerts > 0, (written, alerts)
            res["runs"].append({"hop": hop, "burst": burst, "alerts": alerts, "evidence_written": written,
                                "off_msg_s": float(np.median(rates["off"])), "on_msg_s": float(np.median(rates["on"])),
                                **ratios(rates["on"], rates["off"]), **ratios(cpu["on"], cpu["off"], "cpu_ratio"),
                                "observe_share": float(np.median(share)),
                                "file_bytes": float(np.median([x[0] for x in sizes])),
                                "curves_share": float(np.median([x[1] for x in sizes]))})
        res["detail"] = _detail_cost(_daemon(model, Path(tmp) / "detail", False, 0))
    return res


def markdown(res: dict[str, Any]) -> str:
    lines = [f"## Evidence cost ({res['model']}, {res['devices']} devices, {res['messages']} messages)", "",
             "| hop | scored after every | alerts | evidence files written | evidence off msg/s | on msg/s | wall ratio (median, min-max) | ingest-thread CPU ratio | time in evidence.observe | bytes a file (expected curves) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for b in res["runs"]:
        lines.append(f"| {b['hop'] or 'model'} | {b['burst']} message(s) | {b['alerts']} | {b['evidence_written']} | "
                     f"{b['off_msg_s']:.0f} | {b['on_msg_s']:.0f} | "
                     f"{ratio_cell(b)} | {ratio_cell(b, 'cpu_ratio')} | "
                     f"{100 * b['observe_share']:.1f} % | {b['file_bytes']:.0f} ({100 * b['curves_share']:.0f} %) |")
    dt = res["detail"]
    lines += ["", f"An alert's measured/expected detail (one single-window `reconstruct` per raise or update): "
              f"{dt['reconstruct_1_us']:.0f} us, {dt['ratio']:.2f} x one 64-window batch run ({dt['batch64_run_us']:.0f} us)."]
    return "\n".join(lines) + "\n"
