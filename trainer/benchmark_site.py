"""``edgewatch-train benchmark feedback`` / ``transfer``: the operator's loop measured on the edge's own code.

Both run data through the daemon's real path without a broker: JSON messages -> :class:`Ingest` (decode,
window) -> :class:`InlineScoring` -> :class:`Scorer` (onnxruntime, the per-device thresholds, the alert state
machine), publishing into a recording link; verdicts go through :class:`Commands` as an operator's would.

- **feedback**: a synthetic stream (:mod:`edge_runtime.tools.synthetic`) with a known benign episode (a
  moderate level shift on one channel that the model flags: a false alarm) and a real fault (a level shift
  on other channels, or on the episode's channel the same way). Run once, one ``false_alarm`` verdict on the
  episode's alert, then the same stream again: does the episode raise anything, and how much later is the
  fault detected? Target: nothing, and at most 10 % more delay. A fault beyond the training range is also
  (and first) reported by the sensor checks (``out_of_range``; its channels stay in the score unless ``health.range_excludes``):
  that delay is reported beside the model alert's.
- **transfer**: a model fitted on one machine profile scores devices of other profiles
  (``edgewatch simulate --distinct``: seed + i), without and with ``input.warmup``: the fraction of normal
  windows above each device's threshold after the warm-up, against the model's false-alarm budget
  (target: within 2x), and the alerts raised. With ``--skab DIR``: a model of one SKAB file, warm-up on the
  first 400 rows of each other file, the point-wise F1 / FAR / MAR of the alerts beside the same without
  warm-up (docs/EVALUATION.md has the per-file protocol's numbers).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

T0 = 1_700_000_000.0


class _Link:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def publish(self, topic: str, payload: str | bytes, qos: int = 1, retain: bool = False, bulk: bool = False) -> bool:
        self.sent.append((topic, json.loads(payload)))
        return True


class EdgeReplay:
    """The daemon's ingest -> scoring path for ``model_path`` with ``overrides`` (config keys), no broker."""

    def __init__(self, model_path: Path, state_dir: Path | None = None, **overrides: Any) -> None:
        from edge_runtime.config import build_config
        from edge_runtime.pipeline.alerts import AlertTracker
        from edge_runtime.pipeline.hysteresis import AlertPolicy
        from edge_runtime.pipeline.stats import Stats
        from edge_runtime.service.commands import Commands
        from edge_runtime.service.feedback_store import FeedbackStore
        from edge_runtime.service.ingest import Ingest
        from edge_runtime.service.model import load_model
        from edge_runtime.service.publisher import Publisher
        from edge_runtime.service.scorer import InlineScoring, Scorer

        cfg = build_config(None, {"path": str(model_path), "instance": "bench", "queue_windows": 1_000_000,
                                  "gap_s": 1e9, "max_future_s": 0.0, "device_idle_s": 0.0, **overrides})
        self.cfg = cfg
        model = load_model(cfg.path)
        self.model = model
        self.stats = Stats()
        self.ingest = Ingest(cfg, model, self.stats)
        tracker = AlertTracker(AlertPolicy(cfg.raise_after, cfg.clear_after, cfg.clear_ratio, cfg.top_channels,
                                           cfg.critical_ratio, cfg.update_interval_s), "bench")
        self.scorer = Scorer(cfg, model, self.ingest, tracker, self.stats)
        self.link = _Link()
        publisher = Publisher(self.link)
        self.inline = InlineScoring(cfg, self.scorer, publisher)
        self.ingest.put = self.inline.put
        self.ingest.send = publisher.send  # sensor alerts and health documents
        self.commands = Commands(cfg.command_topic, cfg.reply_topic, "bench", self.scorer, self.stats,
                                 FeedbackStore(state_dir), publisher.send)

    def feed(self, device: str, x: np.ndarray, t0: float, period_s: float = 1.0, chunk: int = 50) -> None:
        """Publish ``x`` (T, C) as batched JSON messages stamped ``t0 + i * period_s`` and score them."""
        ts = t0 + np.arange(x.shape[0]) * period_s
        for lo in range(0, x.shape[0], chunk):  # values in the model's channel order
            doc = {"ts": ts[lo:lo + chunk].tolist(), "values": x[lo:lo + chunk].tolist()}
            self.ingest.handle(f"sensors/{device}/data", json.dumps(doc).encode())
            self.inline.drain()
        self.inline.drain()

    def alerts(self, device: str) -> list[dict[str, Any]]:
        return [d for t, d in self.link.sent if t == f"alerts/{device}"]

    def sensor_alerts(self, device: str) -> list[dict[str, Any]]:
        return [d for t, d in self.link.sent if t == f"health/{device}/alerts"]

    def scores(self, device: str) -> tuple[np.ndarray, np.ndarray]:
        """(window_end (N,), score (N,)) of every window scored for ``device`` (needs publish_scores)."""
        docs = [d for t, d in self.link.sent if t == f"scores/{device}"]
        if not docs:
            return np.zeros(0), np.zeros(0)
        return (np.concatenate([d["window_end"] for d in docs]), np.concatenate([d["score"] for d in docs]))

    def verdict(self, alert_id: str, verdict: str) -> dict[str, Any]:
        payload = json.dumps({"command": "feedback", "alert_id": alert_id, "verdict": verdict, "source": "bench"})
        return self.commands.handle(payload.encode())


