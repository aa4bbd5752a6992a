"""Small Python API for other parts of edgewatch (benchmarks, demo, tests).

- :func:`train_and_export`: raw arrays -> trained, calibrated, checked ONNX model.
- :func:`score_windows`: score raw windows through onnxruntime (the edge path).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.contract import OUTPUT_CHANNEL_ERROR, OUTPUT_SCORE, ModelMetadata
from trainer.data import DataError, Series
from trainer.export import run_onnx
from trainer.pipeline import FitOptions, run_fit
from trainer.train import TrainConfig

_MODEL_KEYS = ("depth", "width", "kernel", "latent")
_TRAIN_KEYS = ("batch_size", "lr", "patience", "device", "mask", "threads", "min_delta", "max_windows_per_epoch")
_OTHER_KEYS = ("units", "split", "threshold_params", "threshold_scale", "quantize", "fp16", "checkpoint",
               "false_alarm_budget", "drift_limit", "score_power", "level_shrinkage", "force", "calibrate")


# what each option of train_and_export takes (benchmark's --fit-option KEY=VALUE is checked against it)
_INT, _NUM, _BOOL, _TEXT, _MAP = (int,), (int, float), (bool,), (str,), (dict,)
OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "window": _INT, "hop": _INT, "epochs": _INT, "threshold_method": _TEXT, "val_fraction": _NUM, "denoise": _NUM,
    "depth": _INT, "width": _INT, "kernel": _INT, "latent": _INT, "batch_size": _INT, "lr": _NUM, "patience": _INT,
    "device": _TEXT, "mask": _NUM, "threads": _INT, "min_delta": _NUM, "max_windows_per_epoch": _INT,
    "units": _MAP, "split": _TEXT, "threshold_params": _MAP, "threshold_scale": _NUM, "quantize": _TEXT,
    "fp16": _BOOL, "false_alarm_budget": _NUM, "drift_limit": _NUM, "score_power": _NUM, "level_shrinkage": _NUM,
    "force": _BOOL,
}


OPTION_CHOICES: dict[str, tuple[str, ...]] = {
    "threshold_method": ("lognormal", "quantile", "pot"), "split": ("time", "file"), "quantize": ("int8",),
    "device": ("auto", "cpu", "cuda"),
}


def check_option(key: str, value: Any) -> None:
    """A ValueError naming the options when ``key`` is not one of :data:`OPTION_TYPES`, or ``value`` not its type
    (or not one of its :data:`OPTION_CHOICES`)."""
    if key not in OPTION_TYPES:
        raise ValueError(f"unknown option {key!r}; the options: {', '.join(sorted(OPTION_TYPES))}")
    if key in OPTION_CHOICES and value not in OPTION_CHOICES[key]:
        raise ValueError(f"{key} takes one of {', '.join(OPTION_CHOICES[key])}, got {value!r}")
    want = OPTION_TYPES[key]
    if not isinstance(value, want) or (isinstance(value, bool) and bool not in want):
        kind = {_INT: "an integer", _NUM: "a number", _BOOL: "true or false", _TEXT: "text",
                _MAP: "a JSON object"}[want]
        raise ValueError(f"{key} takes {kind}, got {value!r}")


def train_and_export(
    series: list[np.ndarray] | np.ndarray,
    channels: list[str],
    out: Path,
    *,
    window: int | None = None,
    hop: int | None = None,
    epochs: int = TrainConfig.epochs,
    seed: int = 0,
    threshold_method: str = "lognormal",
    val_fraction: float = 0.2,
    denoise: float = 0.0,
    quiet: bool = True,
    running: list[np.ndarray] | np.ndarray | None = None,
    sample_period_s: float | None = None,
    **model_opts: Any,
) -> ModelMetadata:
    """Train on raw series (each (T, C) float) and export one ONNX model to ``out``; the defaults are ``fit``'s.

    ``window``/``hop`` and the model sizes left out are chosen from the data (:mod:`trainer.sizes`);
    ``epochs`` is a cap (training stops when it converges).
    ``denoise``: std of gaussian input noise during training (normalised units).
    ``model_opts``: ``depth``, ``width``, ``kernel``, ``latent`` (architecture), ``batch_size``,
    ``lr``, ``patience``, ``device``, ``mask``, ``threads`` (training), ``split``, ``threshold_params``
    (e.g. ``{"q": 0.999}``), ``threshold_scale`` (the margin), ``false_alarm_budget`` (per window),
    ``drift_limit``, ``score_power``, ``level_shrinkage``, ``force``, ``calibrate`` (a list of normal (T, C) arrays),
    ``quantize``, ``fp16``, ``checkpoint``,
    ``units`` ({channel: unit}). ``running``: per series a (T,) bool array, True where the machine runs: fit
    learns its operating states and trains on the settled running rows only (as ``--state-column``).
    ``sample_period_s``: the series' sample period, stored in the model (the edge's gap and stale limits).
    Returns the metadata stored in the file.
    """
    arrays = [series] if isinstance(series, np.ndarray) and series.ndim == 2 else list(series)
    unknown = set(model_opts) - set(_MODEL_KEYS + _TRAIN_KEYS + _OTHER_KEYS)
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
    items = _as_series(arrays, channels, "series")
    for it in items:
        it.sample_period_s = sample_period_s
    spec = None
    if running is not None:
        from trainer.operating import StateSpec

        masks = [running] if isinstance(running, np.ndarray) and running.ndim == 1 else list(running)
        if len(masks) != len(items) or any(len(m) != len(it.values) for m, it in zip(masks, items, strict=False)):
            raise DataError("running: one (T,) mask per series, as long as it")
        for it, m in zip(items, masks, strict=True):
            it.states = np.where(np.asarray(m, dtype=bool), "RUN", "STOP")
        spec = StateSpec("running", ("RUN",))
    if "calibrate" in model_opts:
        model_opts = {**model_opts, "calibrate": _as_series(list(model_opts["calibrate"]), channels, "calibrate")}
    tc = TrainConfig(
        epochs=epochs, seed=seed, noise=denoise, **{k: model_opts[k] for k in _TRAIN_KEYS if k in model_opts}
    )
    opts = FitOptions(
        window=window,
        hop=hop,
        val_fraction=val_fraction,
        threshold_method=threshold_method,
        train=tc,
        states=spec,
        **{k: model_opts[k] for k in _MODEL_KEYS + _OTHER_KEYS if k in model_opts},
    )
    return run_fit(items, Path(out), opts, progress=not quiet).meta


def _as_series(arrays: list[np.ndarray], channels: list[str], what: str) -> list[Series]:
    items = []
    for i, a in enumerate(arrays):
        a = np.asarray(a, dtype=np.float32)
        if a.ndim != 2 or a.shape[1] != len(channels):
            raise DataError(f"{what} {i}: shape {a.shape} does not match {len(channels)} channels")
        if not np.all(np.isfinite(a)):
            raise DataError(f"{what} {i}: contains non-finite values")
        items.append(Series(name=f"{what}[{i}]", values=a, channels=list(channels)))
    return items


def score_windows(model_path: Path | str, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Score raw windows (N, W, C) with onnxruntime: ``(score (N,), channel_error (N, C))``."""
    res = run_onnx(Path(model_path), np.asarray(windows, dtype=np.float32))
    return res[OUTPUT_SCORE], res[OUTPUT_CHANNEL_ERROR]
