"""fit = split -> sizes -> screen channels -> train -> per-channel references -> calibrate -> export.

On loaded :class:`Series`. The threshold is calibrated on hop-1 normal windows held out from
training (the last ``val_fraction`` of each file, or ``--calibrate`` recordings) to a false-alarm
budget (:data:`DEFAULT_BUDGET` per window) times a margin (:data:`DEFAULT_MARGIN`).

Used by the CLI (``edgewatch-train fit``) and the Python API (:mod:`trainer.api`).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge_runtime.contract import (
    CROSS_CHANNEL_FORMAT_VERSION,
    FORMAT_VERSION,
    ModelMetadata,
    Normalisation,
    Threshold,
)
from edge_runtime.pipeline.health import frozen_in_training, learn_limits
from edge_runtime.pipeline.hysteresis import RAISE, AlertPolicy, hysteresis
from edge_runtime.pipeline.windowing_offline import sliding_windows
from trainer.covariance import LEVEL_SHRINKAGE, level_precision, mahalanobis
from trainer.cross_channel import CrossChannel, CrossPlan, plan_cross_channel, residual_terms
from trainer.data import (
    DataError,
    Series,
    check_lengths,
    count_normal_windows,
    fit_normalisation,
    normal_mask,
    normal_windows,
    normalise,
    split_series,
    usage_error,
)
from trainer.export import ExportReport, ScoreStats, ScoringGraph, export_model
from trainer.memory import return_large_buffers
from trainer.model import AEConfig, ConvAutoencoder
from trainer.progress import counted, stage
from trainer.screening import DRIFT_LIMIT, ChannelScreen, note_high_error, screen_channels, weights
from trainer.sizes import (
    MIN_TRAIN_WINDOWS,
    MIN_VAL_WINDOWS,
    Sizes,
    choose_sizes,
    count_windows,
    missing_data,
    more_data_advice,
)
from trainer.threshold import calibrate, check_calibration, expected_exceedance
from trainer.train import TrainConfig, TrainResult, evaluate_loss, fit

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1


class _DropQuantisationHint(logging.Filter):
    """Drops onnxruntime's "Please consider to run pre-processing before quantization" (root logger)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "consider to run pre-processing" not in record.getMessage()


@contextlib.contextmanager
def quiet_quantisation_hints() -> Iterator[None]:
    """While quantising: silence onnxruntime's pre-processing hint, which it logs on the root logger
    (``WARNING root: ...``) for every model; the hint does not apply to these small conv graphs."""
    hint = _DropQuantisationHint()
    root = logging.getLogger()
    root.addFilter(hint)
    try:
        yield
    finally:
        root.removeFilter(hint)


DEFAULT_MARGIN = 3.75  # lognormal threshold margin; chosen by leave-one-fault-kind-out on SKAB (docs/EVALUATION.md)
DEFAULT_POWER = 3.0  # the score's power mean over channels (trainer.export.ScoreStats); chosen the same way
RESIDUAL_REF_FLOOR = 1e-4  # normalised units squared: a channel the factors explain exactly
DEFAULT_BUDGET = 1e-3  # false-alarm budget: windows above the threshold per normal hop-1 window (1 per 1,000)
MAX_CALIBRATION_WINDOWS = 200_000


