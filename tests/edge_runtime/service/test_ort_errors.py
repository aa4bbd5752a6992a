"""onnxruntime's own failures, raised for real, read as one reason a user can act on."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest

from edge_runtime.service.model import NotOnnxError, open_session
from edge_runtime.service.ort_errors import ort_reason


def _failure(model: bytes | str) -> BaseException:
    with pytest.raises(Exception) as exc:  # noqa: PT011 - onnxruntime's own exception types
        ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return exc.value


def test_junk_and_truncated_files_say_so_without_onnxruntimes_codes(demo_model_path: Path) -> None:
    truncated = demo_model_path.read_bytes()[:5000]
    for failure in (_failure(b"junk\n"), _failure(truncated)):
        assert "[ONNXRuntimeError]" in str(failure)  # what onnxruntime says ...
        assert ort_reason(failure) == "not an ONNX file, or a truncated one (its bytes do not parse)"  # ... and we
    with pytest.raises(NotOnnxError, match=r"^not a loadable ONNX model: not an ONNX file, or a truncated one"):
        open_session(truncated)


def test_other_texts_keep_their_detail() -> None:
    assert ort_reason(RuntimeError("[ONNXRuntimeError] : 10 : INVALID_GRAPH : node x: bad\n more")) == \
        "an invalid ONNX graph: node x: bad more"
    assert ort_reason(RuntimeError("[ONNXRuntimeError] : 1 : FAIL : something odd")) == \
        "something odd (onnxruntime FAIL)"
    assert ort_reason(ValueError("plain\nsecond")) == "plain" and ort_reason(ValueError()) == "ValueError"
