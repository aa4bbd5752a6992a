"""Contract-conformant ONNX models built with onnx.helper, for edge runtime tests (tests may import onnx).

The graph: ``z = (window - mean) / std`` (B, W, C); reconstruction = the per-channel
window mean broadcast over time, so ``channel_error`` (B, C) is the per-channel
variance of ``z`` over the window and ``score`` (B,) its mean over channels.
:func:`reference_scores` is the same computation in numpy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from edge_runtime.contract import (
    INPUT_NAME,
    METADATA_KEY,
    OUTPUT_CHANNEL_ERROR,
    OUTPUT_RECONSTRUCTION,
    OUTPUT_SCORE,
    ModelMetadata,
    Normalisation,
    Threshold,
)

CHANNELS4 = ["Accelerometer1RMS", "Pressure", "Temperature", "Volume Flow RateRMS"]


def make_metadata(
    window: int = 16,
    hop: int = 4,
    channels: list[str] | None = None,
    threshold: float = 2.0,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    model_id: str = "test-model-1",
    sample_period_s: float | None = 1.0,
) -> ModelMetadata:
    ch = list(channels or CHANNELS4)
    return ModelMetadata(
        channels=ch,
        window=window,
        hop=hop,
        threshold=Threshold(value=threshold, method="quantile", params={"q": 0.999}),
        normalisation=Normalisation(mean=mean or [0.0] * len(ch), std=std or [1.0] * len(ch)),
        model_id=model_id,
        created="2026-01-01T00:00:00Z",
        sample_period_s=sample_period_s,
    )


def build_model(meta: ModelMetadata, opset: int = 17) -> onnx.ModelProto:
    """The variance-autoencoder stand-in for ``meta`` (fixed W and C, dynamic batch)."""
    W, C = meta.window, meta.n_channels
    mean = np.asarray(meta.normalisation.mean, np.float32).reshape(1, 1, C)
    std = np.asarray(meta.normalisation.std, np.float32).reshape(1, 1, C)
    inits = [
        helper.make_tensor("mean", TensorProto.FLOAT, mean.shape, mean.ravel()),
        helper.make_tensor("std", TensorProto.FLOAT, std.shape, std.ravel()),
    ]
    nodes = [
        helper.make_node("Sub", [INPUT_NAME, "mean"], ["xc"]),
        helper.make_node("Div", ["xc", "std"], ["z"]),  # (B, W, C)
        helper.make_node("ReduceMean", ["z"], ["m"], axes=[1], keepdims=1),  # (B, 1, C)
        helper.make_node("Sub", ["z", "m"], ["d"]),
        helper.make_node("Mul", ["d", "d"], ["d2"]),
        helper.make_node("ReduceMean", ["d2"], [OUTPUT_CHANNEL_ERROR], axes=[1], keepdims=0),  # (B, C)
        helper.make_node("ReduceMean", [OUTPUT_CHANNEL_ERROR], [OUTPUT_SCORE], axes=[1], keepdims=0),  # (B,)
        helper.make_node("Shape", [INPUT_NAME], ["shape"]),
        helper.make_node("Expand", ["m", "shape"], ["mz"]),
        helper.make_node("Mul", ["mz", "std"], ["ms"]),
        helper.make_node("Add", ["ms", "mean"], [OUTPUT_RECONSTRUCTION]),  # (B, W, C)
    ]
    graph = helper.make_graph(
        nodes,
        "edgewatch-test",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", W, C])],
        [
            helper.make_tensor_value_info(OUTPUT_SCORE, TensorProto.FLOAT, ["batch"]),
            helper.make_tensor_value_info(OUTPUT_CHANNEL_ERROR, TensorProto.FLOAT, ["batch", C]),
            helper.make_tensor_value_info(OUTPUT_RECONSTRUCTION, TensorProto.FLOAT, ["batch", W, C]),
        ],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    helper.set_model_props(model, {METADATA_KEY: meta.to_json()})
    onnx.checker.check_model(model)
    return model


def write_model(path: Path, meta: ModelMetadata | None = None, **kw) -> Path:
    """Build and save a test model; returns ``path``."""
    meta = meta or make_metadata(**kw)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    onnx.save(build_model(meta), tmp)
    tmp.replace(path)  # atomic, as a deploy should do it
    return path


def write_health_model(path: Path, channels: list[str]) -> Path:
    """W 8, hop 4, 1 s sampling, health limits: range -5..5 (no margin), fill 2 samples, stuck after 6 flat ones."""
    meta = make_metadata(window=8, hop=4, channels=channels, sample_period_s=1.0)
    meta.health = {"fill": {"method": "ffill", "limit_samples": 2}, "stale_after_s": 5.0,
                   "channels": {c: {"min": -5.0, "max": 5.0, "margin": 0.0, "flat_tol": 0.0, "max_flat_samples": 6}
                                for c in channels}}
    return write_model(path, meta)


def write_foreign_model(path: Path) -> Path:
    """A valid ONNX file that is not an edgewatch model (no metadata, other names)."""
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph(
        [node], "foreign", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def reference_scores(windows: np.ndarray, meta: ModelMetadata) -> tuple[np.ndarray, np.ndarray]:
    """numpy twin of the graph. ``windows``: (B, W, C) -> score (B,), channel_error (B, C)."""
    z = (windows.astype(np.float64) - np.asarray(meta.normalisation.mean)) / np.asarray(meta.normalisation.std)
    ce = z.var(axis=1)
    return ce.mean(axis=1), ce


def series(n: int, n_channels: int = 4, seed: int = 0, noise: float = 0.3) -> np.ndarray:
    """A smooth normal series (n, C) float32: slow sines plus small noise (variance ~ noise^2 + 0.5*amp^2)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    phase = rng.uniform(0, 2 * np.pi, n_channels)
    return (0.2 * np.sin(2 * np.pi * t / 200.0 + phase) + noise * rng.standard_normal((n, n_channels))).astype(
        np.float32
    )


def sliding_windows(x: np.ndarray, window: int, hop: int) -> np.ndarray:
    """All windows the daemon cuts from one uninterrupted series ``x`` (n, C) -> (k, W, C)."""
    ends = np.arange(window, x.shape[0] + 1, hop)
    return np.stack([x[e - window : e] for e in ends]) if ends.size else np.zeros((0, window, x.shape[1]), x.dtype)
