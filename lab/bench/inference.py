"""Inference benchmark: windows/s of the model on onnxruntime CPU (fp32, int8, fp16) against PyTorch eager.

Every engine runs the same random raw windows ``(B, W, C)`` float32 at each batch size, on the same
number of threads, interleaved repeat by repeat (so load from other processes hits all engines alike).
The PyTorch baseline rebuilds the trainer's module from the ONNX file's weights, checks that it
scores like the ONNX graph, and is timed interleaved with ORT fp32 in a child process
(``python -m lab.bench_support eager``), which gives the ORT/eager ratio; the int8, fp16 and
plain-layout variants are made there too. This process never imports torch, onnx or the trainer;
without the train extra those columns are skipped with a note.
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

from edge_runtime.contract import INPUT_NAME, OUTPUT_CHANNEL_ERROR, OUTPUT_SCORE, ModelMetadata
from edge_runtime.service.model import _session_options, load_model
from lab.bench.common import matmul_peak_gflops, summary, trainer_tool, window_maker

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

    Made in a child process (``lab.bench_support``): both need onnx, which this process never
    imports; returns (None, why) without the train extra.
    """
    beside = src.with_name(f"{src.stem}.{kind}.onnx")
    if beside.exists():
        return beside, f"{beside.name} (from the trainer)"
    dst = out_dir / f"{src.stem}.{kind}.onnx"
    res = trainer_tool(kind, src, dst)  # int8: onnxruntime.quantization (imports onnx); fp16: the trainer
    if not res.get("ok"):
        return None, f"skipped: {kind} variant: {res.get('why')}"
    return dst, f"made with {'onnxruntime.quantization.quantize_dynamic' if kind == 'int8' else 'trainer.export'}"


def torch_baseline_rates(path: Path, threads: int, batches: tuple[int, ...], repeats: int, seconds: float,
                         seed: int) -> dict[str, Any]:
    """PyTorch eager on the same weights, in a child process (the trainer's ScoringGraph rebuilt from the file).

    The child times ORT fp32 and PyTorch eager interleaved, so their ratio is a same-process, same-time
    comparison; ``{"ok": False, "why": ...}`` where the train extra is absent or the rebuilt module
    does not score like the ONNX file.
    """
    return trainer_tool("eager", path, "--threads", threads, "--batches", ",".join(map(str, batches)),
                        "--repeats", repeats, "--seconds", seconds, "--seed", seed)


def plain_layout(path: Path, out_dir: Path) -> tuple[Path | None, str]:
    """The same weights exported in the plain layout (ScoringGraph as is), for the layout comparison.

    Made by the trainer in a child process; (None, why) without the train extra.
    """
    dst = out_dir / "plain.onnx"
    res = trainer_tool("plain-layout", path, dst)
    if not res.get("ok"):
        return None, f"skipped: {res.get('why')}"
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


def interleaved_rates(engines: dict[str, Runner], x: np.ndarray, repeats: int, seconds: float) -> dict[str, list[float]]:
    """Windows/s of each engine on ``x`` (B, W, C), ``repeats`` times, rotating which goes first each repeat."""
    for run in engines.values():
        run(x)  # warm up
    rates: dict[str, list[float]] = {e: [] for e in engines}
    names = list(engines)
    for r in range(repeats):
        for e in names[r % len(names):] + names[: r % len(names)]:
            rates[e].append(_rate(engines[e], x, seconds))
    return rates


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
    windows = window_maker(meta, seed)

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
        eager: dict[str, Any] = {"ok": False, "why": "skipped (--no-torch)"}
        if torch_baseline:
            eager = torch_baseline_rates(path, threads, batches, repeats, seconds, seed)
        notes["torch_eager"] = eager["note"] if eager.get("ok") else f"skipped: {eager.get('why')}"
        results: dict[str, dict[str, Any]] = {}
        for b in batches:
            rates = interleaved_rates(engines, windows(b), repeats, seconds)
            row: dict[str, Any] = {e: summary(v) for e, v in rates.items()}
            if eager.get("ok"):
                child = eager["rates"][str(b)]
                row["torch_eager"] = summary(child["torch_eager"])
                ratio = np.asarray(child["ort_fp32"]) / np.asarray(child["torch_eager"])
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
