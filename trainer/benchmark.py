"""Quality suites through ``fit``'s defaults, the exported ONNX model and the daemon's decisions.

SKAB (``edgewatch-train benchmark skab DIR``), SKAB's per-file protocol: for each labelled file,
fit with the trainer's default options (all channels, nothing chosen per dataset) on its first
``train_rows`` rows (taken as normal, never their labels) and score the rest. Every hop-1 window of
the whole file is scored through the edge's model loader; decisions are the daemon's
(:func:`trainer.evaluate.judge`) and only rows from ``train_rows`` on count. Beside it, on the same
rows: the PCA T^2+Q monitor of :mod:`trainer.baselines` per point, and the same through the daemon's
hysteresis. Each unlabelled CSV under DIR (SKAB's anomaly-free recording) is fitted the same way
and scored on its rest, for the false alarms of a normal run.

Fault kinds (:func:`kind_of`): SKAB's valve1, valve2 and, in ``other/``, leaks (1, 3), rotor
imbalance (5, 7, 9), water level (11) and cavitation (13); elsewhere the parent folder's name.

Leave-one-kind-out (:func:`leave_one_kind_out`): the settings a user may select without refitting
(a multiplier on the model's threshold, the daemon's ``raise_after``), and with ``fit_grid`` other
values of ``fit``'s options (each a refit of every file), are chosen on every kind but one (objective: pooled F1 - 2 max(0, FAR - 8 %)) and scored on the kind left out; pooling the
left-out counts gives the estimate.

The synthetic suite is :mod:`trainer.benchmark_synthetic`; tables and markdown
:mod:`trainer.benchmark_report`.
"""

from __future__ import annotations

import csv
import logging
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.contract import ModelMetadata
from edge_runtime.pipeline.hysteresis import AlertPolicy
from trainer.baselines import PcaT2Q
from trainer.data import DataError, Series, no_input, read_csv
from trainer.evaluate import (
    Outcome,
    alerts_summary,
    daemon_scores,
    judge,
    open_model,
    pooled,
    window_restarts,
    window_scores,
)
from trainer.metrics import Counts, EventCounts

log = logging.getLogger(__name__)

SKAB_LABEL_COLUMNS = ("anomaly", "changepoint")
SKAB_KINDS = {
    "other/1.csv": "leak",
    "other/3.csv": "leak",
    "other/5.csv": "rotor imbalance",
    "other/7.csv": "rotor imbalance",
    "other/9.csv": "rotor imbalance",
    "other/11.csv": "water level",
    "other/13.csv": "cavitation",
}
KIND_ORDER = ("valve1", "valve2", "leak", "rotor imbalance", "water level", "cavitation")
EDGEWATCH = "edgewatch"
PCA_POINT = "PCA T2+Q (99 % limits, per point)"
PCA_HYST = "PCA T2+Q + daemon hysteresis"
EDGEWATCH_RANGE = "edgewatch with health.range_excludes"  # the daemon leaving out-of-range channels out of the score
DETECTORS = (EDGEWATCH, EDGEWATCH_RANGE, PCA_POINT, PCA_HYST)
POINTWISE = AlertPolicy(raise_after=1, clear_after=1, clear_ratio=1.0)  # a point flagged iff above


@dataclass
class Protocol:
    """Protocol settings only; the detector is ``fit``'s defaults plus ``fit_options`` (empty by default).

    ``hop``: the daemon's scoring hop for decisions (None: each model's own, the daemon's default).
    """

    train_rows: int = 400
    label_column: str = "anomaly"
    seed: int = 0
    hop: int | None = None
    policy: AlertPolicy = field(default_factory=AlertPolicy)
    fit_options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.train_rows < 2:
            raise ValueError(f"train rows must be >= 2, got {self.train_rows}")
        if self.hop is not None and self.hop < 1:
            raise ValueError(f"hop must be >= 1, got {self.hop}")


