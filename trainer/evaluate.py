"""``edgewatch-train evaluate``: a model's decisions on recorded data, as the daemon makes them.

Scoring goes through the edge's own model loader (:func:`edge_runtime.service.model.load_model`,
CPU), every hop-1 window of each file. Decisions are the daemon's (:mod:`trainer.decisions`):
windows scored every ``hop`` samples (default: the model's own scoring hop, as the daemon's
``input.hop = 0``), the raise/clear hysteresis of the edge, a point flagged while the device is
raised. Metrics: :mod:`trainer.metrics`. A file without labels is measured by its alerts per day.

Threshold-free metrics score each point by the hop-1 window ending at it (causal). Window
ROC-AUC ranks the hop-1 windows that lie wholly in the scored rows (a window is anomalous when any
of its points is labelled).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.pipeline.hysteresis import AlertPolicy
from edge_runtime.pipeline.windowing_offline import sliding_windows, window_labels
from edge_runtime.service.model import EdgeModel, ModelError, load_model
from trainer.alert_list import ListedAlert, alert_lines, list_alerts
from trainer.data import DataError, Series, gap_windows
from trainer.decisions import Decisions, causal_point_scores, centred_flags, daemon_decisions
from trainer.metrics import Counts, EventCounts, event_counts, roc_auc, threshold_free
from trainer.progress import counted, stage
from trainer.sensor_view import SensorView, checked_blocks, masked_scores, sensor_view

log = logging.getLogger(__name__)

SCORE_BATCH = 4096  # windows per onnxruntime call: bounds the memory of one call to B x W x C floats
HEADROOM_WINDOWS = 1000  # fewer scored windows of normal data say too little to lower a margin by


def open_model(path: Path) -> EdgeModel:
    """The edge's validated session on CPU; a file it refuses is a :class:`DataError` (one line)."""
    try:
        return load_model(path, provider="cpu")
    except ModelError as exc:
        raise DataError(str(exc)) from None


def window_scores(model: EdgeModel, values: np.ndarray, progress: bool = False) -> np.ndarray:
    """Scores (T-W+1,) of every hop-1 window of raw ``values`` (T, C), in batches (``progress``: a line on stderr)."""
    w = model.window
    x = np.asarray(values, dtype=np.float32)
    n = max(0, x.shape[0] - w + 1)
    out = np.empty(n, dtype=np.float64)
    starts = range(0, n, SCORE_BATCH)
    batches = (sliding_windows(x[lo : min(n, lo + SCORE_BATCH) + w - 1], w, 1) for lo in starts)
    for lo, batch in zip(starts, counted(batches, n, "scored", progress), strict=True):
        out[lo : lo + len(batch)] = model.run(batch)[0]
    return out


@dataclass
class Outcome:
    """One series judged from row ``first`` on. ``scores`` (T-W+1,) hop-1; ``flags`` (T,) daemon's."""

    name: str
    first: int
    scores: np.ndarray
    decisions: Decisions
    labels: np.ndarray | None
    period_s: float | None
    threshold: float = float("inf")
    counts: Counts = field(default_factory=Counts)
    centred: Counts = field(default_factory=Counts)
    events: EventCounts = field(default_factory=EventCounts)
    scores_free: dict[str, Any] = field(default_factory=dict)
    window_roc_auc: float | None = None
    scored: np.ndarray | None = None  # (T-W+1,) the windows the daemon scores at all (None: every one)

    def alerts(self) -> int:
        """Raises at or after the first scored row."""
        return int(np.sum(self.decisions.raises >= self.first))

    def summary(self) -> dict[str, Any]:
        """Per-file numbers, JSON-ready."""
        n = len(self.decisions.flags) - self.first
        out: dict[str, Any] = {"scored_points": n, "alerts": self.alerts()}
        if self.period_s:
            out["alerts_per_day"] = self.alerts() / (n * self.period_s / 86400) if n else None
        if self.labels is not None:
            out.update(self.counts.rates())
            out.update(self.events.rates())
            out.update(self.scores_free)
            out["window_roc_auc"] = self.window_roc_auc
        return out


