"""Export: one ONNX graph (normalise -> autoencoder -> relative channel errors -> score), metadata, checks.

The graph takes raw windows ``window`` (B, W, C) float32 and returns ``score`` (B,),
``channel_error`` (B, C) (each channel's departure relative to its own normal error, see
:class:`ScoringGraph`) and ``reconstruction`` (B, W, C) in raw units (see :mod:`edge_runtime.contract`).
Its per-channel constants (:class:`ScoreStats`) are also written into the metadata (``scoring``).

There is one forward (:meth:`ScoringGraph.forward` around the autoencoder's own ``forward``); the
file holds it with the autoencoder in :func:`fast_layout`: every stride-2 ``ConvTranspose1d`` as one
``Conv1d`` to 2x channels plus an interleave (:class:`SubPixelConvTranspose1d`), which onnxruntime's
CPU kernels run ~1.5x faster at batch 64-256 (benchmarks/PROFILE.md), and constants multiplied (no
``Div``; one ``Pow``, a format-4 power mean's root on the (B,) score, the channel powers being ``Mul``). :func:`scoring_graph_from_onnx` rebuilds the plain module from a file of either layout
(the PyTorch baseline of ``edgewatch-lab bench inference``).

Every export is checked: ``onnx.checker``, then onnxruntime (CPU) against torch on held-out
windows; a disagreement beyond ``|ort - torch| <= PARITY_ATOL + PARITY_RTOL * |torch|``
(score, channel error, reconstruction in normalised units) fails the export with the max difference.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import platform
import warnings
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from edge_runtime.contract import (
    INPUT_NAME,
    METADATA_KEY,
    OUTPUT_CHANNEL_ERROR,
    OUTPUT_NAMES,
    OUTPUT_RECONSTRUCTION,
    OUTPUT_SCORE,
    ModelMetadata,
)
from trainer.model_file import ExportError, describe_model, read_metadata

log = logging.getLogger(__name__)

OPSET = 18
PARITY_ATOL = 1e-3  # normalised units: a 1e-3 std difference moves the score by ~1e-6; float32 conv sums differ up to ~1e-4
PARITY_RTOL = 1e-3


class SubPixelConvTranspose1d(nn.Module):
    """A stride-2 ``ConvTranspose1d`` as ``Conv1d`` (C_in -> 2 C_out, odd kernel) + interleave; same output.

    Output position ``t = 2 m + r`` of the transposed convolution reads input ``m + d`` through tap ``k``
    with ``k = r + p - 2 d``: each parity ``r`` is an ordinary convolution, and both run as one
    (channels ordered ``o * 2 + r``). ``forward``: (B, C_in, L) -> (B, C_out, 2 L).
    """

    def __init__(self, ct: nn.ConvTranspose1d) -> None:
        super().__init__()
        if not self.supports(ct):
            raise ValueError("only stride-2, dilation-1, ungrouped ConvTranspose1d with output length 2 L")
        w = ct.weight.detach()  # (C_in, C_out, K)
        c_in, c_out, k = w.shape
        p = ct.padding[0]
        self.taps = {j: ((j + p) % 2, ((j + p) % 2 + p - j) // 2) for j in range(k)}  # tap -> (parity, offset)
        self.reach = max(abs(d) for _, d in self.taps.values())
        weight = torch.zeros(c_out * 2, c_in, 2 * self.reach + 1)
        for j, (r, d) in self.taps.items():
            weight[r::2, :, d + self.reach] = w[:, :, j].T
        bias = ct.bias.detach() if ct.bias is not None else torch.zeros(c_out)
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias.repeat_interleave(2))
        self.c_out = c_out
        self.length: int | None = None  # the input length L when static: keeps Shape ops out of the graph

    @staticmethod
    def supports(ct: nn.Module) -> bool:
        return (isinstance(ct, nn.ConvTranspose1d) and ct.stride == (2,) and ct.dilation == (1,) and ct.groups == 1
                and ct.padding_mode == "zeros" and ct.kernel_size[0] + ct.output_padding[0] - 2 * ct.padding[0] == 2)

    def convtranspose_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The equivalent ``ConvTranspose1d`` weight (C_in, C_out, K) and bias (C_out,)."""
        k = len(self.taps)
        w = torch.zeros(self.weight.shape[1], self.c_out, k)
        for j, (r, d) in self.taps.items():
            w[:, :, j] = self.weight[r::2, :, d + self.reach].T
        return w, self.bias[::2].detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = nn.functional.conv1d(x, self.weight, self.bias, padding=self.reach)  # (B, 2 C_out, L)
        n = self.length or y.shape[2]
        return y.view(-1, self.c_out, 2, n).transpose(2, 3).reshape(-1, self.c_out, 2 * n)


