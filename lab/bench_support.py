"""The trainer-side parts of `edgewatch-lab bench`, run in a child process.

The edge runtime never imports torch, onnx or the trainer (not even lazily), so the
benchmarks that need them (the PyTorch eager baseline, fp16 / plain-layout variants,
untrained models for the scaling axes) run here, as
``python -m lab.bench_support COMMAND ...``, and answer with one JSON document
on stdout.

Commands:
  eager MODEL --threads N --batches 1,8 --repeats R --seconds S
      windows/s of onnxruntime fp32 (the daemon's session options) and of PyTorch
      eager on the same weights, measured interleaved in this one process, and
      their ratio per batch size.
  int8 SRC DST          the dynamically quantised int8 variant of an exported model
  fp16 SRC DST          the fp16 variant of an exported model
  plain-layout SRC DST  the same weights exported as the plain ScoringGraph
  untrained W C DST     an untrained conv autoencoder exported with the contract
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


def eager_vs_ort(
    model: Path, threads: int, batches: list[int], repeats: int, seconds: float, seed: int = 0
) -> dict[str, Any]:
    """Interleaved windows/s of ORT fp32 and PyTorch eager on ``model``'s weights, per batch size."""
    import torch

    from edge_runtime.service.model import load_model
    from lab.bench.inference import interleaved_rates
    from trainer.export import scoring_graph_from_onnx

    torch.set_num_threads(threads)
    edge = load_model(model, "cpu", threads)
    meta = edge.metadata
    graph = scoring_graph_from_onnx(model)
    rng = np.random.default_rng(seed)
    mean = np.asarray(meta.normalisation.mean, np.float32)
    std = np.asarray(meta.normalisation.std, np.float32)

    def windows(b: int) -> np.ndarray:
        return (mean + std * rng.standard_normal((b, meta.window, meta.n_channels))).astype(np.float32)

    def eager(x: np.ndarray) -> Any:
        with torch.inference_mode():
            return graph(torch.from_numpy(x))

    check = windows(16)
    ref = edge.run(check)[0]
    diff = float(np.max(np.abs(eager(check)[0].numpy() - ref)))
    if diff > 1e-3 * max(1.0, float(np.abs(ref).max())):
        return {"ok": False, "why": f"rebuilt PyTorch module disagrees with the ONNX file (max score diff {diff:.3g})"}
    engines = {"ort_fp32": edge.run, "torch_eager": eager}
    out = {str(b): interleaved_rates(engines, windows(b), repeats, seconds) for b in batches}
    return {
        "ok": True,
        "rates": out,
        "note": (
            f"torch {torch.__version__} eager (the trainer's ScoringGraph with ConvTranspose1d), inference_mode, "
            f"{threads} thread(s), measured in a child process interleaved with ORT fp32; "
            f"max |score diff| vs ONNX {diff:.2g}"
        ),
    }


def int8(src: Path, dst: Path) -> dict[str, Any]:
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)  # quantize_dynamic logs a pre-processing hint on the root logger
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    return {"ok": True, "path": str(dst)}


def fp16(src: Path, dst: Path) -> dict[str, Any]:
    from trainer.export import _convert_fp16

    _convert_fp16(src, dst)
    return {"ok": True, "path": str(dst)}


def plain_layout(src: Path, dst: Path) -> dict[str, Any]:
    from trainer.export import _torch_to_onnx, scoring_graph_from_onnx

    graph = scoring_graph_from_onnx(src)
    _torch_to_onnx(graph, graph.ae.cfg.window, graph.ae.cfg.n_channels, dst)
    return {"ok": True, "path": str(dst)}


def untrained(window: int, n_channels: int, dst: Path) -> dict[str, Any]:
    import torch

    from edge_runtime.contract import ModelMetadata, Normalisation, Threshold
    from edge_runtime.tools.synthetic import channel_names
    from trainer.export import export_model
    from trainer.model import AEConfig, ConvAutoencoder

    torch.manual_seed(0)
    cfg = AEConfig(n_channels=n_channels, window=window)
    meta = ModelMetadata(
        channels=channel_names(n_channels), window=window, hop=max(1, window // 4), threshold=Threshold(1.0),
        normalisation=Normalisation([0.0] * n_channels, [1.0] * n_channels), sample_period_s=1.0,
        architecture={"type": "conv1d_autoencoder", **cfg.to_dict()},
    )
    holdout = np.random.default_rng(0).standard_normal((32, window, n_channels)).astype(np.float32)
    export_model(ConvAutoencoder(cfg).eval(), meta, dst, holdout)
    return {"ok": True, "path": str(dst)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.bench_support", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("eager")
    e.add_argument("model", type=Path)
    e.add_argument("--threads", type=int, default=1)
    e.add_argument("--batches", default="1,8,64,256")
    e.add_argument("--repeats", type=int, default=5)
    e.add_argument("--seconds", type=float, default=0.4)
    e.add_argument("--seed", type=int, default=0)
    for name in ("int8", "fp16", "plain-layout"):
        p = sub.add_parser(name)
        p.add_argument("src", type=Path)
        p.add_argument("dst", type=Path)
    u = sub.add_parser("untrained")
    u.add_argument("window", type=int)
    u.add_argument("channels", type=int)
    u.add_argument("dst", type=Path)
    a = parser.parse_args(argv)
    try:
        if a.cmd == "eager":
            batches = [int(b) for b in a.batches.split(",") if b]
            doc = eager_vs_ort(a.model, a.threads, batches, a.repeats, a.seconds, a.seed)
        elif a.cmd == "int8":
            doc = int8(a.src, a.dst)
        elif a.cmd == "fp16":
            doc = fp16(a.src, a.dst)
        elif a.cmd == "plain-layout":
            doc = plain_layout(a.src, a.dst)
        else:
            doc = untrained(a.window, a.channels, a.dst)
    except ImportError as exc:
        doc = {"ok": False, "why": f"needs the train extra ({exc.name} missing)"}
    except Exception as exc:  # noqa: BLE001 - reported to the parent benchmark, which carries on
        doc = {"ok": False, "why": f"{type(exc).__name__}: {str(exc)[:200]}"}
    json.dump(doc, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