def small_model(out: Path, x: np.ndarray, channels: list[str], seed: int = 0, **opts: Any) -> Path:
    """``fit`` on ``x`` (T, C) with a small model (W=32, hop 8 unless given): a few seconds on one thread."""
    from trainer.api import train_and_export

    kw: dict[str, Any] = {"window": 32, "hop": 8, "epochs": 25, "depth": 2, "width": 16, "latent": 8, "lr": 3e-3,
                          "batch_size": 64, "threads": 1}
    kw.update(opts)
    train_and_export(x, channels, out, seed=seed, **kw)
    return out


# -- feedback ---------------------------------------------------------------------------------------
OTHER, SAME = "other", "same"  # the fault on other channels than the episode's, or on its channel, same way


@dataclass(frozen=True)
class FeedbackCase:
    episode_sd: float = 2.0  # the benign episode: a level shift of this many std on channel 0 (or its spread x)
    fault_sd: float = 6.0  # the real fault: a level shift of this many std
    fault_on: str = OTHER  # on channels 1 and 2 (other), or on channel 0 upwards like the episode (same)
    episode_kind: str = "level"  # "level": a level shift; "noise": channel 0's spread x (1 + episode_sd)
    episode_len: int = 300
    fault_len: int = 400
    gap: int = 1500  # normal samples before, between and after


def feedback_stream(case: FeedbackCase, n_channels: int, seed: int, start: int) -> tuple[np.ndarray, int, int]:
    """Normal data with the episode and the fault: ``(x (T, C), episode start, fault start)``."""
    from edge_runtime.tools.synthetic import normal_series

    g = case.gap
    n = 3 * g + case.episode_len + case.fault_len
    x = normal_series(n, n_channels, seed=seed, start=start).astype(np.float64)
    sd = x[:g].std(axis=0)
    e0, f0 = g, 2 * g + case.episode_len
    ep = x[e0:e0 + case.episode_len, 0]
    if case.episode_kind == "noise":
        x[e0:e0 + case.episode_len, 0] = ep.mean() + (ep - ep.mean()) * (1.0 + case.episode_sd)
    else:
        x[e0:e0 + case.episode_len, 0] += case.episode_sd * sd[0]
    cols = [0] if case.fault_on == SAME else [1, 2]
    x[f0:f0 + case.fault_len, cols] += case.fault_sd * sd[cols]
    return x.astype(np.float32), e0, f0


def _delay(alerts: list[dict[str, Any]], start_t: float, end_t: float) -> float | None:
    """Seconds from ``start_t`` to the first raise whose window ends in [start_t, end_t + margin]."""
    for a in alerts:
        if a["state"] == "raised" and start_t <= a["window_end"] <= end_t:
            return float(a["window_end"] - start_t)
    return None


def _sensor_delay(docs: list[dict[str, Any]], start_t: float, end_t: float) -> float | None:
    """Seconds from ``start_t`` to the first sensor-fault raise (out_of_range, ...) stamped in [start_t, end_t]."""
    for d in docs:
        at = d.get("at")
        if d.get("state") == "raised" and isinstance(at, (int, float)) and start_t <= at <= end_t:
            return float(at - start_t)
    return None


def profile_model(workdir: Path, seed: int = 0, n_channels: int = 4) -> Path:
    """The small model of machine profile ``seed`` (6,000 normal samples; tests/model_fixtures.py's twin)."""
    from edge_runtime.tools.synthetic import channel_names, normal_series

    return small_model(workdir / "model.onnx", normal_series(6000, n_channels, seed=seed), channel_names(n_channels),
                       seed=seed)