@dataclass
class ScoreStats:
    """Per-channel constants of the score, fitted on normal data only.

    ``mean``/``std`` (C,): normalisation ``z = (x - mean) / std``. ``ae_ref`` (C,): the channel's mean
    squared reconstruction error on validation windows. ``weight`` (C,): ``C / n_kept`` for a channel
    kept by screening, 0 for one screened out. The level term, on ``l = mean_W(z)`` (C,):

    - format 3: ``level_precision`` (C, C), the shrunk inverse covariance of the training windows'
      levels over the kept channels (:mod:`trainer.covariance`), and ``level_t2_ref``, the validation
      mean of ``l^T P l / n_kept`` (at least 1): the term is ``l^T P l / (n_kept level_t2_ref)``;
    - format 2: ``level_scale`` (C,), the std of a training window's level, and ``level_ref`` (C,), the
      validation mean of ``(l / level_scale) ** 2``: each channel's own term, no cross terms.

    ``power`` p (format 4; 1 before): with p = 1, ``channel_error`` is each channel's share of the score
    (format 3); with p != 1, each kept channel's relative error ``e_c = mse_c / (2 ae_ref_c) + l_c (P l)_c /
    (2 level_t2_ref)`` (clipped at 0) enters as ``channel_error_c = weight_c e_c ** p`` and
    ``score = mean_C(channel_error) ** (1 / p)``: a power mean over the kept channels, so one channel that
    departs is not averaged away by the quiet ones.

    ``residual_proj`` (C, C) and ``residual_coef`` (C,) (optional, p != 1 only; :mod:`trainer.cross_channel`):
    the cross-channel term ``residual_coef_c * mean_W((M z)_c ** 2)`` added to ``e_c``; None when it is off.
    ``cross_only`` (C,) 1 for a channel scored by that term alone (screened out of the others for drifting:
    no reconstruction term, and the level precision has no row for it), else 0.
    """

    mean: np.ndarray
    std: np.ndarray
    ae_ref: np.ndarray
    level_scale: np.ndarray | None
    level_ref: np.ndarray | None
    weight: np.ndarray
    level_precision: np.ndarray | None = None
    level_t2_ref: float = 1.0
    power: float = 1.0
    residual_proj: np.ndarray | None = None
    residual_coef: np.ndarray | None = None
    cross_only: np.ndarray | None = None

    @classmethod
    def identity(cls, mean: np.ndarray, std: np.ndarray) -> ScoreStats:
        """Every reference 1, every weight 1 (before the references are measured)."""
        one = np.ones(len(mean))
        return cls(np.asarray(mean), np.asarray(std), one, one, one, one)

    def coefficients(self) -> tuple[np.ndarray, np.ndarray]:
        """``(a (C,), Q (C, C))``: ``channel_error = a * mse + l * (Q l)``, ``score = mean_C(channel_error)``."""
        w = np.asarray(self.weight, dtype=np.float64)
        a = 0.5 * w / self.ae_ref
        if self.level_precision is not None:
            q = 0.5 * w.max() * np.asarray(self.level_precision, dtype=np.float64) / self.level_t2_ref
        else:
            q = np.diag(0.5 * w / (np.asarray(self.level_scale) ** 2 * np.asarray(self.level_ref)))
        return a, q

    def relative_coefficients(self) -> tuple[np.ndarray, np.ndarray]:
        """``(a (C,), Q (C, C))`` of the relative error ``e = a * mse + l * (Q l)`` (the p != 1 form: weights apart)."""
        w = np.asarray(self.weight, dtype=np.float64)
        a, q = self.coefficients()
        inv = np.where(w > 0, 1.0 / np.where(w > 0, w, 1.0), 0.0)
        if self.cross_only is not None:
            inv = inv * (1.0 - np.asarray(self.cross_only, dtype=np.float64))
        return a * inv, q / w.max()

    def channel_scores(self, mse: np.ndarray, level: np.ndarray,
                       resid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """numpy ``(channel_error (N, C), score (N,))`` from the raw terms ``mse``, ``level`` and, with the
        cross-channel term on, ``resid`` (N, C) (:func:`trainer.cross_channel.residual_terms`): the graph's function."""
        if self.power == 1:
            a, q = self.coefficients()
            ce = mse * a + level * (level @ q)
            return ce, ce.mean(axis=1)
        a, q = self.relative_coefficients()
        rel = mse * a + level * (level @ q)
        if self.residual_coef is not None:
            if resid is None:
                raise ValueError("the cross-channel term is on: pass its raw term resid")
            rel = rel + resid * self.residual_coef
        e = np.maximum(rel, 0.0)
        ce = np.asarray(self.weight, dtype=np.float64) * e**self.power
        return ce, ce.mean(axis=1) ** (1.0 / self.power)


def fast_layout(ae: nn.Module) -> nn.Module:
    """A copy of ``ae`` whose stride-2 ``ConvTranspose1d`` are :class:`SubPixelConvTranspose1d` (same function)."""
    fast = copy.deepcopy(ae)
    fast.decoder = nn.Sequential(
        *[SubPixelConvTranspose1d(m) if isinstance(m, nn.ConvTranspose1d) else m for m in ae.decoder]
    )
    length = ae.code_len
    for m in fast.decoder:
        if isinstance(m, SubPixelConvTranspose1d):
            m.length, length = length, 2 * length
    return fast


def supports_fast_layout(ae: nn.Module) -> bool:
    from trainer.model import ConvAutoencoder

    return isinstance(ae, ConvAutoencoder) and all(
        SubPixelConvTranspose1d.supports(m) for m in ae.decoder if isinstance(m, nn.ConvTranspose1d)
    )


class ScoringGraph(nn.Module):
    """``forward(window)``: (B, W, C) raw -> score (B,), channel_error (B, C), reconstruction (B, W, C) raw.

    ``channel_error[c] = weight_c / 2 * mse_c / ae_ref_c + l_c * (Q l)_c`` with ``l = mean_W(z)``: the
    channel's reconstruction error relative to its own normal, plus its share of the window level's
    Mahalanobis distance (:class:`ScoreStats`; about 1 on normal data, a share may be negative; about 2 with
    the cross-channel term, whose share is about 1 on its own), so
    channels of any scale or noise compare; ``score = mean_C(channel_error)``. With ``stats.power`` p != 1
    (format 4): ``channel_error[c] = weight_c * relu(e_c) ** p`` of that relative error ``e_c`` (weights apart)
    and ``score = mean_C(channel_error) ** (1 / p)``.
    ``fast``: the autoencoder in :func:`fast_layout` (what the file holds); the function is the same.
    The autoencoder's own ``forward`` is the only network forward; constants are multiplied (no Div; Pow only for p != 1).
    """

    def __init__(self, ae: nn.Module, stats: ScoreStats, fast: bool = False) -> None:
        super().__init__()
        self.ae = fast_layout(ae) if fast else ae
        self.stats = stats

        def col(v: np.ndarray) -> torch.Tensor:
            return torch.tensor(np.asarray(v, dtype=np.float64), dtype=torch.float32).view(1, -1, 1)

        a, b = stats.coefficients() if stats.power == 1 else stats.relative_coefficients()
        self.power = float(stats.power)
        if self.power != 1:  # (a format-3 graph keeps exactly its old constants)
            self.register_buffer("weight_c", torch.tensor(np.asarray(stats.weight, dtype=np.float64),
                                                          dtype=torch.float32).view(1, -1))  # (1, C)
        self.register_buffer("mean_c", col(stats.mean))  # (1, C, 1)
        self.register_buffer("std_c", col(stats.std))
        self.register_buffer("inv_std_c", col(1.0 / np.asarray(stats.std, dtype=np.float64)))
        self.register_buffer("ae_coef", col(a).view(1, -1))  # (1, C)
        self.register_buffer("level_q", torch.tensor(b, dtype=torch.float32))  # (C, C) symmetric
        self.cross_channel = stats.residual_proj is not None and stats.residual_coef is not None and self.power != 1
        if self.cross_channel:  # the cross-channel term (trainer.cross_channel): M (C, C), 1 / its reference (1, C)
            self.register_buffer("residual_m", torch.tensor(np.asarray(stats.residual_proj), dtype=torch.float32))
            self.register_buffer("residual_coef", torch.tensor(np.asarray(stats.residual_coef),
                                                               dtype=torch.float32).view(1, -1))

    def forward(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = (window.transpose(1, 2) - self.mean_c) * self.inv_std_c  # (B, C, W)
        r = self.ae(z)  # (B, C, W)
        d = r - z
        level = torch.mean(z, dim=2)  # (B, C)
        channel_error = torch.mean(d * d, dim=2) * self.ae_coef + level * torch.matmul(level, self.level_q)  # (B, C)
        if self.cross_channel:
            u = torch.matmul(self.residual_m, z)  # (B, C, W): what the common factors do not explain
            channel_error = channel_error + torch.mean(u * u, dim=2) * self.residual_coef
        if self.power == 1:
            score = torch.mean(channel_error, dim=1)  # (B,)
        else:  # a power mean of the kept channels' relative errors (ScoreStats)
            e = torch.relu(channel_error)
            if self.power == int(self.power) and self.power <= 4:  # a few Mul: cheaper than Pow on onnxruntime
                channel_error = e
                for _ in range(int(self.power) - 1):
                    channel_error = channel_error * e
                channel_error = channel_error * self.weight_c
            else:
                channel_error = torch.pow(e, self.power) * self.weight_c
            score = torch.pow(torch.mean(channel_error, dim=1), 1.0 / self.power)
        recon = (r * self.std_c + self.mean_c).transpose(1, 2)  # (B, W, C)
        return score, channel_error, recon


def stats_from_metadata(meta: ModelMetadata) -> ScoreStats:
    """The :class:`ScoreStats` a format-2, 3, 4 or 5 file's metadata describes (no ``power``: 1)."""
    sc = meta.scoring

    def vec(key: str) -> np.ndarray | None:
        return np.array(sc[key], dtype=np.float64) if key in sc else None

    try:
        residual: dict[str, Any] = {}
        if "residual_projection" in sc:  # the cross-channel term (format 5): all three keys or none
            residual = {"residual_proj": vec("residual_projection"),
                        "residual_coef": np.array(sc["residual_coef"], dtype=np.float64),
                        "cross_only": np.array(sc["cross_only"], dtype=np.float64)}
        if "level_precision" in sc:
            level = {"level_scale": None, "level_ref": None, "level_precision": vec("level_precision"),
                     "level_t2_ref": float(sc["level_t2_ref"])}
        else:
            level = {"level_scale": np.array(sc["level_scale"], dtype=np.float64),
                     "level_ref": np.array(sc["level_ref"], dtype=np.float64)}
        return ScoreStats(
            mean=np.array(meta.normalisation.mean),
            std=np.array(meta.normalisation.std),
            ae_ref=np.array(sc["ae_ref"], dtype=np.float64),
            weight=np.array(sc["weight"], dtype=np.float64),
            power=float(sc.get("power", 1.0)),
            **level,
            **residual,
        )
    except KeyError as exc:
        raise ExportError(
            f"model format {meta.format_version} has no scoring.{exc.args[0]}: re-export it with `edgewatch-train fit`"
        ) from None


def scoring_graph_from_onnx(path: Path) -> ScoringGraph:
    """The trainer's plain :class:`ScoringGraph` with the weights of an exported file (either layout)."""
    from trainer.model import AEConfig, ConvAutoencoder

    meta = read_metadata(Path(path))
    stats = stats_from_metadata(meta)
    a = meta.architecture
    ae = ConvAutoencoder(AEConfig(n_channels=meta.n_channels, window=meta.window, depth=int(a["depth"]),
                                  width=int(a["width"]), kernel=int(a["kernel"]), latent=int(a["latent"]))).eval()
    weights = {i.name: torch.from_numpy(onnx.numpy_helper.to_array(i).copy())
               for i in onnx.load(str(path)).graph.initializer}
    own = {k[3:]: v for k, v in weights.items() if k.startswith("ae.")}
    plain = {k: tuple(v.shape) for k, v in ae.state_dict().items()}
    if all(k in own and tuple(own[k].shape) == s for k, s in plain.items()):
        ae.load_state_dict({k: own[k] for k in plain}, strict=True)
        return ScoringGraph(ae, stats).eval()
    fast = fast_layout(ae)
    names = [k for k, _ in fast.named_parameters()]
    missing = [k for k in names if k not in own]
    if missing:
        raise ExportError(f"{path}: weights missing from the file: {', '.join(missing[:4])}")
    fast.load_state_dict({k: own[k] for k in names}, strict=False)
    ae.load_state_dict({k: v for k, v in fast.state_dict().items() if not k.startswith("decoder.")}, strict=False)
    for ct, sp in zip(ae.decoder, fast.decoder, strict=True):
        if isinstance(sp, SubPixelConvTranspose1d):
            w, b = sp.convtranspose_weight()
            with torch.no_grad():
                ct.weight.copy_(w)
                ct.bias.copy_(b)
    return ScoringGraph(ae, stats).eval()


@dataclass
class ExportReport:
    """What an export wrote and measured."""

    path: Path
    meta: ModelMetadata
    size_bytes: int
    parity_max_diff: dict[str, float]
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)


def versions() -> dict[str, str]:
    try:
        own = importlib_metadata.version("edgewatch")
    except importlib_metadata.PackageNotFoundError:
        own = "0+unknown"
    return {
        "edgewatch": own,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "opset": str(OPSET),
    }


EXPORTERS = ("auto", "torchscript", "dynamo")


def _torch_to_onnx(
    graph: nn.Module, window: int, n_channels: int, path: Path, exporter: str = "auto"
) -> None:
    """Trace ``graph`` to ONNX. ``auto``: the TorchScript exporter (fast, ~0.1 s; deprecated in torch 2.9+),
    falling back to the dynamo exporter (needs onnxscript; several seconds) when it is unavailable."""
    if exporter not in EXPORTERS:
        raise ExportError(f"exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    graph = graph.eval()
    example = torch.zeros(2, window, n_channels)
    common = {"input_names": [INPUT_NAME], "output_names": list(OUTPUT_NAMES), "opset_version": OPSET}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter in ("auto", "torchscript"):
            try:
                torch.onnx.export(
                    graph,
                    (example,),
                    str(path),
                    dynamo=False,
                    dynamic_axes={INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in OUTPUT_NAMES}},
                    **common,
                )
                return
            except Exception as exc:  # noqa: BLE001 - fall back to the other exporter
                if exporter == "torchscript":
                    raise ExportError(f"TorchScript ONNX export failed: {exc}") from exc
                log.info("TorchScript exporter unavailable (%s); using dynamo", exc)
        batch = torch.export.Dim("batch", min=1)
        torch.onnx.export(
            graph, (example,), str(path), dynamo=True, dynamic_shapes=({0: batch},), verbose=False, **common
        )


def _fix_output_shapes(model: onnx.ModelProto, window: int, n_channels: int) -> None:
    """Declare the contract's static output dims (the exporter may leave W symbolic)."""
    dims = {
        OUTPUT_SCORE: ["batch"],
        OUTPUT_CHANNEL_ERROR: ["batch", n_channels],
        OUTPUT_RECONSTRUCTION: ["batch", window, n_channels],
    }
    for vi in [*model.graph.input, *model.graph.output]:
        want = dims.get(vi.name, ["batch", window, n_channels])
        shape = vi.type.tensor_type.shape
        del shape.dim[:]
        for d in want:
            dim = shape.dim.add()
            if isinstance(d, str):
                dim.dim_param = d
            else:
                dim.dim_value = d


def _content_id(model: onnx.ModelProto, meta: ModelMetadata) -> str:
    h = hashlib.sha256(model.graph.SerializeToString(deterministic=True))
    core = {k: getattr(meta, k) for k in ("channels", "window", "hop", "precision")}
    core["threshold"], core["normalisation"] = asdict(meta.threshold), asdict(meta.normalisation)
    core["scoring"] = meta.scoring
    h.update(json.dumps(core, sort_keys=True).encode())
    return h.hexdigest()[:16]


def write_metadata(model: onnx.ModelProto, meta: ModelMetadata) -> ModelMetadata:
    """Stamp ``meta`` (model_id = content hash, created, versions) into ``model.metadata_props``."""
    meta = replace(meta, versions={**versions(), **meta.versions})
    meta.model_id = _content_id(model, meta)
    meta.created = meta.created or datetime.now(timezone.utc).isoformat(timespec="seconds")
    meta.validate()
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta.to_json()
    return meta


def ort_session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run_onnx(
    path_or_session: Path | ort.InferenceSession, windows: np.ndarray, batch: int = 1024
) -> dict[str, np.ndarray]:
    """Run the model on raw windows (N, W, C); returns the three outputs by name."""
    sess = (
        path_or_session if isinstance(path_or_session, ort.InferenceSession) else ort_session(path_or_session)
    )
    outs: dict[str, list[np.ndarray]] = {n: [] for n in OUTPUT_NAMES}
    x = np.ascontiguousarray(windows, dtype=np.float32)
    for i in range(0, len(x), batch):
        res = sess.run(list(OUTPUT_NAMES), {INPUT_NAME: x[i : i + batch]})
        for n, r in zip(OUTPUT_NAMES, res, strict=True):
            outs[n].append(r)
    return {n: np.concatenate(v) if v else np.zeros(0, np.float32) for n, v in outs.items()}


def _parity(graph: ScoringGraph, path: Path, holdout: np.ndarray) -> dict[str, float]:
    with torch.no_grad():
        ref = [t.numpy() for t in graph(torch.from_numpy(holdout))]
    got = run_onnx(path, holdout)
    std = graph.std_c.numpy().reshape(1, 1, -1)
    mean = graph.mean_c.numpy().reshape(1, 1, -1)
    diffs: dict[str, float] = {}
    worst: list[str] = []
    for name, r in zip(OUTPUT_NAMES, ref, strict=True):
        g = got[name]
        if name == OUTPUT_RECONSTRUCTION:  # compare in normalised units
            r, g = (r - mean) / std, (g - mean) / std
        diff = np.abs(g.astype(np.float64) - r)
        diffs[name] = float(diff.max()) if diff.size else 0.0
        if np.any(diff > PARITY_ATOL + PARITY_RTOL * np.abs(r)):
            worst.append(f"{name} max diff {diffs[name]:.3g}")
    if worst:
        raise ExportError(
            f"{path}: onnxruntime disagrees with torch beyond atol {PARITY_ATOL} + rtol {PARITY_RTOL}: "
            + "; ".join(worst)
        )
    return diffs


def score_drift(ref: np.ndarray, got: np.ndarray, threshold: float) -> dict[str, float]:
    """Score drift of a variant's scores ``got`` (N,) against fp32 ``ref`` (N,)."""
    rel = np.abs(got - ref) / np.maximum(np.abs(ref), 1e-12)
    flips = np.mean((got > threshold) != (ref > threshold)) if ref.size else 0.0
    return {
        "max_abs": float(np.max(np.abs(got - ref))),
        "max_rel": float(rel.max()),
        "mean_rel": float(rel.mean()),
        "decision_flips": float(flips),
        "n_windows": int(ref.size),
    }


def _quantize_int8(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)


def _convert_fp16(src: Path, dst: Path) -> None:
    """fp16 weights and activations inside; the ``window`` input and the outputs stay float32."""
    from onnx import helper

    model = onnx.load(str(src))
    g = model.graph
    for init in g.initializer:
        if init.data_type == onnx.TensorProto.FLOAT:
            arr = onnx.numpy_helper.to_array(init).astype(np.float16)
            init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
    for node in g.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value" and a.t.data_type == onnx.TensorProto.FLOAT:
                    a.t.CopyFrom(
                        onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(a.t).astype(np.float16))
                    )
        if node.op_type == "Cast":
            for a in node.attribute:
                if a.name == "to" and a.i == onnx.TensorProto.FLOAT:
                    a.i = onnx.TensorProto.FLOAT16
    in_name = g.input[0].name
    cast_in = helper.make_node("Cast", [in_name], [in_name + "_fp16"], to=onnx.TensorProto.FLOAT16)
    for node in g.node:
        node.input[:] = [in_name + "_fp16" if i == in_name else i for i in node.input]
    casts_out = []
    for out in g.output:
        for node in g.node:
            node.output[:] = [out.name + "_fp16" if o == out.name else o for o in node.output]
            node.input[:] = [out.name + "_fp16" if i == out.name else i for i in node.input]
        casts_out.append(
            helper.make_node("Cast", [out.name + "_fp16"], [out.name], to=onnx.TensorProto.FLOAT)
        )
    nodes = [cast_in, *g.node, *casts_out]
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]
    onnx.save(model, str(dst))


