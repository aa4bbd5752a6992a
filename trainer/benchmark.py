"""SKAB-style detection benchmark through edgewatch's own trainer and ONNX scoring (the edge path).

Protocols
---------
- ``per-file`` (SKAB's published outlier-detection protocol): for each labelled file, fit the
  normalisation, the model and its threshold on the first ``train_rows`` rows (taken as normal),
  then score the rest of that file. The threshold is calibrated by the trainer on the last
  ``val_fraction`` of those rows only; no label is ever used for fitting.
- ``anomaly-free`` (the edge story): one model trained on the unlabelled CSV(s) found under the
  data folder (SKAB: ``anomaly-free/anomaly-free.csv``), applied to every labelled file. The same
  rows are scored as in ``per-file`` (from ``train_rows`` on), so the two totals are comparable.

Metrics are point-wise (no tolerance window), with TP/FP/FN/TN summed over files:
``F1 = TP / (TP + (FP + FN) / 2)``, ``FAR = FP / (FP + TN)``, ``MAR = FN / (FN + TP)``.

Point rule
----------
Every window of ``W`` steps is scored (hop 1); window ``i`` covers rows ``i .. i+W-1``. A window is
flagged when its score is above the model's threshold (optionally through the edge runtime's
alert hysteresis). A point is then anomalous by one of :data:`POINT_RULES`:

- ``causal``: the window ending at the point is flagged (what the edge knows at that moment);
- ``majority``: at least half of the windows covering the point are flagged (looks ``W-1``
  steps ahead; equivalent to centring the decision on the point);
- ``all``: every window covering the point is flagged (the rule of SKAB's Conv-AE baseline).
"""

from __future__ import annotations

import csv
import logging
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.pipeline.hysteresis import AlertPolicy, hysteresis
from edge_runtime.windowing_offline import sliding_windows
from trainer.data import DataError, Series, read_csv

log = logging.getLogger(__name__)

POINT_RULES = ("causal", "majority", "all")
PROTOCOLS = ("per-file", "anomaly-free")
SKAB_LABEL_COLUMNS = ("anomaly", "changepoint")


# --------------------------------------------------------------------------- metrics (pure)


