"""onnxruntime's exception text (``[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from m.onnx failed:...``)
as one reason a user can act on. Pure: no onnxruntime import."""

from __future__ import annotations

import re

_PREFIX = re.compile(r"^\s*\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*([A-Z_]+)\s*:\s*(.*)$", re.S)
_REASONS = {
    "INVALID_PROTOBUF": "not an ONNX file, or a truncated one (its bytes do not parse)",
    "NO_SUCHFILE": "no such file",
    "NOT_IMPLEMENTED": "it uses an operator or opset this onnxruntime does not implement (export it again with "
                       "this edgewatch, or upgrade onnxruntime)",
    "INVALID_GRAPH": "an invalid ONNX graph",
    "MODEL_LOADED": "the model could not be loaded",
}


def ort_reason(exc: BaseException) -> str:
    """One line for a failed ``InferenceSession``: a known onnxruntime status as what it means (its own detail
    after it, shortened, where that adds something), anything else as its first line."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    m = _PREFIX.match(text)
    if m is None:
        return text.splitlines()[0][:300]
    status, detail = m.group(1), " ".join(m.group(2).split())
    reason = _REASONS.get(status)
    if reason is None:
        return f"{detail[:300]} (onnxruntime {status})"
    if status in ("INVALID_PROTOBUF", "NO_SUCHFILE"):
        return reason
    return f"{reason}: {detail[:240]}"
