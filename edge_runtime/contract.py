"""The edgewatch model contract: what one exported ONNX file promises the edge.

Both halves agree on this module and nothing else: the trainer writes it
(``trainer/export.py``), the edge runtime reads and validates it
(``edge_runtime/service/model.py``). It is pure Python (json + dataclasses) so the edge
can import it without the trainer's stack.

Graph contract
--------------
- input  ``window``          float32 ``(batch, W, C)`` in raw sensor units, dynamic batch
- output ``score``           float32 ``(batch,)``  the window's anomaly score (about 1 on normal data)
- output ``channel_error``   float32 ``(batch, C)`` each channel's departure relative to its own normal
  level (format 2: ``scoring`` in the metadata says how; screened-out channels are 0)
- output ``reconstruction``  float32 ``(batch, W, C)`` in raw units

``score == channel_error.mean(axis=1) ** (1 / p)`` holds by construction (``p = scoring.power``, 1 when
absent), so ``top_channels`` (the largest ``channel_error``) names the channel that departs from its own
normal behaviour most.

Format versions: 5 is written for a model with the cross-channel term (``scoring.residual_projection``, below)
and only then, so an edge that would fill a faulty channel by its mean refuses it; 4 (otherwise current) adds ``scoring.power`` p: each kept channel's relative error ``e_c`` enters as
``channel_error_c = weight_c e_c ** p`` and the score is their power mean (one departing channel is not
averaged away by the quiet ones); p = 1 is format 3. 3 scores the window level by a Mahalanobis distance over the kept
channels (``scoring.level_precision``, ``level_t2_ref``; ``channel_error`` is each channel's share);
Optional fields read by any format: ``states`` (operating states: the stopped signature or running
condition and the settling time, :class:`edge_runtime.pipeline.states.StateModel`; absent: every sample is
running). 2 adds ``scoring`` (channel weights, the reason for each, the per-channel
references) and ``preprocessing`` (fill, normalisation); 1 (score = mean squared error in normalised
units) still loads: the edge needs nothing that changed.

Sensor health (``health``, optional)
------------------------------------
One JSON object, written by ``fit`` (:func:`edge_runtime.pipeline.health.learn_limits`); absent or empty in
older models, where the edge checks only the config's limits and fills with its default::

    {"fill": {"method": "ffill", "limit_samples": N},   # a missing value carried forward N samples, then missing
     "stale_after_s": S,                                 # the device sends nothing this long: stale
     "channels": {NAME: {"min": a, "max": b, "margin": m,  # out_of_range outside [a - m, b + m]
                         "flat_tol": t, "max_flat_samples": k,  # stuck: |step| <= t more than k samples in a row
                         "longest_flat_samples": r,     # (information) the longest flat run in training
                         "flat_samples": f}}}           # (information) flat steps in training, all runs

Masked scoring: while channels are left out (missing or stuck; out of range when frozen there, or with
``health.range_excludes``: :func:`edge_runtime.pipeline.health.left_out`), the edge replaces their samples in the
window by the training mean (``normalisation.mean``) before the model runs, and the process score is
``(sum(channel_error[healthy]) / C * n_kept / n_kept_healthy) ** (1 / p)`` (``n_kept``: channels with a
``scoring.weight`` > 0, all in format 1), i.e. the mean share of the healthy kept channels, in the units of
``score`` (:func:`edge_runtime.pipeline.health.renormalised_score`). For a model with the mean fill (formats 1-4), for format 3's Mahalanobis level term
this means: an excluded channel sits at its mean, so its level ``l_j`` is 0 and drops out of every cross
term ``l_c (P l)_c``; the healthy channels' level term is ``l_H^T P_HH l_H``, their distance with the
excluded channel held at its mean (conditional on it, not the marginal distance over H), rescaled by
``n_kept / n_kept_healthy`` like the reconstruction term. The threshold is unchanged.

The cross-channel term (format 5: ``scoring.residual_projection`` M (C, C), ``residual_coef`` (C,),
``cross_only`` (C,), always together): each scored channel's share of what the common factors of the member
channels (those not constant in training) leave unexplained, ``residual_coef_c * mean_W((M z)_c^2)``, is added
to ``e_c``; a ``cross_only`` channel has that term alone. While channels are excluded, the edge fills them with
the factors' least-squares estimate from the healthy channels instead of the mean
(:mod:`edge_runtime.pipeline.factor_fill`), since a channel held at its mean breaks the very pattern the term
scores; the filled level ``l_j`` is then not 0 and enters the healthy channels' level cross terms through
``P_hj`` (the estimate the factors give for it, not the mean). Past
``health.degraded_share`` of the kept channels excluded, a device is ``degraded`` and not scored.

Metadata contract
-----------------
``metadata_props`` holds one entry, key :data:`METADATA_KEY`, whose value is one
JSON document (:class:`ModelMetadata`), with ``format_version`` ==
:data:`FORMAT_VERSION`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from edge_runtime.clierror import EXIT_DATAERR
from edge_runtime.pipeline.factor_fill import residual_projection
from edge_runtime.pipeline.health import HealthError, check_document
from edge_runtime.pipeline.states import StateError, StateModel

FORMAT_VERSION = 4  # what a model without the cross-channel term is written as
CROSS_CHANNEL_FORMAT_VERSION = 5  # a model with it (an older edge would fill a faulty channel by its mean)
READABLE_FORMAT_VERSIONS = (1, 2, 3, 4, 5)  # 1: before channel screening; 2: per-channel level term; 4: scoring.power
# 5: the cross-channel term (scoring.residual_projection)
METADATA_KEY = "edgewatch"

INPUT_NAME = "window"
OUTPUT_SCORE = "score"
OUTPUT_CHANNEL_ERROR = "channel_error"
OUTPUT_RECONSTRUCTION = "reconstruction"
OUTPUT_NAMES = (OUTPUT_SCORE, OUTPUT_CHANNEL_ERROR, OUTPUT_RECONSTRUCTION)

THRESHOLD_METHODS = ("quantile", "pot", "lognormal")

MAX_WINDOW = 100_000  # samples per window; far above any edge model, low enough to bound buffers
MAX_CHANNELS = 4_096


class ContractError(ValueError):
    """The file or document does not satisfy the edgewatch model contract."""

    exit_code = EXIT_DATAERR


@dataclass
class Threshold:
    """The calibrated anomaly threshold on the window score.

    ``method`` is ``"quantile"``, ``"pot"`` (peaks over threshold, SPOT-style) or ``"lognormal"``
    (a log-normal tail fitted to the validation scores, times a margin);
    ``params`` are that method's parameters (e.g. ``{"q": 0.999}``);
    ``validation`` summarises the validation score distribution it was fitted on
    (``n``, ``mean``, ``std``, ``min``, ``p50``, ``p90``, ``p99``, ``max``).
    """

    value: float
    method: str = "quantile"
    params: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, float] = field(default_factory=dict)


@dataclass
class Normalisation:
    """Per-channel statistics fitted on training data only: ``z = (x - mean) / std``."""

    mean: list[float]
    std: list[float]


@dataclass
class ModelMetadata:
    """The JSON document stored in the ONNX file under :data:`METADATA_KEY`."""

    channels: list[str]
    window: int
    hop: int
    threshold: Threshold
    normalisation: Normalisation
    model_id: str = ""
    created: str = ""
    sample_period_s: float | None = None
    precision: str = "fp32"
    architecture: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    scoring: dict[str, Any] = field(default_factory=dict)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    health: dict[str, Any] = field(default_factory=dict)  # sensor-health limits and fill (module docstring)
    states: dict[str, Any] | None = None
    units: dict[str, str] = field(default_factory=dict)  # channel -> unit (``fit --units``); channels without one absent
    format_version: int = FORMAT_VERSION

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ModelMetadata:
        if not isinstance(doc, dict):
            raise ContractError("metadata is not a JSON object")
        version = doc.get("format_version")
        if version not in READABLE_FORMAT_VERSIONS:
            raise ContractError(
                f"unsupported model format_version {version!r} (this edgewatch reads "
                f"{', '.join(map(str, READABLE_FORMAT_VERSIONS))}): re-export it with this edgewatch's "
                "`edgewatch-train fit` (or `edgewatch-train export CHECKPOINT`)"
            )
        try:
            thr = doc["threshold"]
            norm = doc["normalisation"]
            meta = cls(
                channels=[str(c) for c in doc["channels"]],
                window=int(doc["window"]),
                hop=int(doc["hop"]),
                threshold=Threshold(
                    value=float(thr["value"]),
                    method=str(thr.get("method", "quantile")),
                    params=dict(thr.get("params", {})),
                    validation=dict(thr.get("validation", {})),
                ),
                normalisation=Normalisation(
                    mean=[float(v) for v in norm["mean"]], std=[float(v) for v in norm["std"]]
                ),
                model_id=str(doc.get("model_id", "")),
                created=str(doc.get("created", "")),
                sample_period_s=(
                    None if doc.get("sample_period_s") is None else float(doc["sample_period_s"])
                ),
                precision=str(doc.get("precision", "fp32")),
                architecture=dict(doc.get("architecture", {})),
                training=dict(doc.get("training", {})),
                versions={str(k): str(v) for k, v in dict(doc.get("versions", {})).items()},
                scoring=dict(doc.get("scoring", {})),
                preprocessing=dict(doc.get("preprocessing", {})),
                health=_health_field(doc.get("health")),
                states=None if doc.get("states") is None else doc["states"],
                units={str(k): str(v) for k, v in dict(doc.get("units") or {}).items()},
                format_version=int(version),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:  # OverflowError: int(inf), float(10**400)
            raise ContractError(f"metadata is missing or has a malformed field: {exc}") from exc
        meta.validate()
        return meta

    @classmethod
    def from_json(cls, text: str) -> ModelMetadata:
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, int digit limit, deep nesting
            raise ContractError(f"metadata is not valid JSON: {str(exc)[:200]}") from exc
        return cls.from_dict(doc)

    def validate(self) -> None:
        """Raise :class:`ContractError` naming the first field that is wrong."""
        c = len(self.channels)
        if c < 1:
            raise ContractError("channels: at least one channel is required")
        if c > MAX_CHANNELS:
            raise ContractError(f"channels: at most {MAX_CHANNELS} channels, got {c}")
        if len(set(self.channels)) != c:
            raise ContractError("channels: names must be unique")
        if not 2 <= self.window <= MAX_WINDOW:
            raise ContractError(f"window: must be in 2..{MAX_WINDOW}, got {self.window}")
        if not 1 <= self.hop <= self.window:
            raise ContractError(f"hop: must be in 1..window ({self.window}), got {self.hop}")
        if not (math.isfinite(self.threshold.value) and self.threshold.value > 0):
            raise ContractError(f"threshold.value: must be a finite number > 0, got {self.threshold.value}")
        if self.threshold.method not in THRESHOLD_METHODS:
            raise ContractError(
                f"threshold.method: {self.threshold.method!r} is not one of {', '.join(THRESHOLD_METHODS)}"
            )
        if len(self.normalisation.mean) != c or len(self.normalisation.std) != c:
            raise ContractError("normalisation: mean and std need one value per channel")
        if not all(math.isfinite(v) for v in self.normalisation.mean):
            raise ContractError("normalisation.mean: values must be finite")
        if not all(math.isfinite(v) and v > 0 for v in self.normalisation.std):
            raise ContractError("normalisation.std: values must be finite and > 0")
        unknown = sorted(set(self.units) - set(self.channels))
        if unknown:
            raise ContractError(f"units: {unknown[0]!r} is not a channel")
        if any(len(u) > 32 for u in self.units.values()):
            raise ContractError("units: at most 32 characters per unit")
        if self.sample_period_s is not None and not self.sample_period_s > 0:
            raise ContractError("sample_period_s: must be > 0 when given")
        try:
            check_document(self.health, self.channels)
        except HealthError as exc:
            raise ContractError(str(exc)) from None
        if self.states is not None:
            self.state_model()
        self.score_power()
        try:
            residual_projection(self.scoring, len(self.channels))
        except ValueError as exc:
            raise ContractError(str(exc)) from None

    def score_power(self) -> float:
        """``scoring.power`` (1 when absent: formats 1-3); ContractError when it is not a number > 0."""
        p = self.scoring.get("power", 1.0) if isinstance(self.scoring, dict) else 1.0
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not (math.isfinite(p) and p > 0):
            raise ContractError(f"scoring.power: must be a finite number > 0, got {p!r}")
        return float(p)

    def state_model(self) -> StateModel | None:
        """The ``states`` field as an :class:`edge_runtime.pipeline.states.StateModel` (None when absent);
        ContractError when it is malformed."""
        if self.states is None:
            return None
        try:
            model = StateModel.from_dict(self.states)
            model.validate(self.channels)
        except StateError as exc:
            raise ContractError(str(exc)) from None
        return model


def _health_field(doc: Any) -> dict[str, Any]:
    """The ``health`` field as stored: absent or null is empty; anything but an object is refused."""
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ContractError("health: must be a JSON object")
    return dict(doc)


def metadata_from_props(props: dict[str, str]) -> ModelMetadata:
    """Read :class:`ModelMetadata` from an ONNX file's ``metadata_props`` mapping.

    Works with ``onnxruntime.InferenceSession.get_modelmeta().custom_metadata_map``
    as well as with ``{p.key: p.value for p in onnx_model.metadata_props}``.
    """
    if METADATA_KEY not in props:
        raise ContractError(
            f"not an edgewatch model: no '{METADATA_KEY}' entry in the ONNX metadata_props"
        )
    return ModelMetadata.from_json(props[METADATA_KEY])