def run_feedback(case: FeedbackCase, workdir: Path, seed: int = 0, n_channels: int = 4,
                 model: Path | None = None) -> dict[str, Any]:
    """The feedback benchmark for one case (see the module docstring); ``model``: one of profile ``seed``."""
    model = model or profile_model(workdir, seed, n_channels)
    edge = EdgeReplay(model, workdir / "state")
    x, e0, f0 = feedback_stream(case, n_channels, seed, start=6000)
    hop = edge.scorer.thresholds.policy.hop
    x = x[: x.shape[0] - x.shape[0] % hop]  # the replay's windows fall where the first run's did
    n = x.shape[0]

    def run(offset: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]], float | None, float | None]:
        before = len(edge.alerts("d1"))
        sensors_before = len(edge.sensor_alerts("d1"))
        edge.feed("d1", x, T0 + offset)
        new = edge.alerts("d1")[before:]
        episode = [a for a in new if a["state"] == "raised"
                   and T0 + offset + e0 <= a["window_end"] <= T0 + offset + e0 + case.episode_len + 64]
        others = [a for a in new if a["state"] == "raised" and a not in episode]
        f_start, f_end = T0 + offset + f0, T0 + offset + f0 + case.fault_len
        return (episode, others, _delay(new, f_start, f_end),
                _sensor_delay(edge.sensor_alerts("d1")[sensors_before:], f_start, f_end))

    ep1, other1, d1, s1 = run(0.0)
    report: dict[str, Any] = {"case": case.__dict__, "model_threshold": edge.scorer.thresholds.model_threshold,
                              "first_run": {"episode_alerts": len(ep1), "other_alerts": len(other1),
                                            "fault_delay_s": d1, "sensor_alert_delay_s": s1}}
    if not ep1:
        report["verdict"] = None
        report["note"] = "the episode raised no alert: no false alarm to give feedback on"
        return report
    reply = edge.verdict(ep1[0]["alert_id"], "false_alarm")
    ep2, other2, d2, s2 = run(float(n) + 10_000.0)
    report["verdict"] = {k: reply.get(k) for k in ("status", "reason", "threshold_before", "threshold", "applies_to")}
    report["replay"] = {"episode_alerts": len(ep2), "other_alerts": len(other2), "fault_delay_s": d2,
                        "sensor_alert_delay_s": s2}
    ok_delay = d1 is not None and d2 is not None and d2 <= 1.1 * d1
    report["delay_ratio"] = round(d2 / d1, 3) if d1 and d2 is not None else None
    report["met"] = bool(len(ep2) == 0 and ok_delay)
    return report


# -- transfer ---------------------------------------------------------------------------------------
def exceedance(edge: EdgeReplay, device: str, after_t: float, before_t: float = float("inf")) -> tuple[float, int]:
    """(fraction of ``device``'s windows ending in (after_t, before_t) above its threshold now, their number)."""
    t_end, s = edge.scores(device)
    keep = (t_end > after_t) & (t_end < before_t)
    thr = edge.scorer.thresholds.threshold(device, 0.0)
    n = int(keep.sum())
    return (float((s[keep] > thr).mean()) if n else 0.0), n


@dataclass(frozen=True)
class SiteShift:
    """How far another site's machine is from the training one: its operating point (a level offset of
    ``offset_sd`` training std on every other channel) and its noise (spread x ``spread``)."""

    offset_sd: float = 0.0
    spread: float = 1.0


def site_series(steps: int, n_channels: int, seed: int, shift: SiteShift) -> np.ndarray:
    """Normal data of profile ``seed`` (``simulate --distinct``), moved by ``shift``: (T, C) float32."""
    from edge_runtime.tools.synthetic import normal_series

    x = normal_series(steps, n_channels, seed=seed).astype(np.float64)
    mean, sd = x.mean(axis=0), x.std(axis=0)
    x = mean + (x - mean) * shift.spread
    x[:, ::2] += shift.offset_sd * sd[::2]
    return x.astype(np.float32)