@dataclass
class FitOptions:
    """Everything ``fit`` needs besides the data. ``None`` sizes are chosen from the data (:mod:`trainer.sizes`).

    ``hop``: the training and edge hop when given. ``false_alarm_budget``: the fraction of normal hop-1
    windows the threshold lets through before ``threshold_scale`` (the margin; default
    :data:`DEFAULT_MARGIN` for ``lognormal``, 1 otherwise). ``calibrate``: separate normal recordings
    the threshold is calibrated on instead of the validation part. ``force``: fit even with too little data.
    """

    window: int | None = None
    hop: int | None = None
    depth: int | None = None
    width: int | None = None
    kernel: int = 5
    latent: int | None = None
    val_fraction: float = 0.2
    split: str = "time"
    threshold_method: str = "lognormal"
    threshold_params: dict[str, float] = field(default_factory=dict)
    threshold_scale: float | None = None
    false_alarm_budget: float = DEFAULT_BUDGET
    drift_limit: float = DRIFT_LIMIT
    score_power: float = DEFAULT_POWER
    level_shrinkage: float = LEVEL_SHRINKAGE
    calibrate: list[Series] = field(default_factory=list)
    force: bool = False
    fill: str | None = None
    preprocessing: dict[str, Any] = field(default_factory=dict)  # how the files were read (trainer.data.ReadOptions)
    train: TrainConfig = field(default_factory=TrainConfig)
    quantize: str | None = None
    fp16: bool = False
    checkpoint: Path | None = None
    states: Any = None  # trainer.operating.StateSpec: train on running rows only and learn the states
    units: dict[str, str] = field(default_factory=dict)  # channel -> unit (fit --units), stored in the model

    @property
    def effective_hop(self) -> int:
        """The hop given, else W/4 (for a given window)."""
        return self.hop if self.hop is not None else max(1, (self.window or 64) // 4)


@dataclass
class FitResult:
    """The exported model's metadata, training result, export report and what ``fit`` chose."""

    meta: ModelMetadata
    training: TrainResult
    export: ExportReport
    screen: list[ChannelScreen] = field(default_factory=list)
    cross: CrossPlan | None = None
    sizes: Sizes | None = None
    false_alarms: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "model": str(self.export.path),
            "model_id": self.meta.model_id,
            "threshold": {"value": self.meta.threshold.value, "method": self.meta.threshold.method},
            "training": self.training.summary(),
            "false_alarms": self.false_alarms,
            "parity_max_diff": self.export.parity_max_diff,
            "size_bytes": self.export.size_bytes,
            "variants": self.export.variants,
        }


def normal_segments(series: Sequence[Series]) -> list[np.ndarray]:
    """Each series' runs of consecutive normal (label 0 or unlabelled) rows, (n_i, C) each: the sensor-health
    limits are learned on them (a flat run never joined across an anomaly or a file boundary)."""
    out: list[np.ndarray] = []
    for s in series:
        if s.labels is None:
            out.append(s.values)
            continue
        normal = np.concatenate(([False], s.labels == 0, [False]))
        edges = np.flatnonzero(np.diff(normal.astype(np.int8)))
        out += [s.values[a:b] for a, b in zip(edges[::2], edges[1::2], strict=True)]
    return [v for v in out if len(v)]


def iter_normal_windows(series: Sequence[Series], window: int, hop: int = 1, chunk: int = 4096) -> Iterator[np.ndarray]:
    """Windows (n, W, C) of each series in chunks of at most ``chunk``; labelled windows and windows across a time
    gap dropped (bounded memory)."""
    for s in series:
        n = s.values.shape[0] - window + 1
        for lo in range(0, max(n, 0), chunk * hop):
            hi = min(n, lo + chunk * hop)
            w = sliding_windows(s.values[lo : hi + window - 1], window, hop)
            keep = normal_mask(s, window, hop, lo, hi + window - 1)
            if keep is not None:
                w = w[keep]
            if len(w):
                yield w


@torch.no_grad()
def window_terms(ae: ConvAutoencoder, windows: np.ndarray, mean: np.ndarray, std: np.ndarray,
                 projection: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Per-channel ``(mse, mean_W(z), resid)`` (N, C) of raw windows (N, W, C): the score's raw terms; ``resid``
    (the cross-channel term's, :func:`trainer.cross_channel.residual_terms`) only with a ``projection``."""
    graph = ScoringGraph(ae.eval(), ScoreStats.identity(mean, std)).eval()
    z = (torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)).transpose(1, 2) - graph.mean_c) * graph.inv_std_c
    d = ae(z) - z
    resid = None if projection is None else residual_terms(z.transpose(1, 2).numpy(), projection)
    return torch.mean(d * d, dim=2).numpy(), torch.mean(z, dim=2).numpy(), resid


@dataclass
class Terms:
    """The raw terms of held-out windows (N, C) each (``resid`` None without the cross-channel term)."""

    mse: np.ndarray
    level: np.ndarray
    resid: np.ndarray | None
    sizes: list[int]