def judge(
    name: str,
    scores: np.ndarray,
    labels: np.ndarray | None,
    threshold: float,
    window: int,
    hop: int,
    policy: AlertPolicy,
    first: int = 0,
    period_s: float | None = None,
    tolerance: int | None = None,
    vus_buffer: int | None = None,
    scored: np.ndarray | None = None,
    restarts: Sequence[int] = (),
) -> Outcome:
    """Decide on hop-1 window ``scores`` like the daemon and measure rows ``first..`` against ``labels`` (T,).

    ``tolerance`` (samples after a labelled event in which an alert is still true) defaults to W-1,
    ``vus_buffer`` (VUS's largest buffer) to 2 W; ``scored`` (T-W+1,) bool: the windows the daemon scores (None: all;
    :func:`running_windows`); ``restarts``: the rows where the daemon's window restarts (:func:`window_restarts`).
    """
    n_steps = scores.shape[0] + window - 1
    dec = daemon_decisions(scores, threshold, n_steps, window, hop, policy, scored, restarts)
    out = Outcome(name, first, scores, dec, labels, period_s, threshold, scored=scored)
    if labels is None:
        return out
    y = np.asarray(labels)[first:]
    f = dec.flags[first:]
    out.counts = Counts.of(f, y)
    out.centred = Counts.of(centred_flags(scores, threshold, n_steps, window)[first:], y)
    out.events = event_counts(y, f, window - 1 if tolerance is None else tolerance, period_s)
    ps = causal_point_scores(scores, n_steps, window)[first:]
    ok = ~np.isnan(ps)
    out.scores_free = threshold_free(y[ok], ps[ok], 2 * window if vus_buffer is None else vus_buffer)
    wl = window_labels(np.asarray(labels), window, 1)[first:]
    out.window_roc_auc = roc_auc(wl, scores[first:])
    return out


