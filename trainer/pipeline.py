"""fit = split -> windows -> normalise -> train -> calibrate -> export, on loaded :class:`Series`.

Used by the CLI (``edgewatch-train fit``) and the Python API (:mod:`trainer.api`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge_runtime.contract import ModelMetadata, Normalisation
from trainer.data import (
    DataError,
    Series,
    check_lengths,
    fit_normalisation,
    normal_windows,
    normalise,
    split_series,
)
from trainer.export import ExportReport, export_model
from trainer.model import AEConfig, ConvAutoencoder
from trainer.threshold import calibrate, check_calibration
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


@dataclass
class FitOptions:
    """Everything ``fit`` needs besides the data. ``hop`` None means ``window // 4``."""

    window: int = 64
    hop: int | None = None
    depth: int = 2
    width: int = 16
    kernel: int = 5
    latent: int = 16
    val_fraction: float = 0.2
    split: str = "time"
    threshold_method: str = "quantile"
    threshold_params: dict[str, float] = field(default_factory=dict)
    threshold_scale: float = 1.0
    train: TrainConfig = field(default_factory=TrainConfig)
    quantize: str | None = None
    fp16: bool = False
    checkpoint: Path | None = None

    @property
    def effective_hop(self) -> int:
        return self.hop if self.hop is not None else max(1, self.window // 4)


@dataclass
class FitResult:
    """The exported model's metadata, training result and export report."""

    meta: ModelMetadata
    training: TrainResult
    export: ExportReport

    def summary(self) -> dict[str, Any]:
        return {
            "model": str(self.export.path),
            "model_id": self.meta.model_id,
            "threshold": {"value": self.meta.threshold.value, "method": self.meta.threshold.method},
            "training": self.training.summary(),
            "parity_max_diff": self.export.parity_max_diff,
            "size_bytes": self.export.size_bytes,
            "variants": self.export.variants,
        }


@torch.no_grad()
def window_scores(model: ConvAutoencoder, windows: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Scores (N,) of normalised windows (N, W, C) through the torch model (calibration only)."""
    out = []
    model.eval()
    for i in range(0, len(windows), batch):
        z = torch.from_numpy(windows[i : i + batch]).transpose(1, 2)
        out.append(torch.mean((model(z) - z) ** 2, dim=(1, 2)).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def run_fit(series: list[Series], out: Path, opts: FitOptions, progress: bool = False) -> FitResult:
    """Train on ``series`` (all with the same channels), calibrate on validation, export to ``out``."""
    if not series:
        raise DataError("no data")
    w, hop = opts.window, opts.effective_hop
    if w < 2:
        raise DataError(f"--window must be >= 2, got {w}")
    if not 1 <= hop <= w:
        raise DataError(f"--hop must be in 1..window ({w}), got {hop}")
    check_lengths(series, w)
    channels = series[0].channels
    train_s, val_s = split_series(series, opts.val_fraction, opts.split)
    train_raw = normal_windows(train_s, w, hop)
    val_raw = normal_windows(val_s, w, hop)
    if len(train_raw) < 2:
        raise DataError(
            f"only {len(train_raw)} training windows of {w} with hop {hop}: need more data or a smaller window"
        )
    if len(val_raw) < 2:
        raise DataError(
            f"only {len(val_raw)} validation windows of {w}: the last {opts.val_fraction:.0%} of each file is too "
            "short; use more data, a larger --val-fraction or a smaller --window"
        )
    # Before training: a calibration these few validation windows cannot support fails (or warns) now.
    warning = check_calibration(len(val_raw), opts.threshold_method, opts.threshold_params)
    if warning:
        log.warning("%s", warning)
    train_arrays = [
        s.values if s.labels is None else s.values[s.labels == 0] for s in train_s if len(s.values)
    ]
    mean, std = fit_normalisation(train_arrays)
    cfg = AEConfig(
        n_channels=len(channels),
        window=w,
        depth=opts.depth,
        width=opts.width,
        kernel=opts.kernel,
        latent=opts.latent,
    )
    cfg.validate()
    train_n, val_n = normalise(train_raw, mean, std), normalise(val_raw, mean, std)
    result = fit(cfg, train_n, val_n, opts.train, progress=progress)
    val_scores = window_scores(result.model, val_n)
    threshold = calibrate(val_scores, opts.threshold_method, opts.threshold_scale, **opts.threshold_params)
    periods = [s.sample_period_s for s in series if s.sample_period_s]
    meta = ModelMetadata(
        channels=list(channels),
        window=w,
        hop=hop,
        threshold=threshold,
        normalisation=Normalisation(mean=[float(v) for v in mean], std=[float(v) for v in std]),
        sample_period_s=float(np.median(periods)) if periods else None,
        architecture={"type": "conv1d_autoencoder", **cfg.to_dict(), "parameters": result.n_params},
        training={
            "files": [s.name for s in series],
            "rows": int(sum(len(s.values) for s in series)),
            "train_windows": int(len(train_raw)),
            "val_windows": int(len(val_raw)),
            "split": opts.split,
            "val_fraction": opts.val_fraction,
            "channel_min": [float(v) for v in np.min([s.values.min(axis=0) for s in series], axis=0)],
            "channel_max": [float(v) for v in np.max([s.values.max(axis=0) for s in series], axis=0)],
            "config": {k: v for k, v in asdict(opts.train).items() if k != "device"},
            **result.summary(),
        },
    )
    if opts.checkpoint is not None:
        save_checkpoint(opts.checkpoint, result.model, meta, val_raw)
    with quiet_quantisation_hints():
        report = export_model(result.model, meta, out, val_raw, quantize=opts.quantize, fp16=opts.fp16)
    return FitResult(meta=report.meta, training=result, export=report)


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