def terms_of(ae: ConvAutoencoder, chunks: Iterator[np.ndarray], mean: np.ndarray, std: np.ndarray,
             limit: int = MAX_CALIBRATION_WINDOWS, projection: np.ndarray | None = None) -> Terms:
    """:func:`window_terms` over chunks of windows, at most ``limit`` windows, with each chunk's size."""
    mse, level, resid, sizes, n = [], [], [], [], 0
    for w in chunks:
        m, lv, r = window_terms(ae, w[: limit - n], mean, std, projection)
        mse.append(m)
        level.append(lv)
        if r is not None:
            resid.append(r)
        sizes.append(len(m))
        n += len(m)
        if n >= limit:
            break
    c = len(mean)
    if not mse:
        return Terms(np.zeros((0, c)), np.zeros((0, c)), None if projection is None else np.zeros((0, c)), [])
    return Terms(np.concatenate(mse), np.concatenate(level), np.concatenate(resid) if resid else None, sizes)


def channel_error_ref(stats: ScoreStats, t: Terms) -> np.ndarray:
    """The graph's ``channel_error`` averaged over windows (C,), from their raw terms."""
    if not len(t.mse):
        return np.zeros(t.mse.shape[1])
    return np.asarray(stats.channel_scores(t.mse, t.level, t.resid)[0].mean(axis=0))


def scores_of(stats: ScoreStats, t: Terms) -> np.ndarray:
    """The graph's ``score`` (N,) from its raw terms (numpy; the same function as the graph)."""
    return stats.channel_scores(t.mse, t.level, t.resid)[1]


def _left_out(opts: FitOptions, parts: Sequence[Series], counts: tuple[int, int, int, int], stopped: str) -> str:
    """What was left out before ``counts`` (normal and all training windows, normal and all validation windows)
    were counted, one clause for :func:`trainer.sizes.missing_data`: the windows that touch a labelled row of
    ``parts``, and the ``stopped`` rows (a clause of their own: the parts no longer hold them)."""
    tr, tr_all, va, va_all = counts
    why = []
    if tr < tr_all or va < va_all:
        labelled = sum(int(np.count_nonzero(s.labels)) for s in parts if s.labels is not None)
        column = opts.preprocessing.get("label_column") or "anomaly"
        why.append(f"the {tr_all - tr:,} of {tr_all:,} training and {va_all - va:,} of {va_all:,} validation windows "
                   f"that touch one of the {labelled:,} row{'' if labelled == 1 else 's'} labelled anomalous "
                   f"(column {column!r} not 0)")
    if stopped:
        why.append(f"the {stopped}")
    return f"after leaving out {' and '.join(why)}" if why else ""


def _fit_sizes(series: list[Series], opts: FitOptions, train_s: list[Series], val_s: list[Series],
               size_rows: tuple[list[int], list[int]] | None = None, stopped: str = "") -> Sizes:
    """Sizes from the parts' rows (``size_rows``: the rows to size by instead, e.g. running rows per part).

    The minimum is checked on the windows trained and calibrated on: the training part's normal windows at the
    training hop, the validation part's normal hop-1 windows (and the ``--calibrate`` recordings' ones), where
    normal means touching no labelled row; ``stopped`` says which rows the parts no longer hold (a clause)."""
    tr, va = size_rows or ([len(s.values) for s in train_s], [len(s.values) for s in val_s])
    sizes = choose_sizes(tr, va, len(series[0].channels), opts.window, opts.hop, opts.depth, opts.width, opts.latent)
    w = sizes.window
    if w < 2:
        raise usage_error(f"--window must be >= 2, got {w}")
    if not 1 <= sizes.edge_hop <= w:
        raise usage_error(f"--hop must be in 1..window ({w}), got {sizes.edge_hop}")
    short = next((s for s in series if len(s.values) < w), None)
    if short is not None:  # exit 2, as too little data: the remedy is in the call
        n = len(short.values)
        raise usage_error(f"{short.name}: {n:,} rows, fewer than one window of {w:,}: "
                          + (f"give a --window under {n:,} (or leave it out: fit chooses one from the data)"
                             if opts.window else "give more rows"))
    n_train, all_train = count_normal_windows(train_s, w, sizes.train_hop)
    n_val, all_val = count_normal_windows(val_s, w)
    n_cal = count_normal_windows(opts.calibrate, w)[0] if opts.calibrate else None
    left_out = _left_out(opts, [*train_s, *val_s], (n_train, all_train, n_val, all_val), stopped)
    problem = missing_data(n_train, n_val, w, sizes.train_hop, n_cal, left_out)
    if problem and not opts.force:  # exit 2: the remedy is in the call (more rows, --val-fraction, --force)
        short_parts = (n_train < MIN_TRAIN_WINDOWS, n_val < MIN_VAL_WINDOWS)
        rows = sum(len(s.values) for s in (*train_s, *val_s))
        raise usage_error(f"{problem}; {more_data_advice(w, opts.val_fraction, *short_parts, sizes.train_hop, bool(left_out), rows)}")
    if problem:
        log.warning("--force: %s", problem)
        sizes.notes.append(f"forced: {problem}")
    return sizes


