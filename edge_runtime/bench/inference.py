"""Inference benchmark: windows/s of the model on onnxruntime CPU (fp32, int8, fp16) against PyTorch eager.

Every engine runs the same random raw windows ``(B, W, C)`` float32 at each batch size, on the same
number of threads, interleaved repeat by repeat (so load from other processes hits all engines alike).
The PyTorch baseline rebuilds the trainer's module from the ONNX file's weights and checks that it
scores like the ONNX graph; it needs the train extra (torch, onnx) and is skipped with a note without it.
Nothing at import time needs torch, onnx or the trainer.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edge_runtime.bench.common import matmul_peak_gflops, summary
from edge_runtime.contract import INPUT_NAME, OUTPUT_CHANNEL_ERROR, OUTPUT_SCORE, ModelMetadata
from edge_runtime.model import _session_options, load_model

log = logging.getLogger(__name__)

BATCHES = (1, 8, 64, 256)
LEVELS = {
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
Runner = Callable[[np.ndarray], Any]


def conv_ae_flops(meta: ModelMetadata) -> float | None:
    """Multiply-add FLOPs (2 per MAC) of one window through the conv autoencoder in ``meta.architecture``.

    Counts convolutions, transposed convolutions and the two linear layers (the elementwise
    normalisation and error terms are < 2 % and left out). None for an unknown architecture.
    """
    a = meta.architecture
    if a.get("type") != "conv1d_autoencoder":
        return None
    depth, width, k, latent = int(a["depth"]), int(a["width"]), int(a["kernel"]), int(a["latent"])
    c, f = meta.n_channels, 2**depth
    lp = -(-meta.window // f) * f
    chans = [c] + [width * 2**i for i in range(depth)]
    flops, length = 0.0, lp
    for i in range(depth):  # strided Conv1d: output length halves
        length //= 2
        flops += 2.0 * chans[i] * chans[i + 1] * k * length
    flat = chans[-1] * length
    flops += 2.0 * 2 * flat * latent  # to_latent + from_latent
    for i in range(depth, 0, -1):  # ConvTranspose1d: each input element scattered K times per out channel
        out = chans[i - 1] if i > 1 else width
        flops += 2.0 * chans[i] * out * k * length
        length *= 2
    flops += 2.0 * width * c * lp  # 1x1 head
    return flops


def ort_runner(model_bytes: bytes | str, threads: int, level: str = "all") -> Runner:
    """``run(x)`` on a CPU session with the daemon's options (spinning off) at optimisation ``level``."""
    so = _session_options(threads, quiet=True)
    so.graph_optimization_level = LEVELS[level]
    sess = ort.InferenceSession(model_bytes, sess_options=so, providers=["CPUExecutionProvider"])
    outs = [OUTPUT_SCORE, OUTPUT_CHANNEL_ERROR]
    return lambda x: sess.run(outs, {INPUT_NAME: x})


def make_variant(kind: str, src: Path, out_dir: Path) -> tuple[Path | None, str]:
    """The int8/fp16 variant of ``src``: the trainer's ``<stem>.<kind>.onnx`` beside it, else made here.

    Making one needs the train extra (onnx; fp16 also the trainer); returns (None, why) without it.
    """
    beside = src.with_name(f"{src.stem}.{kind}.onnx")
    if beside.exists():
        return beside, f"{beside.name} (from the trainer)"
    dst = out_dir / f"{src.stem}.{kind}.onnx"
    try:
        if kind == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            root, level = logging.getLogger(), logging.getLogger().level
            root.setLevel(logging.ERROR)  # quantize_dynamic logs a pre-processing hint on the root logger
            try:
                quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
            finally:
                root.setLevel(level)
        else:
            from trainer.export import _convert_fp16

            _convert_fp16(src, dst)
    except ImportError as exc:
        return None, f"skipped: making the {kind} variant needs the train extra ({exc.name} missing)"
    except Exception as exc:  # noqa: BLE001 - an optional variant that cannot be made is reported, not fatal
        return None, f"skipped: {kind} variant failed: {type(exc).__name__}: {str(exc)[:120]}"
    return dst, f"made with {'onnxruntime.quantization.quantize_dynamic' if kind == 'int8' else 'trainer.export'}"


def torch_runner(path: Path, threads: int, check: np.ndarray) -> tuple[Runner | None, str]:
    """PyTorch eager on the same weights: the trainer's ScoringGraph rebuilt from the ONNX file.

    Imports torch, onnx and the trainer here, lazily; returns (None, why) where they are absent or the
    rebuilt module does not score like the ONNX file on ``check`` windows (B, W, C).
    """
    try:
        import torch

        from trainer.export import scoring_graph_from_onnx
    except ImportError as exc:
        return None, f"skipped: PyTorch baseline needs the train extra ({exc.name} missing)"
    torch.set_num_threads(threads)
    try:
        graph = scoring_graph_from_onnx(path)
    except Exception as exc:  # noqa: BLE001 - a file the trainer's module cannot be rebuilt from
        return None, f"skipped: cannot rebuild the trainer's module from {path.name} ({str(exc)[:120]})"

    def run(x: np.ndarray) -> Any:
        with torch.inference_mode():
            return graph(torch.from_numpy(x))

    ref = ort_runner(str(path), threads)(check)[0]
    diff = float(np.max(np.abs(run(check)[0].numpy() - ref)))
    if diff > 1e-3 * max(1.0, float(np.abs(ref).max())):
        return None, f"skipped: rebuilt PyTorch module disagrees with the ONNX file (max score diff {diff:.3g})"
    return run, (f"torch {torch.__version__} eager (the trainer's ScoringGraph with ConvTranspose1d), "
                 f"inference_mode, {threads} thread(s); max |score diff| vs ONNX {diff:.2g}")