def export_model(
    ae: nn.Module,
    meta: ModelMetadata,
    out: Path,
    holdout: np.ndarray,
    quantize: str | None = None,
    fp16: bool = False,
    exporter: str = "auto",
) -> ExportReport:
    """Export ``ae`` with ``meta``'s normalisation and scoring constants (all 1 when it has none) to ``out``, check it, and write requested variants.

    Nothing is written at ``out`` unless every check passes (the file is made beside it and renamed into place), so
    a failed export never replaces a good model there (a deploy script or a daemon's hot reload would take it).
    ``holdout``: raw windows (N, W, C) float32 not used for training, for the parity check.
    Variants go next to ``out`` as ``<stem>.int8.onnx`` / ``<stem>.fp16.onnx``.
    ``exporter``: ``auto`` | ``torchscript`` | ``dynamo`` (see :func:`_torch_to_onnx`).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if quantize not in (None, "int8"):
        raise ExportError(f"--quantize supports only int8, got {quantize!r}")
    holdout = np.ascontiguousarray(holdout[:512], dtype=np.float32)
    if holdout.size == 0:
        raise ExportError("no held-out windows for the parity check")
    if not meta.scoring:  # a caller without fitted references (benchmarks' untrained models): every one 1
        c = meta.n_channels
        meta = replace(meta, scoring={k: [1.0] * c for k in ("weight", "ae_ref", "level_scale", "level_ref")})
    stats = stats_from_metadata(meta)
    graph = ScoringGraph(ae.eval(), stats).eval()
    tmp, staged = out.with_name(out.name + ".tmp"), out.with_name(out.name + ".partial")
    written: list[Path] = []
    try:
        report = _export_checked(graph, meta, holdout, exporter, tmp, staged, out, quantize, fp16, written)
        os.replace(staged, out)
        for part in written:  # the checked variants into place: <stem>.int8.onnx from <stem>.int8.onnx.partial
            os.replace(part, part.with_name(part.name[: -len(".partial")]))
        written.clear()
    except BaseException:
        for p in (tmp, staged, *written):
            p.unlink(missing_ok=True)
        raise
    return report


def _export_checked(graph: ScoringGraph, meta: ModelMetadata, holdout: np.ndarray, exporter: str, tmp: Path,
                    staged: Path, out: Path, quantize: str | None, fp16: bool, written: list[Path]) -> ExportReport:
    """:func:`export_model`'s work, the model written to ``staged`` (renamed to ``out`` by the caller once this
    returns); the variants it writes beside it (``<stem>.<kind>.onnx.partial``, renamed by the caller) are listed in
    ``written``."""
    layout = ScoringGraph(graph.ae, graph.stats, fast=True).eval() if supports_fast_layout(graph.ae) else graph
    _torch_to_onnx(layout, meta.window, meta.n_channels, tmp, exporter)  # checked against ``graph`` below
    model = onnx.load(str(tmp))
    _fix_output_shapes(model, meta.window, meta.n_channels)
    meta = write_metadata(model, replace(meta, precision="fp32"))
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(staged))
    tmp.unlink()
    diffs = _parity(graph, staged, holdout)
    log.info("exported %s (parity max diff %s)", out, diffs)
    report = ExportReport(path=out, meta=meta, size_bytes=staged.stat().st_size, parity_max_diff=diffs)
    ref = run_onnx(staged, holdout)[OUTPUT_SCORE]
    for kind, enabled, make in (("int8", quantize == "int8", _quantize_int8), ("fp16", fp16, _convert_fp16)):
        if not enabled:
            continue
        vpath = out.with_name(f"{out.stem}.{kind}.onnx")
        part = vpath.with_name(vpath.name + ".partial")  # a variant already there stays until this one passes
        written.append(part)
        try:
            make(staged, part)
            vmodel = onnx.load(str(part))
            vmeta = write_metadata(vmodel, replace(meta, precision=kind, model_id="", created=""))
            onnx.checker.check_model(vmodel)
            onnx.save(vmodel, str(part))
            got = run_onnx(part, holdout)[OUTPUT_SCORE]
        except Exception as exc:  # noqa: BLE001 - any failure of an optional variant is reported, not fatal
            raise ExportError(f"{vpath}: {kind} variant failed: {type(exc).__name__}: {exc}") from exc
        drift = score_drift(ref, got, meta.threshold.value)
        report.variants[kind] = {
            "path": str(vpath),
            "model_id": vmeta.model_id,
            "size_bytes": part.stat().st_size,
            "score_drift": drift,
        }
    return report


__all__ = [
    "ExportError",
    "ExportReport",
    "OUTPUT_CHANNEL_ERROR",
    "ScoreStats",
    "ScoringGraph",
    "fast_layout",
    "stats_from_metadata",
    "SubPixelConvTranspose1d",
    "scoring_graph_from_onnx",
    "describe_model",
    "export_model",
    "read_metadata",
    "run_onnx",
]