def run_fit(series: list[Series], out: Path, opts: FitOptions, progress: bool = False) -> FitResult:
    """Screen channels, train on ``series`` (same channels), calibrate on held-out normal windows, export to ``out``."""
    return_large_buffers()
    if not series:
        raise DataError("no data")
    if not (math.isfinite(opts.score_power) and 0.5 <= opts.score_power <= 16):
        raise DataError(f"score_power must be in 0.5..16, got {opts.score_power}")
    if not 0.0 <= opts.level_shrinkage <= 1.0:
        raise DataError(f"level_shrinkage must be in 0..1, got {opts.level_shrinkage}")
    if opts.threshold_scale is not None and not (math.isfinite(opts.threshold_scale) and opts.threshold_scale > 0):
        raise usage_error(f"--margin must be > 0, got {opts.threshold_scale}")  # before training, not after it
    channels = series[0].channels
    train_s, val_s = split_series(series, opts.val_fraction, opts.split)
    states, run = None, None
    if opts.states is not None:  # train and calibrate on the settled running rows only
        from trainer.operating import running_data

        part_rows = ([len(s.values) for s in train_s], [len(s.values) for s in val_s])
        run = running_data(opts.states, series, train_s, val_s)
        states, train_s, val_s = run.model, run.train, run.val
        kept_rows = sum(len(t.values) for t in (*train_s, *val_s))
        all_rows = sum(part_rows[0]) + sum(part_rows[1])
        sizes = _fit_sizes(series, opts, train_s, val_s, (
            [sum(len(t.values) for t in train_s) // max(1, len(part_rows[0]))] * len(part_rows[0]),
            [sum(len(t.values) for t in val_s) // max(1, len(part_rows[1]))] * len(part_rows[1])),
            stopped=f"{all_rows - kept_rows:,} of {all_rows:,} rows stopped or settling (running: {opts.states.source()})"
            if kept_rows < all_rows else "")
        w = sizes.window
        train_s = [t for t in train_s if len(t.values) >= w]
        val_s = [t for t in val_s if len(t.values) >= w]
        if not train_s or not val_s:
            raise DataError(f"no running stretch of {w}+ rows in the {'training' if not train_s else 'validation'} "
                            "part: give more data or a smaller --window")
    else:
        sizes = _fit_sizes(series, opts, train_s, val_s)
    w = sizes.window
    stage(f"preparing: windows of {w} (training hop {sizes.train_hop}), channel screening, normalisation", progress)
    train_raw = normal_windows(train_s, w, sizes.train_hop)
    cut = count_windows([len(s.values) for s in train_s], w, sizes.train_hop)
    if len(train_raw) < cut:  # the windows that hold a labelled row are no normal data
        sizes.notes.append(f"{cut - len(train_raw):,} of the {cut:,} training windows hold labelled anomalies and are "
                           f"left out: {len(train_raw):,} trained on")
    val_normal, val_all = count_normal_windows(val_s, w)
    if val_normal < val_all:  # nor for the threshold
        sizes.notes.append(f"{val_all - val_normal:,} of the {val_all:,} hop-1 validation windows hold labelled "
                           f"anomalies and are left out: {val_normal:,} kept")
    if len(train_raw) < 2 and cut >= 2:
        raise usage_error(f"only {len(train_raw)} normal training window(s) of {w:,}: the other {cut - len(train_raw):,} "
                          "hold labelled anomalies: fit on normal rows (--rows, or files without anomalies)")
    if len(train_raw) < 2:
        raise usage_error(f"only {len(train_raw)} training windows of {w:,} (even with --force): more rows, a shorter "
                          "--window, or fewer labelled rows in the training part")
    if opts.threshold_method != "lognormal":
        warning = check_calibration(
            sum(max(0, len(s.values) - w + 1) for s in (opts.calibrate or val_s)),
            opts.threshold_method, opts.threshold_params)
        if warning:
            log.warning("%s", warning)
    if run is not None:  # running rows of each file, paired (the screening measures drift per file)
        train_arrays, val_arrays = run.screening_arrays()
    else:
        train_arrays = [s.values if s.labels is None else s.values[s.labels == 0] for s in train_s if len(s.values)]
        val_arrays = [s.values if s.labels is None else s.values[s.labels == 0] for s in val_s]
    screen = screen_channels(train_arrays, val_arrays, channels, opts.drift_limit)
    try:
        weight = weights(screen)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    mean, std = fit_normalisation(train_arrays, channels)
    cfg = AEConfig(n_channels=len(channels), window=w, depth=sizes.depth, width=sizes.width,
                   kernel=opts.kernel, latent=sizes.latent)
    cfg.validate()
    train_n = normalise(train_raw, mean, std)
    # Early stopping watches at most max_windows_per_epoch validation windows, spread over every file.
    n_val = count_windows([len(s.values) for s in val_s], w)
    val_sample = normal_windows(val_s, w, max(1, math.ceil(n_val / opts.train.max_windows_per_epoch)))
    if not len(val_sample) and n_val:  # windows there, each touching a labelled row
        raise usage_error(f"no normal validation window of {w:,}: each of the {n_val:,} in the last "
                          f"{opts.val_fraction:.0%} of each file holds labelled anomalies (rows labelled 1): fit on "
                          "normal rows (--rows ending before the anomaly, or a larger --val-fraction)")
    if not len(val_sample):
        raise usage_error(f"no validation windows of {w:,}: the last {opts.val_fraction:.0%} of each file is too "
                          "short (even with --force): a larger --val-fraction or a shorter --window")
    result = fit(cfg, train_n, normalise(val_sample, mean, std), opts.train, progress=progress)
    ae = result.model
    n_held = min(MAX_CALIBRATION_WINDOWS, count_windows([len(s.values) for s in val_s], w))
    kept = weight > 0  # the reconstruction and level terms' channels
    if opts.score_power != 1:
        plan = plan_cross_channel(kept, np.array([s.reason.startswith("constant") for s in screen]),
                                  train_arrays, val_arrays, mean, std, opts.drift_limit)
    else:
        plan = CrossPlan.off(CrossChannel(False, 0, int(kept.sum()), 1.0, note="a score power of 1 (format 3's plain mean)"),
                             kept)
    projection = plan.model.projection if plan.on else None
    for i in np.flatnonzero(plan.cross_only):
        screen[i].reason += "; scored by the cross-channel term alone (its residual is steady)"
    for i in np.flatnonzero(plan.left_out if plan.on else []):
        screen[i].reason += "; its residual drifts: not in the cross-channel term"
    stage(f"scoring {n_held:,} held-out hop-1 windows: per-channel references and the threshold", progress)
    # Per-channel references on held-out normal windows at hop 1: each channel scored against its own normal.
    held = terms_of(ae, counted(iter_normal_windows(val_s, w, 1), n_held, "scored", progress), mean, std,
                    projection=projection)
    mse_v, lvl_v, val_sizes = held.mse, held.level, held.sizes
    ae_ref = np.maximum(mse_v.mean(axis=0), 1e-2)
    note_high_error(screen, ae_ref)
    precision = level_precision(train_n.mean(axis=1), kept, opts.level_shrinkage)  # (C, C): training windows' levels
    level_t2_ref = max(float(mahalanobis(lvl_v, precision).mean()) / int(kept.sum()), 1.0)
    residual_coef = None
    if projection is not None and held.resid is not None:  # each channel's residual relative to its own normal
        residual_coef = np.where(plan.residual, 1.0 / np.maximum(held.resid.mean(axis=0), RESIDUAL_REF_FLOOR), 0.0)
    stats = ScoreStats(mean=mean, std=std, ae_ref=ae_ref, level_scale=None, level_ref=None, weight=plan.weight,
                       level_precision=precision, level_t2_ref=level_t2_ref, power=opts.score_power,
                       residual_proj=projection if residual_coef is not None else None,
                       residual_coef=residual_coef,
                       cross_only=plan.cross_only.astype(np.float64) if residual_coef is not None else None)
    val_scores = scores_of(stats, held)
    if opts.calibrate:
        check_lengths(opts.calibrate, w)
        cal = terms_of(ae, iter_normal_windows(opts.calibrate, w, 1), mean, std, projection=stats.residual_proj)
        cal_scores, cal_sizes, cal_from = scores_of(stats, cal), cal.sizes, f"{len(opts.calibrate)} --calibrate file(s)"
    else:
        cal_scores, cal_sizes, cal_from = val_scores, val_sizes, "the validation part"
    scale = opts.threshold_scale if opts.threshold_scale is not None else (
        DEFAULT_MARGIN if opts.threshold_method == "lognormal" else 1.0)
    params = dict(opts.threshold_params)
    if opts.threshold_method == "lognormal":
        params.setdefault("budget", opts.false_alarm_budget)
    threshold = calibrate(cal_scores, opts.threshold_method, scale, **params)
    false_alarms = false_alarm_report(threshold, cal_scores, cal_sizes, val_scores, val_sizes, cal_from,
                                      params.get("budget"))
    periods = [s.sample_period_s for s in series if s.sample_period_s]
    meta = ModelMetadata(
        channels=list(channels),
        window=w,
        hop=sizes.edge_hop,
        threshold=threshold,
        normalisation=Normalisation(mean=[float(v) for v in mean], std=[float(v) for v in std]),
        sample_period_s=float(np.median(periods)) if periods else None,
        architecture={"type": "conv1d_autoencoder", **cfg.to_dict(), "parameters": result.n_params},
        scoring={
            "method": "relative: 0.5 * mean_kept(mse / ae_ref) + 0.5 * l^T P l / (n_kept * level_t2_ref), "
                      "l = mean_W(z); channel_error = each channel's share" if opts.score_power == 1 else
                      "power mean: e_c = max(0, mse_c / (2 ae_ref_c) + l_c (P l)_c / (2 level_t2_ref)"
                      + (" + residual_coef_c mean_W((M z)_c^2)" if residual_coef is not None else "")
                      + "), l = mean_W(z); channel_error_c = weight_c e_c^p; score = mean_C(channel_error)^(1/p)",
            "power": opts.score_power,
            "weight": [float(v) for v in plan.weight],
            "ae_ref": [float(v) for v in ae_ref],
            # each channel's mean channel_error on the held-out normal windows: the edge's "normal" of a channel
            # (an alert ranks channels by their excess over it: edge_runtime/pipeline/explain.py)
            "channel_error_ref": [float(v) for v in channel_error_ref(stats, held)],
            "level_precision": [[float(v) for v in row] for row in precision],
            "level_t2_ref": level_t2_ref,
            "level_shrinkage": opts.level_shrinkage,
            "drift_limit": opts.drift_limit,
            "screening": [s.to_dict() for s in screen],
            "cross_channel": plan.to_dict(channels),
            **({} if stats.residual_coef is None or stats.residual_proj is None or stats.cross_only is None else {
                "residual_projection": [[float(v) for v in row] for row in stats.residual_proj],
                "residual_coef": [float(v) for v in stats.residual_coef],
                "cross_only": [float(v) for v in stats.cross_only]}),
        },
        preprocessing={
            **opts.preprocessing,
            "fill": opts.fill,
            "normalisation": "mean/std of the training part's normal rows; std 1 for a constant channel",
            "split": opts.split,
            "val_fraction": opts.val_fraction,
        },
        training={
            "files": [s.name for s in series],
            "rows": int(sum(len(s.values) for s in series)),
            "train_windows": int(len(train_raw)),
            "train_hop": sizes.train_hop,
            "val_windows": int(len(mse_v)),
            "split": opts.split,
            "val_fraction": opts.val_fraction,
            "sizes": sizes.notes,
            "false_alarms": false_alarms,
            "channel_min": [float(v) for v in np.min([s.values.min(axis=0) for s in series], axis=0)],
            "channel_max": [float(v) for v in np.max([s.values.max(axis=0) for s in series], axis=0)],
            "config": {k: v for k, v in asdict(opts.train).items() if k != "device"},
            **result.summary(),
        },
        states=None if states is None else states.to_dict(),
        units=dict(opts.units),
        format_version=FORMAT_VERSION if stats.residual_coef is None else CROSS_CHANNEL_FORMAT_VERSION,
    )
    # with operating states: the settled running stretches (a stopped channel's off level and long flat runs
    # are no sensor's normal; the edge checks health on running samples only)
    segments = normal_segments([*train_s, *val_s] if states is not None else series)
    meta.health = learn_limits(segments, meta.sample_period_s, channels) if segments else {}
    for warning in frozen_in_training(meta.health, meta.sample_period_s):
        log.warning("%s", warning)
    holdout = val_sample[:512]
    if opts.checkpoint is not None:
        save_checkpoint(opts.checkpoint, ae, meta, holdout)
    stage(f"exporting {out} and checking it against torch with onnxruntime", progress)
    with quiet_quantisation_hints():
        report = export_model(ae, meta, out, holdout, quantize=opts.quantize, fp16=opts.fp16)
    return FitResult(meta=report.meta, training=result, export=report, screen=screen, sizes=sizes, cross=plan,
                     false_alarms=false_alarms)


def false_alarm_report(threshold: Threshold, cal_scores: np.ndarray, cal_sizes: list[int], val_scores: np.ndarray,
                       val_sizes: list[int], cal_from: str, budget: float | None) -> dict[str, Any]:
    """Expected vs measured false alarms per 1,000 hop-1 windows, and alerts under the daemon's hysteresis."""
    def alerts(scores: np.ndarray, sizes: list[int]) -> int:
        n, i = 0, 0
        for k in sizes:  # each chunk is part of one file: close enough for a count of raises
            n += sum(1 for _, e in hysteresis(scores[i : i + k], threshold.value, AlertPolicy())[1] if e == RAISE)
            i += k
        return n

    expected = expected_exceedance(threshold)
    return {
        "calibrated_on": cal_from,
        "budget_per_1000": None if budget is None else 1000 * budget,
        "expected_per_1000": None if expected is None else 1000 * expected,
        "calibration_per_1000": 1000 * float(np.mean(cal_scores > threshold.value)) if len(cal_scores) else None,
        "validation_per_1000": 1000 * float(np.mean(val_scores > threshold.value)) if len(val_scores) else None,
        "validation_windows": int(len(val_scores)),
        "validation_alerts": alerts(val_scores, val_sizes),
    }


def save_checkpoint(path: Path, model: ConvAutoencoder, meta: ModelMetadata, holdout: np.ndarray) -> None:
    """Keep what re-export needs: config, weights, metadata, up to 512 held-out raw windows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "version": CHECKPOINT_VERSION,
            "config": model.cfg.to_dict(),
            "state_dict": model.state_dict(),
            "metadata": meta.to_json(),
            "holdout": torch.from_numpy(np.ascontiguousarray(holdout[:512])),
        },
        path,
    )


def load_checkpoint(path: Path) -> tuple[ConvAutoencoder, ModelMetadata, np.ndarray]:
    """Rebuild ``(model, metadata, holdout windows)`` from :func:`save_checkpoint`'s file."""
    try:
        ck = torch.load(Path(path), map_location="cpu", weights_only=True)
        if ck.get("version") != CHECKPOINT_VERSION:
            raise DataError(f"{path}: unsupported checkpoint version {ck.get('version')!r}")
        model = ConvAutoencoder(AEConfig(**ck["config"]))
        model.load_state_dict(ck["state_dict"])
        meta = ModelMetadata.from_json(ck["metadata"])
        holdout = ck["holdout"].numpy()
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch.load raises many types for a file that is not ours
        # The type only: torch's messages (weights_only's above all) run to a dozen lines.
        raise DataError(f"{path}: not a readable edgewatch checkpoint ({type(exc).__name__})") from None
    return model.eval(), meta, holdout


__all__ = [
    "FitOptions",
    "FitResult",
    "evaluate_loss",
    "load_checkpoint",
    "quiet_quantisation_hints",
    "run_fit",
    "save_checkpoint",
]
