"""The onnxruntime session: load and validate an edgewatch model, choose the provider, run a batch.

Provider choice (``auto|cpu|cuda``): ``auto`` tries CUDA then CPU. The provider
reported is ``session.get_providers()[0]``, the one the session really got:
``onnxruntime.get_available_providers()`` lists CUDA in an ``onnxruntime-gpu``
build even where its libraries fail to load. ``cuda`` asked for explicitly and
not obtained is a :class:`ModelError`, never a silent fallback.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import io
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import onnxruntime as ort

from edge_runtime.clierror import EXIT_DATAERR, EXIT_NOINPUT
from edge_runtime.contract import (
    INPUT_NAME,
    OUTPUT_CHANNEL_ERROR,
    OUTPUT_RECONSTRUCTION,
    OUTPUT_SCORE,
    ContractError,
    ModelMetadata,
    metadata_from_props,
)
from edge_runtime.pipeline.pin import Pin, model_family, pin_mismatch
from edge_runtime.service.ort_errors import ort_reason

log = logging.getLogger(__name__)

PROVIDERS = ("auto", "cpu", "cuda")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
MAX_PROBE_VALUES = 1 << 22  # W * C of one window: 16 MiB of float32, bounds the test run's allocation


class ModelError(RuntimeError):
    """The model file cannot be used (missing, too big, not ONNX, not an edgewatch model, no provider)."""

    exit_code = EXIT_DATAERR


class ModelFileError(ModelError):
    """The model file is not there or cannot be read."""

    exit_code = EXIT_NOINPUT


class NotOnnxError(ModelError):
    """onnxruntime cannot load the bytes: not an ONNX file (or a broken one)."""


@dataclass(frozen=True)
class FileSignature:
    """What tells a possibly changed model file (through a symlink: its target): device, inode, modification
    and change times, size. A change is confirmed by the content hash (:func:`file_sha256`)."""

    mtime_ns: int
    size: int
    dev: int = 0
    ino: int = 0
    ctime_ns: int = 0

    @classmethod
    def of(cls, path: Path) -> FileSignature:
        st = os.stat(path)
        return cls(st.st_mtime_ns, st.st_size, st.st_dev, st.st_ino, st.st_ctime_ns)


def file_sha256(path: Path, max_bytes: int) -> str:
    """SHA-256 of the file's first ``max_bytes + 1`` bytes (a file that big is refused by the loader anyway)."""
    h = hashlib.sha256()
    left = max_bytes + 1
    with open(path, "rb") as fh:
        while left > 0:
            chunk = fh.read(min(1 << 20, left))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