def plain_layout(path: Path, out_dir: Path) -> tuple[Path | None, str]:
    """The same weights exported in the plain layout (ScoringGraph as is), for the layout comparison.

    Needs the trainer (torch, onnx), imported lazily; (None, why) without it.
    """
    try:
        from trainer.export import _torch_to_onnx, scoring_graph_from_onnx
    except ImportError as exc:
        return None, f"skipped: needs the train extra ({exc.name} missing)"
    graph = scoring_graph_from_onnx(path)
    dst = out_dir / "plain.onnx"
    ae = graph.ae
    _torch_to_onnx(graph, ae.cfg.window, ae.cfg.n_channels, dst)
    return dst, "the same weights exported as the plain ScoringGraph (input transpose, Div, Pow, ConvTranspose)"


def _rate(run: Runner, x: np.ndarray, seconds: float) -> float:
    """Windows/s of ``run(x)`` looped for about ``seconds``."""
    k, t0 = 0, time.perf_counter()
    while True:
        run(x)
        k += 1
        el = time.perf_counter() - t0
        if el >= seconds:
            return x.shape[0] * k / el


def bench_inference(
    model_path: str | Path,
    batches: tuple[int, ...] = BATCHES,
    threads: int = 1,
    repeats: int = 5,
    seconds: float = 0.4,
    torch_baseline: bool = True,
    variants: bool = True,
    levels: bool = True,
    peak: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Windows/s per engine and batch size (median of ``repeats`` of ``seconds`` each), ratios, GFLOP/s."""
    path = Path(model_path)
    model = load_model(path, "cpu", threads)
    meta = model.metadata
    rng = np.random.default_rng(seed)
    mean = np.asarray(meta.normalisation.mean, np.float32)
    std = np.asarray(meta.normalisation.std, np.float32)

    def windows(b: int) -> np.ndarray:
        return (mean + std * rng.standard_normal((b, meta.window, meta.n_channels))).astype(np.float32)

    engines: dict[str, Runner] = {"ort_fp32": model.run}
    notes: dict[str, str] = {"ort_fp32": "the daemon's session: ORT_ENABLE_ALL, spinning off"}
    data = path.read_bytes()
    if levels:
        for name in ("basic", "extended"):
            engines[f"ort_fp32_{name}"] = ort_runner(data, threads, name)
            notes[f"ort_fp32_{name}"] = f"graph_optimization_level {name}"
    with tempfile.TemporaryDirectory(prefix="edgewatch-bench-") as tmp:
        if variants:
            for kind in ("int8", "fp16"):
                vpath, why = make_variant(kind, path, Path(tmp))
                notes[f"ort_{kind}"] = why
                if vpath is not None:
                    try:
                        engines[f"ort_{kind}"] = ort_runner(str(vpath), threads)
                    except Exception as exc:  # noqa: BLE001 - e.g. an fp16 op without a CPU kernel
                        notes[f"ort_{kind}"] = f"skipped: does not run on CPU ({str(exc).splitlines()[0][:120]})"
        if levels:
            ppath, why = plain_layout(path, Path(tmp))
            notes["ort_fp32_plain_layout"] = why
            if ppath is not None:
                engines["ort_fp32_plain_layout"] = ort_runner(str(ppath), threads)
        if torch_baseline:
            trun, why = torch_runner(path, threads, windows(16))
            notes["torch_eager"] = why
            if trun is not None:
                engines["torch_eager"] = trun
        else:
            notes["torch_eager"] = "skipped (--no-torch)"
        results: dict[str, dict[str, Any]] = {}
        for b in batches:
            x = windows(b)
            for run in engines.values():
                run(x)  # warm up
            rates: dict[str, list[float]] = {e: [] for e in engines}
            names = list(engines)
            for r in range(repeats):
                for e in names[r % len(names):] + names[: r % len(names)]:  # rotate the order per repeat
                    rates[e].append(_rate(engines[e], x, seconds))
            row: dict[str, Any] = {e: summary(v) for e, v in rates.items()}
            if "torch_eager" in rates:
                ratio = np.asarray(rates["ort_fp32"]) / np.asarray(rates["torch_eager"])
                row["ratio_ort_fp32_vs_torch"] = summary(ratio, 2)
            results[str(b)] = row
    flops = conv_ae_flops(meta)
    best_b = max(results, key=lambda b: results[b]["ort_fp32"]["median"])
    out: dict[str, Any] = {
        "model": str(path), "model_id": model.model_id, "window": meta.window, "channels": meta.n_channels,
        "architecture": meta.architecture, "threads": threads, "repeats": repeats, "seconds_per_repeat": seconds,
        "engines": notes, "batches": results, "flops_per_window": flops, "best_batch": int(best_b),
    }
    if flops:
        wps = results[best_b]["ort_fp32"]["median"]
        out["achieved_gflops"] = round(wps * flops / 1e9, 2)
    if peak:
        out["cpu_peak_gflops"] = matmul_peak_gflops(threads)
        if flops:
            out["fraction_of_peak"] = round(out["achieved_gflops"] / out["cpu_peak_gflops"]["median"], 3)
    return out