def daemon_scores(model: EdgeModel, values: np.ndarray, running: np.ndarray | None = None,
                  range_excludes: bool = False, info: dict[str, Any] | None = None, raw: np.ndarray | None = None,
                  progress: bool = False, gaps: Sequence[int] = (),
                  views: list[SensorView | None] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Hop-1 window scores (T-W+1,) of raw ``values`` as the daemon scores them, and which windows it scores at all
    (None: every one): only the windows wholly in ``running`` rows (T,) bool (a stopped or settling machine's are
    not), with its sensor checks (:mod:`trainer.sensor_view`: faulty channels left out, degraded or
    out-of-distribution windows not scored; ``range_excludes`` as ``health.range_excludes``). ``info``: filled
    with the checks' shares of windows masked, degraded and out of distribution (:meth:`SensorView.summary`).
    ``raw``: the unmasked :func:`window_scores` when the caller has them already (not modified); ``progress``: a
    progress line while scoring; ``gaps``: rows that begin a stretch after a time gap (``Series.gaps``): the
    windows across one are not scored (the daemon restarts its window there); ``views``: the sensor checks'
    :class:`SensorView` (None without checks) is appended to it."""
    sc = window_scores(model, values, progress) if raw is None else raw
    scored = None if running is None else running_windows(running, model.window)
    if len(gaps):
        across = ~gap_windows(gaps, len(values), model.window)
        scored = across if scored is None else scored & across
    view = sensor_view(model.metadata, values, range_excludes=range_excludes, running=running)
    if views is not None:
        views.append(view)
    if view is not None:
        sc = masked_scores(model, values, sc, view)
        scored = view.scored if scored is None else scored & view.scored
        if info is not None:
            info.update(view.summary())
    return sc, scored


def window_restarts(gaps: Sequence[int], running: np.ndarray | None = None) -> list[int]:
    """The rows where the daemon's window restarts, and its scoring hop counts from: each time gap's first row
    (``Series.gaps``) and each first running row after a stop or the settling time (``running`` (T,) bool)."""
    out = {int(g) for g in gaps}
    if running is not None:
        r = np.asarray(running, dtype=bool)
        out.update(int(i) + 1 for i in np.flatnonzero(r[1:] & ~r[:-1]))
    return sorted(out)


def running_windows(running: np.ndarray, window: int) -> np.ndarray:
    """(T-W+1,) True for the hop-1 windows wholly in running rows ``running`` (T,): the ones the daemon scores."""
    bad = np.concatenate(([0], np.cumsum(~np.asarray(running, dtype=bool))))
    return np.asarray(bad[window:] - bad[:-window] == 0)


def state_rows(meta: Any, s: Series) -> tuple[np.ndarray, dict[str, Any]] | None:
    """The model's operating states over ``s``'s rows as the daemon recognises them (``code`` (T,): 0 running,
    1 stopped, 2 settling) and their summary (rows and stretches per state; agreement with the file's state
    column when it has one); None for a model without states."""
    from edge_runtime.pipeline.states import GATE_STATES, StateGate, running_from_column, runs

    model = meta.state_model()
    if model is None or not model.rule(meta.channels).active:
        return None
    code, _ = StateGate(model.rule(meta.channels), model.settle_samples).gate(s.name, s.values)
    out: dict[str, Any] = {name: {"rows": int((code == i).sum()), "stretches": len(runs(code == i))}
                           for i, name in enumerate(GATE_STATES)}
    column = meta.preprocessing.get("state_column")
    if s.states is not None and column:
        running = model.learned.get("running_values") or []
        if running:
            truth = running_from_column(s.states, running)
            out["agreement_with_column"] = float(np.mean((code != 1) == truth))
    return code, out


def sensor_faults(meta: Any, s: Series, running: np.ndarray | None = None) -> dict[str, Any]:
    """The edge's per-channel health checks over ``s`` (:class:`edge_runtime.pipeline.health.ChannelHealth`):
    per fault kind and channel, the faulty stretches and rows. Missing values are filled as the edge fills them.
    ``running`` (T,) bool: as the daemon, only the rows of a running machine are checked (a stopped channel at
    its off level is no sensor fault); the others count as ok."""
    from edge_runtime.pipeline.health import FAULTS, STATES, ChannelHealth, HealthLimits
    from edge_runtime.pipeline.states import runs

    limits = HealthLimits.build(meta.health or {}, meta.channels, meta.normalisation.mean, meta.sample_period_s)
    keep = np.ones(len(s.values), dtype=bool) if running is None else np.asarray(running, dtype=bool)
    codes = np.zeros(s.values.shape, dtype=np.uint8)  # (T, C): 1 byte a value
    for blk in checked_blocks(ChannelHealth(limits), s.values, keep):  # bounded memory, the same codes
        codes[blk.r0 : blk.r1] = blk.codes
    out: dict[str, Any] = {}
    for kind in FAULTS:
        k = STATES.index(kind)
        per = {ch: {"stretches": len(runs(codes[:, j] == k)), "rows": int((codes[:, j] == k).sum())}
               for j, ch in enumerate(meta.channels) if (codes[:, j] == k).any()}
        if per:
            out[kind] = per
    return out


def pooled(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Counts and events summed over the labelled outcomes; threshold-free metrics as mean and worst file."""
    lab = [o for o in outcomes if o.labels is not None]
    out: dict[str, Any] = {"files": len(lab)}
    if not lab:
        return out
    c, cc, ev = Counts(), Counts(), EventCounts()
    for o in lab:
        c, cc, ev = c + o.counts, cc + o.centred, ev + o.events
    out.update(c.rates())
    out.update(ev.rates())
    out["centred_lookahead"] = cc.rates()
    for key in ("roc_auc", "pr_auc", "vus_pr", "vus_roc"):
        vals = [o.scores_free.get(key) for o in lab if o.scores_free.get(key) is not None]
        out[f"{key}_mean"] = float(np.mean(vals)) if vals else None
    aucs = [(o.window_roc_auc, o.name) for o in lab if o.window_roc_auc is not None]
    out["window_roc_auc_mean"] = float(np.mean([a for a, _ in aucs])) if aucs else None
    out["window_roc_auc_worst"] = min(aucs)[0] if aucs else None
    out["window_roc_auc_worst_file"] = min(aucs)[1] if aucs else None
    return out


def _scored_ratios(o: Outcome) -> np.ndarray:
    """Score / threshold of the hop-1 windows wholly in the scored rows that the daemon scores at all (not in a
    stop, settling or a degraded device)."""
    ratio = (o.scores / o.threshold)[o.first :] if o.threshold > 0 else np.zeros(max(0, len(o.scores) - o.first))
    return ratio if o.scored is None else ratio[o.scored[o.first :]]


def alerts_summary(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Alerts per day (and per 1,000 scored points) over every outcome, labelled or not, and the
    hop-1 windows above the threshold per 1,000 (what a per-window false-alarm budget promises)."""
    alerts = sum(o.alerts() for o in outcomes)
    points = sum(len(o.decisions.flags) - o.first for o in outcomes)
    secs = [(len(o.decisions.flags) - o.first) * o.period_s for o in outcomes if o.period_s]
    days = sum(secs) / 86400 if len(secs) == len(outcomes) and secs else None
    ratios = [_scored_ratios(o) for o in outcomes]
    n_windows = sum(r.size for r in ratios)
    return {
        "alerts": alerts,
        "scored_points": points,
        "alerts_per_1000_points": 1000 * alerts / points if points else None,
        "hours": days * 24 if days else None,
        "alerts_per_day": alerts / days if days else None,
        "raised_fraction": float(np.mean(np.concatenate([o.decisions.flags[o.first :] for o in outcomes])))
        if points
        else None,
        "windows_above_per_1000": 1000 * sum(int((r > 1.0).sum()) for r in ratios) / n_windows if n_windows else None,
        "scored_windows": n_windows,
        **_headroom(ratios),
    }


def _headroom(ratios: Sequence[np.ndarray]) -> dict[str, Any]:
    """The highest and the 99th-percentile window score as a multiple of the threshold (None without windows)."""
    r = np.concatenate([np.asarray(x, dtype=np.float64) for x in ratios]) if ratios else np.zeros(0)
    r = r[np.isfinite(r)]
    if not r.size:
        return {"max_score_ratio": None, "p99_score_ratio": None}
    return {"max_score_ratio": float(r.max()), "p99_score_ratio": float(np.quantile(r, 0.99))}


def evaluate(
    model_path: Path,
    series: Sequence[Series],
    hop: int | None = None,
    policy: AlertPolicy | None = None,
    tolerance: int | None = None,
    progress: bool = False,
    row_offset: int = 0,
) -> dict[str, Any]:
    """Decisions and metrics of the model on ``series`` (labelled or not), as a JSON-ready dict. ``hop``: the
    daemon's scoring hop (None: the model's), capped at the window as the daemon caps it; ``row_offset``: the
    file's data row of each series' first row (``--rows A:``), for the alert list's rows."""
    model = open_model(model_path)
    meta = model.metadata
    asked = hop or meta.hop
    hop = min(asked, meta.window)
    policy = policy or AlertPolicy()
    outcomes = []
    states: dict[str, Any] = {}  # file -> rows and stretches per operating state
    sensors: dict[str, Any] = {}  # file -> sensor faults per kind and channel
    listed: list[ListedAlert] = []  # every alert, in file order
    for s in series:
        if s.channels != meta.channels:
            raise DataError(
                f"{s.name}: channels [{', '.join(s.channels)}] differ from the model's [{', '.join(meta.channels)}]"
            )
        if len(s.values) < meta.window:
            raise DataError(f"{s.name}: {len(s.values):,} rows, fewer than one window of {meta.window} (the model's): "
                            f"evaluate needs at least {meta.window} rows in each file")
        period = s.sample_period_s or meta.sample_period_s
        st = state_rows(meta, s)
        if st is not None:
            states[s.name] = st[1]
        faults = sensor_faults(meta, s, None if st is None else st[0] == 0)
        if faults:
            sensors[s.name] = faults
        stage(f"scoring {len(s.values) - meta.window + 1:,} windows of {Path(s.name).name} as the daemon does",
              progress)
        running = None if st is None else st[0] == 0
        views: list[SensorView | None] = []
        sc, scored = daemon_scores(model, s.values, running, progress=progress, gaps=s.gaps, views=views)
        restarts = window_restarts(s.gaps, running)
        o = judge(s.name, sc, s.labels, meta.threshold.value, meta.window, hop, policy, 0, period, tolerance,
                  scored=scored, restarts=restarts)
        outcomes.append(o)
        listed += list_alerts(model, s.name, s.values, o.decisions.flags, sc, scored, hop, restarts, policy,
                              views[0], s.ts, period, s.labels, meta.window - 1 if tolerance is None else tolerance,
                              row_offset=row_offset)
    labelled = [o for o in outcomes if o.labels is not None]
    report: dict[str, Any] = {
        "model": str(model_path),
        "model_id": model.model_id,
        "threshold": {"value": meta.threshold.value, "method": meta.threshold.method, "params": meta.threshold.params},
        "window": meta.window,
        "decision_hop": hop,
        "decision_hop_asked": asked,
        "policy": asdict(policy),
        "event_tolerance": meta.window - 1 if tolerance is None else tolerance,
        "files": [s.name for s in series],
        "rules": {
            "decisions": f"the daemon's: a window every {hop} samples, raise after {policy.raise_after} above the "
            f"threshold, clear after {policy.clear_after} below {policy.clear_ratio} x threshold; a point is flagged "
            "while raised (known at each window's last sample)",
            "centred_lookahead": "look-ahead rule, for comparison only: >= half the hop-1 windows covering a point above",
            "point_scores": "the hop-1 window ending at the point (causal)",
            "sensor_checks": "the daemon's defaults: a window is scored without the channels missing or stuck in its "
            "span, and not at all while the device is degraded or out of distribution (trainer/sensor_view.py)",
        },
        "alerts": alerts_summary(outcomes),
        "alert_list": [a.to_dict() for a in listed],
        "per_file": {o.name: o.summary() for o in outcomes},
        "operating_states": states,
        "sensor_faults": sensors,
    }
    if labelled:
        report["daemon"] = pooled(labelled)
        ws = np.concatenate([o.scores for o in labelled])
        wl = np.concatenate([window_labels(o.labels, meta.window, 1) for o in labelled])
        report["window_metrics"] = {
            **Counts.of(ws > meta.threshold.value, wl).rates(),
            "roc_auc": roc_auc(wl, ws),
            "n": int(wl.size),
            "n_anomalous": int(wl.sum()),
        }
    return report


def format_report(rep: dict[str, Any]) -> str:
    """The lines ``evaluate`` prints."""

    def f(v: float | None, pct: bool = False, digits: int = 3) -> str:
        return "n/a" if v is None else (f"{100 * v:.1f}%" if pct else f"{v:.{digits}f}")

    a = rep["alerts"]
    budget = rep["threshold"]["params"].get("budget")
    lines = [
        f"decisions as the daemon makes them: hop {rep['decision_hop']}"
        + (f" (--hop {rep['decision_hop_asked']} capped at the window, as the daemon caps it)"
           if rep.get("decision_hop_asked", rep["decision_hop"]) != rep["decision_hop"] else "")
        + f", raise after {rep['policy']['raise_after']}, "
        f"clear after {rep['policy']['clear_after']} below {rep['policy']['clear_ratio']} x threshold "
        f"{rep['threshold']['value']:.4g}",
        f"alerts: {a['alerts']} over {a['scored_points']:,} points"
        + (f" ({a['hours']:.1f} h): {a['alerts_per_day']:.2f} per day" if a["alerts_per_day"] is not None else "")
        + f", raised {f(a['raised_fraction'], True)} of the time",
    ]
    d = rep.get("daemon")
    if d and not d.get("events"):  # a label column of zeros only: the data is normal, measured as such
        lines.append("labels: no row is labelled anomalous, so the point and event metrics say nothing: measured "
                     "as normal data")
        d = None
    if not d:  # normal data: what the calibration promised
        lines.append(
            f"windows above the threshold: {f(a['windows_above_per_1000'], digits=1)} per 1,000 of the "
            f"{a.get('scored_windows', 0):,} it scores"
            + ("" if budget is None else f" (its budget: {1000 * float(budget):g} per 1,000 before the margin; "
               "more here means this data departs from what it was calibrated on)")
        )
        if a.get("max_score_ratio") is not None:
            few = a.get("scored_windows", 0) < HEADROOM_WINDOWS
            lines.append(f"headroom: the highest window scores {a['max_score_ratio']:.2g} x the threshold, the 99th "
                         f"percentile {a['p99_score_ratio']:.2g} x"
                         + (f" (from {a.get('scored_windows', 0):,} windows: too few to judge a margin by)" if few
                            else " (on normal data like this a lower --margin would still raise nothing: fit again "
                            "with it, and evaluate on another normal recording)" if a["max_score_ratio"] < 0.5 else ""))
    if d:
        lines += [
            f"point:  F1 {f(d['f1'])} (flag-all F1 {f(d['flag_all_f1'])}) precision {f(d['precision'])} "
            f"recall {f(d['recall'])} FAR {f(d['far'], True)} MAR {f(d['mar'], True)}",
            f"events: {d['detected']}/{d['events']} detected, {d['true_alerts']}/{d['alerts']} alerts true, "
            + (f"delay median {f(d['delay_median_s'], digits=0)} s p90 {f(d['delay_p90_s'], digits=0)} s "
               f"({f(d['delay_median'], digits=0)} / {f(d['delay_p90'], digits=0)} samples)"
               if d.get("delay_median") is not None else "no delay (no event detected)")
            + f", false alarms/day {f(d['false_alarms_per_day'], digits=1)}",
            f"scores: ROC-AUC {f(d['roc_auc_mean'])} PR-AUC {f(d['pr_auc_mean'])} VUS-PR {f(d['vus_pr_mean'])} "
            f"window ROC-AUC {f(d['window_roc_auc_mean'])} (worst {f(d['window_roc_auc_worst'])})",
            f"look-ahead (centred, not what the edge can do): F1 {f(d['centred_lookahead']['f1'])} "
            f"FAR {f(d['centred_lookahead']['far'], True)} MAR {f(d['centred_lookahead']['mar'], True)}",
        ]
    listed = rep.get("alert_list") or []
    if listed:
        lines.append("each alert (the data rows, from 0 after the header, where the daemon raises and clears it; what "
                     "its alert says of the raising window):")
        lines += alert_lines(listed, len(rep.get("files") or []) > 1)
    lines += conditions_lines(rep)
    return "\n".join(lines)


def conditions_lines(rep: dict[str, Any]) -> list[str]:
    """Operating states and sensor faults, apart from the (process) anomalies above."""
    lines = []
    st = rep.get("operating_states") or {}
    if st:
        tot = {k: sum(v[k]["rows"] for v in st.values()) for k in ("running", "stopped", "settling")}
        stops = sum(v["stopped"]["stretches"] for v in st.values())
        agree = [v["agreement_with_column"] for v in st.values() if "agreement_with_column" in v]
        lines.append(f"operating states (not scored while stopped or settling): running {tot['running']} rows, "
                     f"stopped {tot['stopped']} rows in {stops} stops, settling {tot['settling']} rows"
                     + (f"; agrees with the state column on {100 * float(np.mean(agree)):.1f}% of rows" if agree else ""))
    sf = rep.get("sensor_faults") or {}
    if sf:  # per fault kind and channel, summed over the files (and in how many of them)
        by_kind: dict[str, dict[str, list[Any]]] = {}
        for name, per in sf.items():
            for kind, chans in per.items():
                for ch, v in chans.items():
                    tot = by_kind.setdefault(kind, {}).setdefault(ch, [0, 0, []])
                    tot[0], tot[1] = tot[0] + v["stretches"], tot[1] + v["rows"]
                    tot[2].append(Path(name).name)
        n_files = len(rep.get("files") or sf)
        many = n_files > 1

        def where(files: list[str]) -> str:  # the files by name while they are few
            if not many:
                return ""
            return f" in {', '.join(files)}" if len(files) <= 3 else f" in {len(files)} of {n_files} files"

        lines.append("sensor faults (the edge's health checks; not anomalies): " + "; ".join(
            f"{k}: " + ", ".join(f"{ch} {n}x/{rows:,} rows{where(files)}" for ch, (n, rows, files) in chans.items())
            for k, chans in by_kind.items()))
    else:
        lines.append("sensor faults (the edge's health checks): none")
    return lines


def plot(model_path: Path, series: Sequence[Series], png: Path, rep: dict[str, Any], max_files: int = 4) -> None:
    """PNG: per file, the top channels over time and the score against the threshold, raises and clears
    marked (:mod:`trainer.plots`)."""
    from trainer.plots import plot_evaluation

    plot_evaluation(model_path, series, png, rep, max_files)


def write_report(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