def run_transfer(workdir: Path, devices: int = 4, seed: int = 0, n_channels: int = 4, steps: int = 8000,
                 warmup: int = 3000, offsets: bool = True, shift: SiteShift = SiteShift(),
                 model: Path | None = None) -> dict[str, Any]:
    """A model of profile ``seed``; devices of profiles ``seed + 1..`` (normal data only, moved by ``shift``)
    scored without and with a warm-up of ``warmup`` samples: exceedance after the warm-up against the budget."""
    model = model or profile_model(workdir, seed, n_channels)
    rows: list[dict[str, Any]] = []
    plain = EdgeReplay(model, publish_scores=True)
    warm = EdgeReplay(model, publish_scores=True, warmup=str(warmup), warmup_offsets=offsets)
    budget = float(plain.model.metadata.threshold.params.get("budget", 1e-3))
    f0, f1 = steps - 1000, steps - 600  # a real fault at the end: a level shift of 4 std on channel 1
    for i in range(1, devices + 1):
        x = site_series(steps, n_channels, seed + i, shift)
        x[f0:f1, 1] += 4.0 * x[:warmup, 1].std()
        dev = f"dev{i}"
        plain.feed(dev, x, T0)
        warm.feed(dev, x, T0)
        after = T0 + warmup
        e0, n0 = exceedance(plain, dev, after, T0 + f0)
        e1, n1 = exceedance(warm, dev, after, T0 + f0)
        delay = _delay(warm.alerts(dev), T0 + f0, T0 + f1)
        cal = warm.scorer.thresholds.fields(dev, 0.0).get("calibration", {})
        rows.append({"device": dev, "profile_seed": seed + i, "windows_after_warmup": n1,
                     "exceedance_without": round(e0, 5), "exceedance_with": round(e1, 5),
                     "alerts_without": sum(a["state"] == "raised" for a in plain.alerts(dev)
                                           if after < a["window_end"] < T0 + f0),
                     "alerts_with": sum(a["state"] == "raised" for a in warm.alerts(dev) if a["window_end"] < T0 + f0),
                     "fault_delay_s_with": delay,
                     "calibration": cal.get("phase"), "reason": cal.get("reason", ""),
                     "threshold_with": round(warm.scorer.thresholds.threshold(dev, 0.0), 4)})
    mean_with = float(np.mean([r["exceedance_with"] for r in rows]))
    mean_without = float(np.mean([r["exceedance_without"] for r in rows]))
    return {"shift": shift.__dict__, "budget": budget, "model_threshold": plain.scorer.thresholds.model_threshold,
            "warmup_samples": warmup, "offsets": offsets, "devices": rows, "exceedance_with": round(mean_with, 5),
            "exceedance_without": round(mean_without, 5),
            "with_over_budget": round(mean_with / budget, 2), "without_over_budget": round(mean_without / budget, 2),
            "faults_detected_with": sum(r["fault_delay_s_with"] is not None for r in rows),
            "met": bool(mean_with <= 2 * budget)}


# -- SKAB -------------------------------------------------------------------------------------------
def flagged_rows(alerts: list[dict[str, Any]], t: np.ndarray) -> np.ndarray:
    """(T,) bool: rows whose time falls while the device was raised (a raise's window end to its clear's)."""
    out = np.zeros(t.shape[0], bool)
    start: float | None = None
    for a in alerts:
        if a["state"] == "raised":
            start = a["window_end"]
        elif start is not None:
            out |= (t >= start) & (t < a["window_end"])
            start = None
    if start is not None:
        out |= t >= start
    return out


def _point(flags: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    tp = int((flags & labels).sum())
    fp = int((flags & ~labels).sum())
    fn = int((~flags & labels).sum())
    tn = int((~flags & ~labels).sum())
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn}


def _scores(c: dict[str, int]) -> dict[str, float | None]:
    tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]
    return {"f1": round(tp / (tp + (fp + fn) / 2), 3) if tp + fp + fn else None,
            "far_pct": round(100 * fp / (fp + tn), 1) if fp + tn else None,
            "mar_pct": round(100 * fn / (fn + tp), 1) if fn + tp else None}