@dataclass
class FileRun:
    """One file fitted and scored: hop-1 window ``scores`` (T-W+1,) as the daemon scores them with its sensor
    checks (:mod:`trainer.sensor_view`; ``scored`` the windows it scores at all, None: all), PCA row scores ``pca``
    (T,); ``range_scores`` / ``range_scored`` the same with ``health.range_excludes`` on."""

    name: str
    kind: str
    meta: ModelMetadata
    scores: np.ndarray
    pca: np.ndarray
    labels: np.ndarray | None
    first: int
    period_s: float | None
    fit_s: float
    scored: np.ndarray | None = None
    range_scores: np.ndarray | None = None
    range_scored: np.ndarray | None = None
    sensor_checks: dict[str, Any] = field(default_factory=dict)  # per view: shares of windows masked / not scored
    restarts: list[int] = field(default_factory=list)  # rows where the daemon's window restarts (time gaps)

    def judge(self, detector: str, protocol: Protocol, scale: float = 1.0, raise_after: int | None = None) -> Outcome:
        """This file's outcome under ``detector``, threshold x ``scale``, the daemon's rule otherwise."""
        pol = protocol.policy if raise_after is None else AlertPolicy(**{**asdict(protocol.policy), "raise_after": raise_after})
        w = self.meta.window
        common = {"first": self.first, "period_s": self.period_s, "tolerance": w - 1, "vus_buffer": 2 * w}
        if detector in (EDGEWATCH, EDGEWATCH_RANGE):
            hop = protocol.hop or self.meta.hop
            scores, scored = (self.range_scores, self.range_scored) if detector == EDGEWATCH_RANGE else (
                self.scores, self.scored)
            if scores is None:
                raise ValueError(f"{self.name}: scored without the range_excludes view (use scored_run)")
            return judge(self.name, scores, self.labels, self.meta.threshold.value * scale, w, hop, pol,
                         scored=scored, restarts=self.restarts, **common)
        return judge(self.name, self.pca, self.labels, scale, 1, 1, POINTWISE if detector == PCA_POINT else pol, **common)


# --------------------------------------------------------------------------- files


def _natural_key(path: Path) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", str(path))]


def _header(path: Path) -> list[str]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            line = fh.readline()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the header ({exc})") from None
    delim = max(";,\t", key=line.count)
    return [h.strip() for h in next(csv.reader([line], delimiter=delim), [])]


def find_csvs(root: Path, label_column: str = "anomaly") -> tuple[list[Path], list[Path]]:
    """All CSVs under ``root`` (recursive, natural order) split into ``(labelled, unlabelled)``."""
    root = Path(root)
    if not root.is_dir():
        raise no_input(f"{root}: not a folder")
    labelled, unlabelled = [], []
    for p in sorted(root.rglob("*.csv"), key=_natural_key):
        (labelled if label_column in _header(p) else unlabelled).append(p)
    return labelled, unlabelled


def load(path: Path, label_column: str = "anomaly") -> Series:
    """One CSV with every feature column; SKAB's label columns are never features."""
    header = _header(path)
    exclude = [c for c in SKAB_LABEL_COLUMNS if c in header and c != label_column]
    return read_csv(path, label_column=label_column, exclude=exclude)