class EdgeModel:
    """A loaded, validated model. :meth:`run` scores ``(B, W, C)`` float32 windows."""

    def __init__(
        self,
        session: ort.InferenceSession,
        metadata: ModelMetadata,
        path: Path,
        provider: str,
        provider_reason: str,
        signature: FileSignature,
        sha256: str,
    ) -> None:
        self.session = session
        self.metadata = metadata
        self.path = path
        self.provider = provider
        self.provider_reason = provider_reason
        self.signature = signature
        self.sha256 = sha256
        self._outputs = [OUTPUT_SCORE, OUTPUT_CHANNEL_ERROR]
        self.has_reconstruction = OUTPUT_RECONSTRUCTION in {o.name for o in session.get_outputs()}

    @property
    def window(self) -> int:
        return self.metadata.window

    @property
    def n_channels(self) -> int:
        return self.metadata.n_channels

    @property
    def model_id(self) -> str:
        return self.metadata.model_id or self.sha256[:12]

    @property
    def threshold(self) -> float:
        return self.metadata.threshold.value

    def run(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Score a batch. ``windows``: (B, W, C) float32 -> ``score`` (B,), ``channel_error`` (B, C)."""
        score, ce = self.session.run(self._outputs, {INPUT_NAME: windows})
        return score, ce

    def reconstruct(self, windows: np.ndarray) -> np.ndarray | None:
        """The model's ``reconstruction`` (B, W, C) raw units of ``windows`` (B, W, C), or None when the model
        has no such output. Asked only for windows that raise or update an alert (it costs a second run)."""
        if not self.has_reconstruction:
            return None
        (recon,) = self.session.run([OUTPUT_RECONSTRUCTION], {INPUT_NAME: windows})
        return np.asarray(recon)


def _session_options(intra_op_threads: int, quiet: bool) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.intra_op_num_threads = intra_op_threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # An idle daemon should use no CPU: worker threads sleep instead of spinning.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if quiet:
        so.log_severity_level = 4  # the auto probe's CUDA failure is explained by our own log line
    return so


def cuda_load_error() -> str:
    """Why the CUDA provider library cannot load here (e.g. ``libcublasLt.so.12: cannot open ...``), or ''."""
    capi = Path(ort.__file__).parent / "capi"
    libs = sorted(capi.glob("libonnxruntime_providers_cuda*")) + sorted(
        capi.glob("onnxruntime_providers_cuda*.dll")
    )
    if not libs:
        return "the CUDA provider library is not in this onnxruntime build"
    try:
        ctypes.CDLL(str(libs[0]))
    except OSError as exc:
        return str(exc).split(": ", 1)[-1] if ": " in str(exc) else str(exc)
    return ""


_preloaded = False


def preload_cuda_libraries() -> None:
    """Once per process: ``ort.preload_dlls()``, so CUDA/cuDNN installed as pip packages are found.

    ``pip install 'onnxruntime-gpu[cuda,cudnn]'`` puts them under ``site-packages/nvidia/``, where the
    dynamic loader does not look. preload_dlls prints its failures: they are captured and logged at
    DEBUG (the CUDA session's own outcome is what gets reported), and it never raises here.
    """
    global _preloaded
    if _preloaded or not hasattr(ort, "preload_dlls"):
        return
    _preloaded = True
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            ort.preload_dlls()
    except Exception as exc:  # noqa: BLE001 - a failed preload leaves CUDA to fail (and be explained) later
        log.debug("onnxruntime.preload_dlls failed: %s: %s", type(exc).__name__, exc)
    if buf.getvalue().strip():
        log.debug("onnxruntime.preload_dlls: %s", buf.getvalue().strip())


def _create(model_bytes: bytes, providers: list[str], threads: int, quiet: bool) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(
            model_bytes, sess_options=_session_options(threads, quiet), providers=providers
        )
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        raise NotOnnxError(f"not a loadable ONNX model: {ort_reason(exc)}") from None


def open_session(
    model_bytes: bytes, provider: str = "auto", intra_op_threads: int = 1
) -> tuple[ort.InferenceSession, str, str]:
    """Create a session on the requested provider; return (session, provider got, why)."""
    if provider not in PROVIDERS:
        raise ModelError(f"provider must be one of {', '.join(PROVIDERS)}, got {provider!r}")
    available = ort.get_available_providers()
    if provider == "cpu":
        sess = _create(model_bytes, [CPU], intra_op_threads, False)
        return sess, sess.get_providers()[0], "CPU requested"
    if CUDA not in available:
        why = f"CUDA {'requested' if provider == 'cuda' else 'tried'}, but this onnxruntime build has no CUDA provider (install onnxruntime-gpu)"
        if provider == "cuda":
            raise ModelError(why)
        sess = _create(model_bytes, [CPU], intra_op_threads, False)
        return sess, sess.get_providers()[0], why + ", running on CPU"
    preload_cuda_libraries()
    sess = _create(model_bytes, [CUDA, CPU], intra_op_threads, provider == "auto")
    got = sess.get_providers()[0]
    if got == CUDA:
        return sess, got, f"CUDA {'requested' if provider == 'cuda' else 'available'}, running on CUDA"
    detail = cuda_load_error() or "the CUDA provider failed to initialise"
    if provider == "cuda":
        raise ModelError(f"CUDA requested but unavailable: {detail}")
    return sess, got, f"CUDA tried, {detail}, running on CPU"


def _check_io(sess: ort.InferenceSession, meta: ModelMetadata) -> None:
    inputs = sess.get_inputs()
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
        raise ModelError(f"the model must have one input named '{INPUT_NAME}', has {[i.name for i in inputs]}")
    inp = inputs[0]
    if inp.type != "tensor(float)":
        raise ModelError(f"input '{INPUT_NAME}' must be float32, is {inp.type}")
    want = (None, meta.window, meta.n_channels)
    if len(inp.shape) != 3 or any(
        isinstance(d, int) and w is not None and d != w for d, w in zip(inp.shape, want, strict=True)
    ):
        raise ModelError(f"input '{INPUT_NAME}' shape {inp.shape} does not fit (batch, {meta.window}, {meta.n_channels})")
    outs = {o.name for o in sess.get_outputs()}
    for name in (OUTPUT_SCORE, OUTPUT_CHANNEL_ERROR):
        if name not in outs:
            raise ModelError(f"the model has no '{name}' output")


def _read_at_most(fh: BinaryIO, limit: int, chunk: int = 1 << 20) -> bytes:
    """Up to ``limit`` bytes of ``fh``, read a MiB at a time (``fh.read(limit)`` would allocate ``limit`` bytes
    first: 256 MiB on every model load and hot reload, whatever the model's size)."""
    parts: list[bytes] = []
    n = 0
    while n < limit:
        part = fh.read(min(chunk, limit - n))
        if not part:
            break
        parts.append(part)
        n += len(part)
    return b"".join(parts)


def load_model(
    path: str | os.PathLike,
    provider: str = "auto",
    intra_op_threads: int = 1,
    max_bytes: int = 256 << 20,
) -> EdgeModel:
    """Load ``path``, validate size, contract metadata, input/output names and shapes, and a test run."""
    p = Path(path)
    try:
        sig = FileSignature.of(p)
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {p}: {exc.strerror or exc}") from None
    if sig.size > max_bytes:
        raise ModelError(f"model file {p} is {sig.size} bytes, more than max_model_bytes {max_bytes}")
    try:
        with open(p, "rb") as fh:  # at most max_bytes + 1: a file growing after the stat cannot slip past
            data = _read_at_most(fh, max_bytes + 1)
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {p}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise ModelError(f"model file {p} grew to more than max_model_bytes {max_bytes} while being read")
    if not data:
        raise NotOnnxError(f"{p}: not a loadable ONNX model: the file is empty")
    try:  # the file's name in front of what is wrong with it (not of a provider's failure)
        sess, got, why = open_session(data, provider, intra_op_threads)
    except NotOnnxError as exc:
        raise NotOnnxError(f"{p}: {exc}") from None
    try:
        meta = metadata_from_props(dict(sess.get_modelmeta().custom_metadata_map))
        _check_io(sess, meta)
    except (ContractError, ModelError) as exc:
        raise ModelError(f"{p}: {exc}") from None
    model = EdgeModel(sess, meta, p, got, why, sig, hashlib.sha256(data).hexdigest())
    if meta.window * meta.n_channels > MAX_PROBE_VALUES:
        raise ModelError(
            f"{p}: window {meta.window} x {meta.n_channels} channels is more than {MAX_PROBE_VALUES} values per window"
        )
    probe = np.zeros((2, meta.window, meta.n_channels), dtype=np.float32)
    for i, m in enumerate(meta.normalisation.mean):
        probe[:, :, i] = m
    try:
        score, ce = model.run(probe)
    except Exception as exc:  # a graph that loads but cannot run a contract-shaped batch
        raise ModelError(f"{p}: test run failed: {str(exc).splitlines()[0][:200]}") from None
    if score.shape != (2,) or ce.shape != (2, meta.n_channels):
        raise ModelError(
            f"{p}: outputs have shapes {score.shape} and {ce.shape}, expected (2,) and (2, {meta.n_channels})"
        )
    if not (np.isfinite(score).all() and np.isfinite(ce).all()):
        raise ModelError(f"{p}: test run gave non-finite outputs (NaN or inf) for a window at the training mean")
    return model


class PinError(ModelError):
    """The model is valid but breaks the gateway's pin (``[model] channels``, ``window``, ``family``)."""


def check_pin(model: EdgeModel, pin: Pin) -> None:
    """Raise :class:`PinError` (one line naming the difference) when ``model`` does not fit ``pin``."""
    meta = model.metadata
    why = pin_mismatch(pin, meta.channels, meta.window, model_family(meta.architecture))
    if why:
        raise PinError(f"{model.path} (model {model.model_id}): {why}")


def benchmark(model: EdgeModel, batch: int = 64, repeats: int = 20, seed: int = 0) -> list[float]:
    """Run a random ``(batch, W, C)`` batch ``repeats`` times; return each run's seconds."""
    rng = np.random.default_rng(seed)
    mean = np.asarray(model.metadata.normalisation.mean, dtype=np.float32)
    std = np.asarray(model.metadata.normalisation.std, dtype=np.float32)
    x = (mean + std * rng.standard_normal((batch, model.window, model.n_channels))).astype(np.float32)
    model.run(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.run(x)
        times.append(time.perf_counter() - t0)
    return times