def run_skab_transfer(root: Path, workdir: Path, warm_rows: int = 400, model_file: str = "anomaly-free/anomaly-free.csv",
                      limit: int = 0, progress: Any = None, offsets: bool = True,
                      model: Path | None = None) -> dict[str, Any]:
    """A model of one SKAB file (``fit``'s defaults); each labelled file replayed at 1 sample/s, scoring every
    window (``input.hop = 1``), without and with a warm-up on its first ``warm_rows`` rows; rows from
    ``warm_rows`` on judged point-wise against the labels."""
    from trainer.api import train_and_export
    from trainer.benchmark import find_csvs, load

    if model is None:
        base = load(root / model_file)
        model = workdir / "skab-model.onnx"
        train_and_export(base.values, base.channels, model, seed=0)
    labelled, _ = find_csvs(root)
    labelled = [p for p in labelled if p.resolve() != (root / model_file).resolve()]
    if limit:
        labelled = labelled[:limit]
    totals = {"without": dict.fromkeys(("tp", "fp", "fn", "tn"), 0), "with": dict.fromkeys(("tp", "fp", "fn", "tn"), 0)}
    windows = {"without": [0, 0], "with": [0, 0]}  # normal windows after the warm-up: [above the threshold, all]
    budget = 1e-3
    files = []
    for path in labelled:
        s = load(path)
        if s.labels is None:
            continue
        x = s.values.astype(np.float32)
        t = T0 + np.arange(x.shape[0], dtype=np.float64)
        labels = s.labels[warm_rows:].astype(bool)
        row: dict[str, Any] = {"file": str(path.relative_to(root))}
        for name, extra in (("without", {}), ("with", {"warmup": str(warm_rows), "warmup_offsets": offsets})):
            edge = EdgeReplay(model, hop=1, publish_scores=True, **extra)
            edge.feed("d", x, T0)
            c = _point(flagged_rows(edge.alerts("d"), t)[warm_rows:], labels)
            for k, v in c.items():
                totals[name][k] += v
            row[name] = _scores(c)
            f = edge.scorer.thresholds.fields("d", 0.0)
            budget = float(edge.model.metadata.threshold.params.get("budget", budget))
            above, n = normal_exceedance(*edge.scores("d"), float(f["threshold"]), s.labels, edge.model.window,
                                         warm_rows)
            windows[name][0] += above
            windows[name][1] += n
            row[name]["normal_windows_above"] = round(above / n, 5) if n else None
            if name == "with":
                row["calibration"] = f.get("calibration", {}).get("phase")
                row["threshold_over_model"] = round(f["threshold"] / f["threshold_model"], 3)
        files.append(row)
        if progress is not None:
            progress(f"{row['file']}: without {row['without']}, with {row['with']} ({row['calibration']})")
    exceed = {k: round(a / n, 5) if n else None for k, (a, n) in windows.items()}
    return {"model_file": model_file, "warm_rows": warm_rows, "offsets": offsets, "files": files,
            "without": _scores(totals["without"]), "with": _scores(totals["with"]),
            "refused": sum(f["calibration"] == "refused" for f in files), "budget": budget,
            "normal_windows_above": exceed, "normal_windows": windows["with"][1],
            "with_over_budget": None if exceed["with"] is None else round(exceed["with"] / budget, 2),
            "without_over_budget": None if exceed["without"] is None else round(exceed["without"] / budget, 2),
            "met": exceed["with"] is not None and exceed["with"] <= 2 * budget}


def normal_exceedance(window_end: np.ndarray, score: np.ndarray, threshold: float, labels: np.ndarray,
                      window: int, warm_rows: int) -> tuple[int, int]:
    """Of the scored windows that end after ``warm_rows`` with every row normal (``labels`` (T,) 0): how many
    score above ``threshold``, and how many there are (the false-alarm budget's own unit)."""
    end = np.rint(window_end - T0).astype(np.int64)
    lab = np.concatenate([[0], np.cumsum(np.asarray(labels, dtype=np.int64) != 0)])
    ok = (end >= warm_rows) & (end >= window - 1) & (end < len(labels))
    e = end[ok]
    normal = lab[e + 1] - lab[e + 1 - window] == 0
    return int((score[ok][normal] > threshold).sum()), int(normal.sum())


def run_feedback_suite(cases: list[FeedbackCase] | None = None, seed: int = 0) -> dict[str, Any]:
    """Every case on one model of profile ``seed`` (a fresh replay each)."""
    cases = cases or [FeedbackCase(fault_sd=v, fault_on=on) for on in (OTHER, SAME) for v in (8.0, 6.0, 4.0, 3.0)]
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        model = profile_model(Path(tmp), seed)
        for i, c in enumerate(cases):
            work = Path(tmp) / f"case{i}"
            work.mkdir()
            out.append(run_feedback(c, work, seed, model=model))
    return {"cases": out}