def display_name(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def kind_key(kind: str) -> tuple[int, str]:
    """Sort key: SKAB's kinds in :data:`KIND_ORDER`, then any other by name."""
    return (KIND_ORDER.index(kind), "") if kind in KIND_ORDER else (len(KIND_ORDER), kind)


def kind_of(name: str) -> str:
    """Fault kind of a file named relative to the data folder (SKAB's table, else its folder)."""
    return SKAB_KINDS.get(name, name.rsplit("/", 1)[0] if "/" in name else "all")


# --------------------------------------------------------------------------- runner


def fit_default(values: np.ndarray, channels: list[str], out: Path, protocol: Protocol) -> ModelMetadata:
    """``fit`` with its defaults (plus ``protocol.fit_options``) on raw ``values`` (T, C)."""
    from trainer.api import train_and_export  # torch is imported only when a model is trained

    return train_and_export(values, channels, out, seed=protocol.seed, **protocol.fit_options)


def run_file(series: Series, name: str, kind: str, protocol: Protocol, workdir: Path, index: int) -> FileRun:
    """Fit on the first ``train_rows`` rows, score every hop-1 window through the edge loader, fit PCA."""
    n = protocol.train_rows
    if len(series.values) <= n:
        raise DataError(f"{name}: {len(series.values)} rows, not more than the {n} training rows")
    workdir.mkdir(parents=True, exist_ok=True)
    model_path = workdir / f"model-{index}.onnx"
    t0 = time.perf_counter()
    # (a gap in the training rows would be windowed across: no SKAB file has one, docs/EVALUATION.md)
    fit_default(series.values[:n], series.channels, model_path, protocol)
    fit_s = time.perf_counter() - t0
    model = open_model(model_path)
    return scored_run(model, series.values, series.labels, name, kind, n, series.sample_period_s, fit_s,
                      series.gaps)


def scored_run(model: Any, values: np.ndarray, labels: np.ndarray | None, name: str, kind: str, first: int,
               period_s: float | None, fit_s: float, gaps: Sequence[int] = ()) -> FileRun:
    """``values`` scored by ``model`` as the daemon scores them (its sensor checks, with and without
    ``health.range_excludes``; no window across a time gap, ``gaps``) and by PCA T2+Q fitted on the first
    ``first`` rows."""
    checks: dict[str, Any] = {"default": {}, "range_excludes": {}}
    raw = window_scores(model, values)  # once: each view masks its own windows
    scores, scored = daemon_scores(model, values, info=checks["default"], raw=raw, gaps=gaps)
    range_scores, range_scored = daemon_scores(model, values, range_excludes=True, info=checks["range_excludes"],
                                               raw=raw, gaps=gaps)
    pca = PcaT2Q.fit(values[:first]).score(values)
    return FileRun(name, kind, model.metadata, scores, pca, labels, first, period_s, fit_s,
                   scored, range_scores, range_scored, checks, window_restarts(gaps))


def run_files(
    series: Sequence[Series], names: Sequence[str], protocol: Protocol, workdir: Path, progress: Callable[[str], None] | None = None
) -> tuple[list[FileRun], dict[str, str]]:
    """Every file through :func:`run_file`; a file ``fit`` refuses is listed in the errors, not scored."""
    runs, errors = [], {}
    for i, (s, name) in enumerate(zip(series, names, strict=True)):
        try:
            runs.append(run_file(s, name, kind_of(name), protocol, workdir, i))
        except DataError as exc:
            errors[name] = " ".join(str(exc).split())
            log.warning("%s: not scored: %s", name, errors[name])
            continue
        if progress:
            r = runs[-1]
            progress(f"{name}: W {r.meta.window}, hop {r.meta.hop}, threshold {r.meta.threshold.value:.4g}, fit {r.fit_s:.1f} s")
    return runs, errors


def suite_report(runs: Sequence[FileRun], protocol: Protocol) -> dict[str, Any]:
    """Per detector: ``overall`` and ``kinds`` (pooled) and ``files``; labelled runs only."""
    kinds = sorted({r.kind for r in runs}, key=kind_key)
    out: dict[str, Any] = {}
    for det in DETECTORS:
        outcomes = [r.judge(det, protocol) for r in runs]
        out[det] = {
            "overall": pooled(outcomes),
            "kinds": {k: pooled([o for o, r in zip(outcomes, runs, strict=True) if r.kind == k]) for k in kinds},
            "files": {o.name: o.summary() for o in outcomes},
        }
    return out


def normal_report(runs: Sequence[FileRun], protocol: Protocol) -> dict[str, Any]:
    """Alerts of unlabelled (normal) recordings fitted on their first rows, per detector, and the
    false-alarm budget each edgewatch model was calibrated to (windows above per 1,000)."""
    out: dict[str, Any] = {}
    for det in DETECTORS:
        out[det] = {}
        for r in runs:
            a = alerts_summary([r.judge(det, protocol)])
            if det == EDGEWATCH:
                budget = r.meta.threshold.params.get("budget")
                a["budget_per_1000"] = None if budget is None else 1000 * float(budget)
            out[det][r.name] = a
    return out


NORMAL_FRACTION = 0.5  # a normal recording is also fitted on its first half


def load_all(paths: Sequence[Path], root: Path, label_column: str) -> tuple[list[Series], list[str], dict[str, str]]:
    """``(series, names, errors)``: a file that cannot be read is one line in the errors, not the end of the run."""
    series, names, errors = [], [], {}
    for p in paths:
        name = display_name(p, root)
        try:
            series.append(load(p, label_column))
            names.append(name)
        except DataError as exc:
            errors[name] = " ".join(str(exc).split())
            log.warning("%s: not scored: %s", name, errors[name])
    return series, names, errors


def run_normal(
    paths: Sequence[Path], root: Path, protocol: Protocol, workdir: Path, progress: Callable[[str], None] | None
) -> tuple[list[FileRun], dict[str, str]]:
    """Each normal recording fitted on its first ``train_rows`` rows (the per-file protocol) and on its
    first :data:`NORMAL_FRACTION`, scored on the rest."""
    workdir.mkdir(parents=True, exist_ok=True)
    runs, errors = [], {}
    for p in paths:
        name = display_name(p, root)
        try:
            s = load(p, protocol.label_column)
        except DataError as exc:
            errors[name] = " ".join(str(exc).split())
            log.warning("%s: not scored: %s", name, errors[name])
            continue
        for rows in dict.fromkeys([protocol.train_rows, int(NORMAL_FRACTION * len(s.values))]):
            got, err = run_files([s], [f"{name} (fit on the first {rows} rows)"], replace(protocol, train_rows=rows),
                                 workdir / str(rows), progress)
            runs += got
            errors.update(err)
    return runs, errors


def run_skab(
    root: Path,
    protocol: Protocol | None = None,
    limit: int | None = None,
    loko: bool = False,
    workdir: Path | None = None,
    progress: Callable[[str], None] | None = None,
    fit_grid: dict[str, Sequence[Any]] | None = None,
) -> tuple[dict[str, Any], list[FileRun]]:
    """The SKAB suite on every CSV under ``root``: ``(report, labelled runs)``.

    ``loko``: add :func:`leave_one_kind_out`; ``fit_grid`` (option -> values) adds every combination
    of those fit options as candidates (each refits every labelled file: the cost multiplies).
    """
    protocol = protocol or Protocol()
    protocol.validate()
    root = Path(root)
    labelled_paths, unlabelled_paths = find_csvs(root, protocol.label_column)
    if limit is not None:
        labelled_paths = labelled_paths[:limit]
    if not labelled_paths:
        raise DataError(f"{root}: no CSV with a {protocol.label_column!r} column found (searched recursively)")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgewatch-bench-") as tmp:
        work = Path(workdir) if workdir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        labelled, names, errors = load_all(labelled_paths, root, protocol.label_column)
        runs, fit_errors = run_files(labelled, names, protocol, work, progress)
        errors.update(fit_errors)
        alternatives: dict[str, list[FileRun]] = {}
        for i, (lab, opts) in enumerate(fit_grid_options(fit_grid).items() if loko and fit_grid else []):
            (work / f"grid-{i}").mkdir(exist_ok=True)
            alt = replace(protocol, fit_options={**protocol.fit_options, **opts})
            alt_runs, alt_errors = run_files(labelled, names, alt, work / f"grid-{i}", progress)
            if alt_errors:  # a candidate some file cannot be fitted with is no candidate
                log.warning("fit candidate %s dropped: %s", lab, "; ".join(f"{k}: {v}" for k, v in alt_errors.items()))
                continue
            alternatives[lab] = [r for r in alt_runs if r.name in {x.name for x in runs}]
        normal_runs, normal_errors = run_normal(unlabelled_paths, root, protocol, work / "normal", progress)
    report: dict[str, Any] = {
        "protocol": {**asdict(protocol), "policy": asdict(protocol.policy)},
        "data": {"root": str(root), "labelled_files": len(labelled_paths), "scored_from_row": protocol.train_rows},
        "detectors": suite_report(runs, protocol) if runs else {},
        "normal_recordings": normal_report(normal_runs, protocol),
        "models": {r.name: model_summary(r) for r in runs + normal_runs},
        "not_scored": {**errors, **normal_errors},
        "fit_seconds": round(sum(r.fit_s for r in runs + normal_runs), 1),
    }
    if loko and runs:
        report["leave_one_kind_out"] = leave_one_kind_out(runs, protocol, alternatives=alternatives)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return report, runs


def model_summary(r: FileRun) -> dict[str, Any]:
    """What ``fit`` chose for one file (window, hop, threshold, any screening it wrote)."""
    m = r.meta
    out = {"model_id": m.model_id, "window": m.window, "hop": m.hop, "threshold": m.threshold.value,
           "threshold_method": m.threshold.method, "fit_s": round(r.fit_s, 2)}
    for key in ("sizes", "false_alarms", "epochs", "stop_reason"):
        if key in (m.training or {}):
            out[key] = m.training[key]
    screen = (m.scoring or {}).get("screening") or []
    out["screened_out"] = {c["name"]: c.get("reason", "") for c in screen if not c.get("kept", True)}
    if "cross_channel" in (m.scoring or {}):
        out["cross_channel"] = {k: v for k, v in m.scoring["cross_channel"].items()}
    if r.sensor_checks:  # the daemon's sensor checks replayed: windows masked, degraded, out of distribution
        out["sensor_checks"] = r.sensor_checks
    return out


def plot_run(run: FileRun, protocol: Protocol, path: Path, title: str = "") -> None:
    """PNG of one file: the score of the window ending at each row vs the threshold, labelled rows,
    the rows the daemon's rule flags, and the same for the PCA T2+Q baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from trainer.decisions import causal_point_scores
    from trainer.metrics import segments

    n = run.pca.shape[0]
    fig, axes = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True)
    panels = (
        (EDGEWATCH, causal_point_scores(run.scores, n, run.meta.window), run.meta.threshold.value),
        (PCA_HYST, run.pca, 1.0),
    )
    for ax, (det, score, thr) in zip(axes, panels, strict=True):
        o = run.judge(det, protocol)
        ymax = float(np.nanmax(np.r_[score[run.first :], thr])) * 1.1
        score = np.where(score > 0, score, np.nan) if det != EDGEWATCH else score
        if run.labels is not None:
            for lo, hi in segments(run.labels != 0):
                ax.axvspan(lo, hi, color="tab:red", alpha=0.15, lw=0)
        for lo, hi in segments(o.decisions.flags):
            ax.axvspan(lo, hi, ymin=0, ymax=0.06, color="tab:orange", lw=0)
        ax.plot(score, lw=0.8, color="tab:blue")
        ax.axhline(thr, color="k", ls="--", lw=1)
        ax.axvline(run.first, color="grey", ls=":", lw=1)
        if det == EDGEWATCH:
            ax.set_ylim(0, ymax)
        else:
            ax.set_yscale("log")
        ax.set_title(f"{det}: score (blue) vs threshold (dashed); labelled anomaly shaded red; "
                     "flagged rows (daemon's rule) orange", fontsize=8)
    axes[-1].set_xlabel(f"row (the first {run.first} are the training rows)")
    fig.suptitle(title or run.name, fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------- leave one kind out

SCALES = (0.8, 1.0, 1.25, 1.5, 2.0)
RAISE_AFTER = (1, 3, 5)


def selection_objective(c: Counts, far_budget: float = 0.08, penalty: float = 2.0) -> float:
    """``F1 - penalty * max(0, FAR - far_budget)`` of pooled counts (-inf when undefined)."""
    r = c.rates()
    if r["f1"] is None or r["far"] is None:
        return float("-inf")
    return r["f1"] - penalty * max(0.0, r["far"] - far_budget)


def choose(table: dict[tuple[float, int], list[Counts]], files: Sequence[int]) -> tuple[float, int]:
    """The candidate with the best objective on ``files`` (counts pooled); ties: the first in grid order."""
    best, best_v = None, float("-inf")
    for cand, counts in table.items():
        pooled_c = sum((counts[i] for i in files), Counts())
        v = selection_objective(pooled_c)
        if best is None or v > best_v:
            best, best_v = cand, v
    assert best is not None
    return best


DEFAULTS_LABEL = "fit defaults"


def leave_one_kind_out(
    runs: Sequence[FileRun],
    protocol: Protocol,
    scales: Sequence[float] = SCALES,
    raise_after: Sequence[int] = RAISE_AFTER,
    alternatives: dict[str, Sequence[FileRun]] | None = None,
) -> dict[str, Any]:
    """Choose (fit, threshold multiplier, raise_after) on all kinds but one, score on the one left out.

    ``runs``: the files fitted with the defaults; ``alternatives``: the same files fitted with other
    fit options (label -> runs, in the same order), each one more candidate model per file.
    """
    fits = {DEFAULTS_LABEL: list(runs), **{k: list(v) for k, v in (alternatives or {}).items()}}
    cands = [(f, s, k) for f in fits for s in scales for k in raise_after]
    outcomes = {c: [r.judge(EDGEWATCH, protocol, c[1], c[2]) for r in fits[c[0]]] for c in cands}
    table = {c: [o.counts for o in outs] for c, outs in outcomes.items()}

    def label(c: tuple[str, float, int]) -> dict[str, Any]:
        return {"fit": c[0], "threshold_scale": c[1], "raise_after": c[2]}

    kinds = sorted({r.kind for r in runs}, key=kind_key)
    left_counts, left_events, per_kind = Counts(), EventCounts(), {}
    for k in kinds:
        inside = [i for i, r in enumerate(runs) if r.kind == k]
        others = [i for i, r in enumerate(runs) if r.kind != k]
        if not others:
            continue
        c = choose(table, others)
        got = sum((table[c][i] for i in inside), Counts())
        ev = sum((outcomes[c][i].events for i in inside), EventCounts())
        left_counts, left_events = left_counts + got, left_events + ev
        per_kind[k] = {"chosen": label(c), "files": len(inside),
                       **got.rates(), **{x: ev.rates()[x] for x in ("events", "detected", "event_recall")}}
    c_all = choose(table, list(range(len(runs))))
    default = (DEFAULTS_LABEL, 1.0, protocol.policy.raise_after)
    in_sample = {
        f"{c[0]}, {c[1]}x threshold, raise after {c[2]}": sum(table[c], Counts()).rates()
        for c in dict.fromkeys([default, c_all]) if c in table
    }
    return {
        "grid": {"fit": list(fits), "threshold_scale": list(scales), "raise_after": list(raise_after)},
        "objective": "pooled F1 - 2 * max(0, FAR - 0.08)",
        "per_kind_left_out": per_kind,
        "left_out_estimate": {**left_counts.rates(), **left_events.rates()},
        "chosen_on_all_kinds": label(c_all),
        "in_sample": in_sample,
    }


def fit_grid_options(grid: dict[str, Sequence[Any]]) -> dict[str, dict[str, Any]]:
    """Every combination of ``grid`` (option -> values) as ``{"k=v, ...": {k: v, ...}}``."""
    import itertools

    keys = list(grid)
    out = {}
    for values in itertools.product(*(grid[k] for k in keys)):
        opts = dict(zip(keys, values, strict=True))
        out[", ".join(f"{k}={v}" for k, v in opts.items())] = opts
    return out
