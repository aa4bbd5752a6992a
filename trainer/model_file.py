"""An exported model file read without the training stack: its metadata, and its contract in words.

Only ``onnx`` is imported here (no torch), so ``edgewatch-train inspect`` and the readers of a model's
metadata start in about a second; :mod:`trainer.export` writes the files and re-exports these names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx

from edge_runtime.clierror import EXIT_DATAERR
from edge_runtime.contract import METADATA_KEY, ModelMetadata, metadata_from_props
from edge_runtime.pipeline.health import describe as describe_health


class ExportError(RuntimeError):
    """The exported file failed its checks."""

    exit_code = EXIT_DATAERR


def load_onnx(path: Path) -> onnx.ModelProto:
    """The ONNX graph in ``path`` (external data not loaded); a file that is not ONNX is an :class:`ExportError`."""
    if Path(path).is_file() and Path(path).stat().st_size == 0:  # onnx reads an empty file as an empty graph
        raise ExportError(f"{path}: not a loadable ONNX model: the file is empty")
    try:
        return onnx.load(str(path), load_external_data=False)
    except OSError:
        raise
    except Exception as exc:  # onnx raises protobuf's decode errors (and others) for a file that is not ONNX
        raise ExportError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from None


def read_metadata(path: Path) -> ModelMetadata:
    """Read the edgewatch metadata of an ONNX file."""
    model = load_onnx(path)
    return metadata_from_props({p.key: p.value for p in model.metadata_props})


BRIEF_NUMBERS = 16  # inspect prints a list of more numbers (a 52 x 52 matrix) as its shape unless --full


def brief(obj: Any, limit: int = BRIEF_NUMBERS) -> Any:
    """``obj`` (parsed metadata) with each list of more than ``limit`` numbers, or matrix of them, replaced by its
    shape: ``"52 x 52 numbers (inspect --full prints them)"``."""
    if isinstance(obj, dict):
        return {k: brief(v, limit) for k, v in obj.items()}
    if isinstance(obj, list):
        flat = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in obj)
        rows = obj and all(isinstance(r, list) and all(isinstance(v, (int, float)) for v in r) for r in obj)
        if flat and len(obj) > limit:
            return f"{len(obj)} numbers (inspect --full prints them)"
        if rows and sum(len(r) for r in obj) > limit:
            return f"{len(obj)} x {len(obj[0])} numbers (inspect --full prints them)"
        return [brief(v, limit) for v in obj]
    return obj


def describe_model(path: Path, full: bool = False) -> str:
    """Human-readable contract of an ONNX file: inputs, outputs, opset, size, metadata (``full``: every number of
    the metadata; else long lists and matrices as their shape)."""
    path = Path(path)
    model = load_onnx(path)

    def shape(vi: onnx.ValueInfoProto) -> str:
        t = vi.type.tensor_type
        dims = [d.dim_param or str(d.dim_value) for d in t.shape.dim]
        return f"{onnx.TensorProto.DataType.Name(t.elem_type).lower()} [{', '.join(dims)}]"

    lines = [f"file: {path} ({path.stat().st_size} bytes)"]
    lines.append(
        "opset: "
        + ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in model.opset_import)
        + f"; ir_version {model.ir_version}; producer {model.producer_name} {model.producer_version}"
    )
    lines.append("inputs:")
    lines += [f"  {i.name}: {shape(i)}" for i in model.graph.input]
    lines.append("outputs:")
    lines += [f"  {o.name}: {shape(o)}" for o in model.graph.output]
    props = {p.key: p.value for p in model.metadata_props}
    meta = metadata_from_props(props)
    lines.append(f"format_version: {meta.format_version}; window {meta.window}, hop {meta.hop}, "
                 f"threshold {meta.threshold.value:.6g} ({meta.threshold.method})")
    screening = meta.scoring.get("screening", [])
    if screening:
        from trainer.screening import format_screen

        lines.append(f"channels ({sum(bool(s['kept']) for s in screening)} of {len(screening)} in the score):")
        lines.append(format_screen(screening))
        cc = meta.scoring.get("cross_channel")
        if cc:
            lines.append(cross_channel_line(cc))
    else:
        lines.append("channels: no screening recorded (format 1: every channel in the score)")
    lines += describe_health(meta.health, meta.channels)
    if meta.states:
        from trainer.operating import describe_states

        lines.append(describe_states(meta.states))
    lines.append(f"metadata ({METADATA_KEY}):")
    doc = json.loads(meta.to_json())
    lines.append(json.dumps(doc if full else brief(doc), indent=2, sort_keys=True))
    return "\n".join(lines)


def cross_channel_line(cc: dict[str, Any]) -> str:
    """``inspect``'s line for a model's ``scoring.cross_channel``; of a model fitted before the term was on at
    :data:`~trainer.cross_channel.MANY_CHANNELS` channels, with that many and the term off, that a new fit turns it on."""
    from trainer.cross_channel import MANY_CHANNELS, CrossChannel

    n, k, note = int(cc["channels"]), int(cc["components"]), str(cc.get("note", ""))
    before_many = "many_channels" not in cc and n >= MANY_CHANNELS
    return CrossChannel(bool(cc["on"]), k, n, float(cc["unexplained"]), note=note).describe(
        len(cc.get("scored_by_it_alone", [])), len(cc.get("left_out", [])), before_many)
