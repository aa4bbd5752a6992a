"""Model loading: validation, clear errors, provider choice and the CUDA fallback on a CPU-only build."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edge_runtime.contract import METADATA_KEY
from edge_runtime.service import model as model_mod
from edge_runtime.service.model import CUDA, ModelError, load_model, open_session
from tests.edge_runtime.onnx_models import (
    build_model,
    make_metadata,
    reference_scores,
    series,
    sliding_windows,
    write_foreign_model,
    write_model,
)

CPU_ONLY = "CUDAExecutionProvider" not in ort.get_available_providers()


def test_loads_and_scores_like_the_reference(tmp_path: Path) -> None:
    m = load_model(write_model(tmp_path / "m.onnx", threshold=0.5))
    assert (m.window, m.n_channels, m.threshold, m.model_id) == (16, 4, 0.5, "test-model-1")
    w = sliding_windows(series(200), 16, 4)
    score, ce = m.run(w)
    want_s, want_ce = reference_scores(w, m.metadata)
    np.testing.assert_allclose(score, want_s, atol=1e-5)
    np.testing.assert_allclose(ce, want_ce, atol=1e-5)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b"\x00garbage" * 100), "not a loadable ONNX model"),
        (lambda p: p.write_bytes(b""), "not a loadable ONNX model: the file is empty"),
        (lambda p: p.write_text("hello, I am not a model\n"), "not a loadable ONNX model"),
        (lambda p: write_foreign_model(p), "not an edgewatch model"),
        (lambda p: None, "cannot read model file"),
    ],
)
def test_bad_files_get_clear_errors_naming_the_file(tmp_path: Path, make, message: str) -> None:
    p = tmp_path / "bad.onnx"
    make(p)
    with pytest.raises(ModelError, match=message) as exc:
        load_model(p)
    assert str(p) in str(exc.value)


def _with_props(tmp_path: Path, doc: dict) -> Path:
    model = build_model(make_metadata())
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(doc)})
    p = tmp_path / "p.onnx"
    onnx.save(model, p)
    return p


def test_wrong_format_version_refused(tmp_path: Path) -> None:
    doc = json.loads(make_metadata().to_json())
    doc["format_version"] = 99
    with pytest.raises(ModelError, match="format_version"):
        load_model(_with_props(tmp_path, doc))


def test_metadata_disagreeing_with_graph_shape_refused(tmp_path: Path) -> None:
    doc = json.loads(make_metadata(window=32).to_json())
    with pytest.raises(ModelError, match="does not fit"):
        load_model(_with_props(tmp_path, doc))


def test_size_limit(tmp_path: Path) -> None:
    p = write_model(tmp_path / "m.onnx")
    with pytest.raises(ModelError, match="max_model_bytes"):
        load_model(p, max_bytes=100)


def test_a_model_is_read_without_allocating_the_size_limit(tmp_path: Path) -> None:
    """Reading is bounded by max_bytes without allocating it (a one-shot read(max_bytes + 1) allocated 256 MiB on
    every load and hot reload); a file growing past the limit while read is still refused."""
    import io
    import tracemalloc

    from edge_runtime.service.model import _read_at_most

    p = write_model(tmp_path / "m.onnx")
    tracemalloc.start()
    try:
        load_model(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20, peak
    data = bytes(range(256)) * 20_000  # 5 MB
    assert _read_at_most(io.BytesIO(data), 10**9, chunk=4096) == data
    assert _read_at_most(io.BytesIO(data), 1001, chunk=100) == data[:1001]


@pytest.mark.skipif(not CPU_ONLY, reason="needs the CPU-only onnxruntime build")
def test_auto_falls_back_to_cpu_and_says_why(tmp_path: Path) -> None:
    m = load_model(write_model(tmp_path / "m.onnx"), provider="auto")
    assert m.provider == "CPUExecutionProvider"
    assert "CUDA" in m.provider_reason and "running on CPU" in m.provider_reason


@pytest.mark.skipif(not CPU_ONLY, reason="needs the CPU-only onnxruntime build")
def test_explicit_cuda_unavailable_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="CUDA requested"):
        load_model(write_model(tmp_path / "m.onnx"), provider="cuda")


def _cuda_really_loads() -> bool:
    """Does a CUDA session really run here (onnxruntime-gpu, its libraries and a GPU)?"""
    try:
        return open_session(build_model(make_metadata()).SerializeToString(), "cuda")[1] == CUDA
    except ModelError:
        return False


CUDA_REAL = CUDA in ort.get_available_providers() and _cuda_really_loads()


@pytest.mark.skipif(CUDA_REAL, reason="CUDA really loads here: the fallback cannot be shown")
@pytest.mark.filterwarnings("ignore:Specified provider")
def test_cuda_listed_but_not_loading_falls_back(tmp_path: Path, monkeypatch) -> None:
    """onnxruntime-gpu on a machine without CUDA libs: CUDA is listed, the session runs on CPU."""
    data = build_model(make_metadata()).SerializeToString()
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, "CPUExecutionProvider"])
    sess, got, why = open_session(data, "auto")
    assert got == "CPUExecutionProvider" and sess.get_providers()[0] == got
    assert why.startswith("CUDA tried") and why.endswith("running on CPU")
    with pytest.raises(ModelError, match="CUDA requested but unavailable"):
        open_session(data, "cuda")


@pytest.mark.skipif(CUDA_REAL, reason="CUDA really loads here: the fallback cannot be shown")
@pytest.mark.filterwarnings("ignore:Specified provider")
def test_preload_dlls_is_quiet_and_cannot_break_the_cpu_fallback(monkeypatch, capsys, caplog) -> None:
    """preload_dlls runs once before the CUDA session; what it prints and raises goes to the DEBUG log only."""
    calls: list[int] = []

    def fake_preload() -> None:
        calls.append(1)
        print("Failed to load libcudnn.so.9: cannot open shared object file")
        raise RuntimeError("Invalid parameter of directory=None")

    data = build_model(make_metadata()).SerializeToString()
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "preload_dlls", fake_preload, raising=False)
    monkeypatch.setattr(model_mod, "_preloaded", False)
    with caplog.at_level(logging.DEBUG, logger="edge_runtime.service.model"):
        sess, got, _ = open_session(data, "auto")
        open_session(data, "auto")
    assert got == "CPUExecutionProvider" and sess.get_providers()[0] == got
    assert calls == [1]  # once per process
    out = capsys.readouterr()
    assert out.out == "" and "libcudnn" not in out.err
    assert "libcudnn.so.9" in caplog.text and "Invalid parameter" in caplog.text


def test_unknown_provider(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="provider must be one of"):
        load_model(write_model(tmp_path / "m.onnx"), provider="tpu")