@dataclass(frozen=True)
class Counts:
    """Point-wise confusion counts."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    @classmethod
    def of(cls, predicted: np.ndarray, labels: np.ndarray) -> Counts:
        """Counts of ``predicted`` (T,) bool against ``labels`` (T,) 0/1."""
        p = np.asarray(predicted, dtype=bool)
        y = np.asarray(labels) != 0
        if p.shape != y.shape:
            raise ValueError(f"predictions {p.shape} and labels {y.shape} differ in shape")
        return cls(int(np.sum(p & y)), int(np.sum(p & ~y)), int(np.sum(~p & y)), int(np.sum(~p & ~y)))

    def rates(self) -> dict[str, Any]:
        """F1, FAR, MAR (fractions; SKAB's definitions), precision, recall and the counts.

        A rate whose denominator is zero is ``None`` (e.g. FAR of a file with no normal point).
        """

        def ratio(a: int, b: int) -> float | None:
            return a / b if b else None

        return {
            "f1": ratio(self.tp, self.tp + (self.fp + self.fn) / 2),
            "far": ratio(self.fp, self.fp + self.tn),
            "mar": ratio(self.fn, self.fn + self.tp),
            "precision": ratio(self.tp, self.tp + self.fp),
            "recall": ratio(self.tp, self.tp + self.fn),
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
        }


# --------------------------------------------------------------------------- decisions (pure)


def point_flags(window_flags: np.ndarray, n_steps: int, window: int, rule: str = "majority") -> np.ndarray:
    """Point decisions (T,) bool from hop-1 window decisions (N,) with ``N = T - W + 1``.

    See the module docstring for the rules. Points no window covers are False.
    """
    if rule not in POINT_RULES:
        raise ValueError(f"point rule must be one of {', '.join(POINT_RULES)}, got {rule!r}")
    f = np.asarray(window_flags, dtype=bool)
    n = f.shape[0]
    if n != max(0, n_steps - window + 1):
        raise ValueError(f"{n} window decisions do not match {n_steps} steps with window {window} (hop 1)")
    out = np.zeros(n_steps, dtype=bool)
    if n == 0:
        return out
    if rule == "causal":
        out[window - 1 :] = f
        return out
    t = np.arange(n_steps)
    lo = np.maximum(0, t - window + 1)  # first window covering t
    hi = np.minimum(n - 1, t)  # last window covering t
    csum = np.concatenate([[0], np.cumsum(f)])
    flagged = csum[hi + 1] - csum[lo]
    covering = hi - lo + 1
    return flagged * 2 >= covering if rule == "majority" else flagged == covering


def alarm_states(scores: np.ndarray, threshold: float, policy: AlertPolicy) -> np.ndarray:
    """Per-window alarm state (N,) bool: the edge runtime's raise/clear hysteresis over ``scores`` (N,)."""
    return hysteresis(scores, threshold, policy)[0]


def decide(
    scores: np.ndarray,
    threshold: float,
    n_steps: int,
    window: int,
    rule: str = "majority",
    policy: AlertPolicy | None = None,
) -> np.ndarray:
    """Point decisions (T,) from hop-1 window ``scores`` (N,): threshold, optional hysteresis, point rule."""
    flags = np.asarray(scores) > threshold if policy is None else alarm_states(scores, threshold, policy)
    return point_flags(flags, n_steps, window, rule)


# --------------------------------------------------------------------------- configuration and results


@dataclass
class BenchmarkConfig:
    """How the detector is built and how its window scores become point labels.

    The defaults were chosen on SKAB valve1 by repeated leave-half-the-files-out selection
    (see docs/EVALUATION.md), never with the scored file's own labels.
    """

    channels: list[str] | None = field(default_factory=lambda: ["Volume Flow RateRMS"])
    window: int = 60
    train_rows: int = 400
    epochs: int = 30
    seed: int = 0
    val_fraction: float = 0.2
    denoise: float = 0.0
    threshold_method: str = "quantile"
    threshold_q: float = 0.999
    threshold_scale: float = 2.0
    pot_level: float = 0.98
    point_rule: str = "majority"
    hysteresis: bool = False
    label_column: str = "anomaly"

    def validate(self) -> None:
        if self.point_rule not in POINT_RULES:
            raise ValueError(f"point rule must be one of {', '.join(POINT_RULES)}, got {self.point_rule!r}")
        if self.window < 2:
            raise ValueError(f"window must be >= 2, got {self.window}")
        if self.train_rows <= self.window:
            raise ValueError(f"train rows ({self.train_rows}) must exceed the window ({self.window})")
        if self.threshold_scale <= 0:
            raise ValueError(f"threshold scale must be > 0, got {self.threshold_scale}")
        if self.channels is not None and not self.channels:
            raise ValueError("channels: give at least one, or None for every feature column")


@dataclass
class FileResult:
    """One labelled file scored under one protocol. Arrays: ``scores`` (N,) hop-1 window scores,
    ``flags`` and ``labels`` (T,) over the whole file; only rows ``>= first_scored`` count."""

    name: str
    threshold: float
    window: int
    first_scored: int
    scores: np.ndarray
    flags: np.ndarray
    labels: np.ndarray
    model_id: str = ""

    @property
    def counts(self) -> Counts:
        s = self.first_scored
        return Counts.of(self.flags[s:], self.labels[s:])


def summarise(results: Sequence[FileResult]) -> dict[str, Any]:
    """``{"total": rates, "files": {name: rates + threshold}}``; totals from counts summed over files."""
    total = Counts()
    files: dict[str, Any] = {}
    for r in results:
        c = r.counts
        total = total + c
        files[r.name] = {**c.rates(), "threshold": r.threshold, "scored_points": c.tp + c.fp + c.fn + c.tn}
    return {"total": {**total.rates(), "files": len(results)}, "files": files}


def format_table(section: dict[str, Any], title: str) -> str:
    """A plain-text table of a :func:`summarise` section (rates in %)."""

    def pct(v: float | None) -> str:
        return "   n/a" if v is None else f"{100 * v:6.2f}"

    def f1(v: float | None) -> str:
        return "  n/a" if v is None else f"{v:5.3f}"

    rows = [
        title,
        f"{'file':<28} {'F1':>5} {'FAR %':>6} {'MAR %':>6} {'TP':>5} {'FP':>5} {'FN':>5} {'TN':>5}",
    ]
    items = list(section["files"].items()) + [("TOTAL", section["total"])]
    for name, m in items:
        rows.append(
            f"{name[-28:]:<28} {f1(m['f1'])} {pct(m['far'])} {pct(m['mar'])} "
            f"{m['tp']:5d} {m['fp']:5d} {m['fn']:5d} {m['tn']:5d}"
        )
    return "\n".join(rows)


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
        raise DataError(f"{root}: not a directory")
    labelled, unlabelled = [], []
    for p in sorted(root.rglob("*.csv"), key=_natural_key):
        (labelled if label_column in _header(p) else unlabelled).append(p)
    return labelled, unlabelled


def load(path: Path, cfg: BenchmarkConfig) -> Series:
    """Read one CSV with the configured channels; SKAB's label columns are never features."""
    header = _header(path)
    exclude = [c for c in SKAB_LABEL_COLUMNS if c in header and c != cfg.label_column]
    return read_csv(path, label_column=cfg.label_column, exclude=exclude, channels=cfg.channels)


# --------------------------------------------------------------------------- runner


def _fit(
    values: np.ndarray | list[np.ndarray], channels: list[str], out: Path, cfg: BenchmarkConfig
) -> tuple[float, str]:
    """Train, calibrate and export one model on raw ``values`` ((T, C) or a list of them): (threshold, id)."""
    from trainer.api import train_and_export  # torch is imported only when a model is trained

    meta = train_and_export(
        values,
        channels,
        out,
        window=cfg.window,
        hop=1,
        epochs=cfg.epochs,
        seed=cfg.seed,
        threshold_method=cfg.threshold_method,
        val_fraction=cfg.val_fraction,
        denoise=cfg.denoise,
        threshold_params={"q": cfg.threshold_q}
        if cfg.threshold_method == "quantile"
        else {"level": cfg.pot_level},
        threshold_scale=cfg.threshold_scale,
    )
    return meta.threshold.value, meta.model_id


def _score(
    model: Path, s: Series, threshold: float, model_id: str, name: str, cfg: BenchmarkConfig
) -> FileResult:
    from trainer.api import score_windows

    scores, _ = score_windows(model, sliding_windows(s.values, cfg.window, 1))
    policy = AlertPolicy() if cfg.hysteresis else None
    flags = decide(scores, threshold, len(s.values), cfg.window, cfg.point_rule, policy)
    if s.labels is None:
        raise DataError(f"{s.name}: no {cfg.label_column!r} labels")
    return FileResult(name, threshold, cfg.window, cfg.train_rows, scores, flags, s.labels, model_id)


def _display_name(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def run_per_file(
    labelled: Sequence[Series], names: Sequence[str], cfg: BenchmarkConfig, workdir: Path
) -> list[FileResult]:
    """SKAB's protocol: a model per file, fitted on its first ``train_rows`` rows."""
    out = []
    for i, (s, name) in enumerate(zip(labelled, names, strict=True)):
        model = workdir / f"per-file-{i}.onnx"
        thr, mid = _fit(s.values[: cfg.train_rows], s.channels, model, cfg)
        out.append(_score(model, s, thr, mid, name, cfg))
        log.info("%s: threshold %.4g, %s", name, thr, out[-1].counts)
    return out


def run_anomaly_free(
    normal: Sequence[Series],
    labelled: Sequence[Series],
    names: Sequence[str],
    cfg: BenchmarkConfig,
    workdir: Path,
) -> list[FileResult]:
    """One model trained on the unlabelled (normal) series, applied to every labelled file."""
    model = workdir / "anomaly-free.onnx"
    thr, mid = _fit([s.values for s in normal], normal[0].channels, model, cfg)
    return [_score(model, s, thr, mid, name, cfg) for s, name in zip(labelled, names, strict=True)]


def run_benchmark(
    root: Path,
    cfg: BenchmarkConfig | None = None,
    protocols: Sequence[str] = PROTOCOLS,
    limit: int | None = None,
    workdir: Path | None = None,
) -> tuple[dict[str, Any], dict[str, list[FileResult]]]:
    """Run the protocols on every labelled CSV under ``root``: ``(report, results per protocol)``.

    ``limit``: use only the first ``limit`` labelled files (natural order). The report is
    ``{"total", "files"}`` of the per-file protocol at the top level (SKAB's numbers), the
    anomaly-free protocol under ``"anomaly_free"``, plus ``"config"``, ``"data"`` and ``"seconds"``.
    """
    cfg = cfg or BenchmarkConfig()
    cfg.validate()
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise ValueError(f"unknown protocol(s) {', '.join(unknown)}; known: {', '.join(PROTOCOLS)}")
    root = Path(root)
    labelled_paths, unlabelled_paths = find_csvs(root, cfg.label_column)
    if limit is not None:
        labelled_paths = labelled_paths[:limit]
    if not labelled_paths:
        raise DataError(f"{root}: no CSV with a {cfg.label_column!r} column found (searched recursively)")
    labelled = [load(p, cfg) for p in labelled_paths]
    names = [_display_name(p, root) for p in labelled_paths]
    for s in labelled:
        if len(s.values) <= cfg.train_rows + cfg.window:
            raise DataError(
                f"{s.name}: {len(s.values)} rows; the protocol needs more than train rows + window "
                f"({cfg.train_rows} + {cfg.window})"
            )
    t0 = time.perf_counter()
    results: dict[str, list[FileResult]] = {}
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="edgewatch-bench-") as tmp:
        work = Path(workdir) if workdir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if "per-file" in protocols:
            results["per-file"] = run_per_file(labelled, names, cfg, work)
            report.update(summarise(results["per-file"]))
        if "anomaly-free" in protocols:
            if unlabelled_paths:
                normal = [load(p, cfg) for p in unlabelled_paths]
                results["anomaly-free"] = run_anomaly_free(normal, labelled, names, cfg, work)
                report["anomaly_free"] = {
                    **summarise(results["anomaly-free"]),
                    "trained_on": [_display_name(p, root) for p in unlabelled_paths],
                }
            else:
                report["anomaly_free"] = {"skipped": f"no unlabelled CSV under {root}"}
    report["config"] = asdict(cfg)
    report["data"] = {"root": str(root), "labelled_files": len(labelled), "scored_from_row": cfg.train_rows}
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return report, results


def plot_file(result: FileResult, path: Path, title: str = "") -> None:
    """PNG of one file: window scores (at each window's last row), threshold, labels and decisions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t_end = np.arange(result.scores.shape[0]) + result.window - 1
    fig, ax = plt.subplots(figsize=(10, 3.6))
    lab = result.labels != 0
    ymax = max(float(np.max(result.scores)), result.threshold) * 1.1
    ax.fill_between(
        np.arange(lab.shape[0]), 0, ymax, where=lab, color="tab:red", alpha=0.15, label="labelled anomaly"
    )
    ax.fill_between(
        np.arange(lab.shape[0]),
        0,
        ymax * 0.04,
        where=result.flags,
        color="tab:orange",
        step="mid",
        label="flagged point",
    )
    ax.plot(t_end, result.scores, lw=1, color="tab:blue", label="window score (at window end)")
    ax.axhline(result.threshold, color="k", ls="--", lw=1, label=f"threshold {result.threshold:.3g}")
    ax.axvline(result.first_scored, color="grey", ls=":", lw=1, label="end of training rows")
    ax.set_yscale("symlog", linthresh=max(result.threshold, 1e-6))
    ax.set_xlabel("row")
    ax.set_ylabel("score (MSE, normalised)")
    ax.set_title(title or result.name)
    ax.legend(loc="upper left", fontsize=7, ncol=3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- selection (pure)

#: Count-table layout used by the selection helpers: the last axis is (TP, FP, FN, TN).
COUNT_FIELDS = ("tp", "fp", "fn", "tn")


def rates_of(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(f1, far, mar)`` of count arrays (..., 4) ordered TP, FP, FN, TN; each of shape (...)."""
    c = np.asarray(counts, dtype=np.float64)
    tp, fp, fn, tn = c[..., 0], c[..., 1], c[..., 2], c[..., 3]
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / (tp + (fp + fn) / 2), fp / (fp + tn), fn / (fn + tp)


def selection_objective(counts: np.ndarray, far_budget: float = 0.08, penalty: float = 2.0) -> np.ndarray:
    """``F1 - penalty * max(0, FAR - far_budget)`` of pooled count arrays (..., 4); shape (...)."""
    f1, far, _ = rates_of(counts)
    return f1 - penalty * np.maximum(0.0, far - far_budget)


def choose_config(
    counts: np.ndarray, files: np.ndarray, far_budget: float = 0.08, penalty: float = 2.0
) -> int:
    """Index of the configuration with the best objective on ``files``.

    ``counts`` (J, F, 4): per configuration and file (already pooled over seeds if wanted);
    ``files``: indices into F. Counts are summed over ``files`` before the objective (pooled, not
    averaged). Ties go to the lowest index, so the order of the grid decides them.
    """
    pooled = np.asarray(counts)[:, np.asarray(files)].sum(axis=1)
    return int(np.argmax(selection_objective(pooled, far_budget, penalty)))


@dataclass
class SelectionResult:
    """Outcome of :func:`repeated_two_fold`.

    ``oof`` (R, S, 4): out-of-fold counts per split and seed (both halves pooled);
    ``choices`` (R, 2): the configuration chosen in each fold; ``halves``: the two file halves per split.
    """

    oof: np.ndarray
    choices: np.ndarray
    halves: list[tuple[np.ndarray, np.ndarray]]

    def rates(self) -> dict[str, dict[str, float]]:
        """Mean, std, 5 % and 95 % quantile of F1, FAR, MAR over all (split, seed) pairs."""
        out = {}
        for name, v in zip(("f1", "far", "mar"), rates_of(self.oof), strict=True):
            flat = v.ravel()
            out[name] = {
                "mean": float(np.mean(flat)),
                "std": float(np.std(flat)),
                "q05": float(np.quantile(flat, 0.05)),
                "q95": float(np.quantile(flat, 0.95)),
            }
        return out


def repeated_two_fold(
    counts: np.ndarray, n_splits: int = 50, seed: int = 0, far_budget: float = 0.08, penalty: float = 2.0
) -> SelectionResult:
    """Repeated two-fold leave-half-the-files-out selection on a count table.

    ``counts`` (S, J, F, 4): per training seed, configuration and file. For each of ``n_splits``
    random splits of the F files into halves A (F // 2 files) and B: choose on A with counts pooled
    over seeds (:func:`choose_config`), score B with that choice per seed; then swap. Labels of a file
    are used only when it is in the choosing half.
    """
    c = np.asarray(counts)
    if c.ndim != 4 or c.shape[-1] != 4:
        raise ValueError(f"counts must have shape (seeds, configs, files, 4), got {c.shape}")
    n_seeds, _, n_files, _ = c.shape
    if n_files < 2:
        raise ValueError("need at least 2 files to split")
    pooled = c.sum(axis=0)
    rng = np.random.default_rng(seed)
    oof = np.zeros((n_splits, n_seeds, 4), dtype=np.int64)
    choices = np.zeros((n_splits, 2), dtype=np.int64)
    halves = []
    for r in range(n_splits):
        perm = rng.permutation(n_files)
        a, b = np.sort(perm[: n_files // 2]), np.sort(perm[n_files // 2 :])
        halves.append((a, b))
        for k, (choose_on, score_on) in enumerate(((a, b), (b, a))):
            j = choose_config(pooled, choose_on, far_budget, penalty)
            choices[r, k] = j
            oof[r] += c[:, j, score_on].sum(axis=1)
    return SelectionResult(oof, choices, halves)
