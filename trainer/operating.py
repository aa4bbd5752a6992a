"""Operating states in ``fit``: which rows run (a status column or a condition), the learned state model, and
the settled running stretches that training and calibration use (:mod:`edge_runtime.pipeline.states`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_runtime.pipeline.states import (
    Condition,
    StateError,
    StateModel,
    learn_many,
    running_from_column,
    runs,
    settled,
)
from trainer.data import DataError, Series, gaps_within, usage_error

log = logging.getLogger(__name__)

MIN_STRETCH = 8  # running stretches shorter than this many rows are not trained on (no window fits)


@dataclass(frozen=True)
class StateSpec:
    """How ``fit`` tells running rows: ``column`` with its ``running`` values, or a ``condition``."""

    column: str | None = None
    running: tuple[str, ...] = ()
    condition: Condition | None = None

    @classmethod
    def of(cls, column: str | None, running: Sequence[str], condition: str | None) -> StateSpec | None:
        """From the CLI's options (None when none is given); DataError (exit code 2) for a half-given or mixed one."""
        if condition and column:
            raise usage_error("--running-when and --state-column exclude each other: give one")
        if column and not running:
            raise usage_error(f"--state-column {column!r} needs --running VALUE (the state(s) in which the machine runs)")
        if running and not column:
            raise usage_error("--running needs --state-column (the column holding the states)")
        if condition:
            try:
                return cls(condition=Condition.parse(condition))
            except StateError as exc:
                raise usage_error(str(exc)) from None
        return cls(column, tuple(running)) if column else None

    def source(self) -> str:
        if self.condition is not None:
            return f"condition {self.condition.text()}"
        return f"column {self.column} in {'|'.join(self.running)}"

    def running_rows(self, s: Series) -> np.ndarray:
        """(T,) bool: the rows of ``s`` in which the machine runs."""
        if self.condition is not None:
            if self.condition.channel not in s.channels:
                raise DataError(f"--running-when: {self.condition.channel!r} is not a feature column of {s.name}; "
                                f"channels: {', '.join(s.channels)}")
            return self.condition.holds(s.values[:, s.channels.index(self.condition.channel)])
        if s.states is None:
            raise DataError(f"{s.name}: --state-column {self.column!r} not found")
        return running_from_column(s.states, self.running)


@dataclass
class RunningData:
    """What ``fit`` trains on with operating states: the learned model and the settled running stretches."""

    model: StateModel
    train: list[Series] = field(default_factory=list)
    val: list[Series] = field(default_factory=list)
    by_file: tuple[list[np.ndarray], list[np.ndarray]] = field(default_factory=lambda: ([], []))

    def screening_arrays(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Each file's running training and validation rows (unlabelled), paired, for the channel screening."""
        return self.by_file


def learn_states(spec: StateSpec, series: Sequence[Series]) -> StateModel:
    """The :class:`StateModel` of every file's rows (DataError when nothing runs)."""
    channels = series[0].channels
    masks = [spec.running_rows(s) for s in series]
    try:
        model = learn_many([s.values for s in series], masks, channels, spec.source(), spec.condition)
    except StateError as exc:
        raise DataError(str(exc)) from None
    if spec.column:
        model.learned["running_values"] = list(spec.running)  # evaluate compares with the column
    if not model.stop_channels and model.condition is None and model.learned.get("stopped_rows"):
        log.warning("the stopped rows cannot be told from the channels (every channel's stopped values overlap its "
                    "running ones): the edge will score every sample; use --running-when with a channel that tells")
    return model


def running_stretches(spec: StateSpec, model: StateModel, parts: Sequence[Series]
                      ) -> tuple[list[Series], list[np.ndarray]]:
    """The settled running stretches (at least :data:`MIN_STRETCH` rows) of each part, as Series, and each part's
    settled running, unlabelled rows (T_i, C)."""
    out, rows = [], []
    for s in parts:
        keep = settled(spec.running_rows(s), model.settle_samples)
        rows.append(s.values[keep if s.labels is None else keep & (s.labels == 0)])
        for a, b in runs(keep):
            if b - a >= MIN_STRETCH:
                out.append(Series(f"{s.name}[{a}:{b}]", s.values[a:b], s.channels,
                                  None if s.labels is None else s.labels[a:b], s.sample_period_s,
                                  gaps=gaps_within(s.gaps, a, b)))
    return out, rows


def running_data(spec: StateSpec, series: Sequence[Series], train_s: Sequence[Series], val_s: Sequence[Series]
                 ) -> RunningData:
    """Learn on ``series``; cut the (already split) training and validation parts to their settled running rows."""
    model = learn_states(spec, series)
    (train, tr_rows), (val, va_rows) = running_stretches(spec, model, train_s), running_stretches(spec, model, val_s)
    if not train or not val:
        raise DataError(f"too few running rows ({spec.source()}): no running stretch of {MIN_STRETCH}+ rows in the "
                        f"{'training' if not train else 'validation'} part")
    return RunningData(model, train, val, (tr_rows, va_rows))


def describe_states(doc: dict[str, Any]) -> str:
    """One line on the learned operating states (pure formatting of the ``states`` metadata)."""
    ln = doc.get("learned", {})
    if doc.get("condition"):
        rule = f"running when {doc['condition']}"
    elif doc.get("stop_channels"):
        rule = "stopped when " + ", ".join(
            f"{c} within {t:.3g} of {v:.4g}"
            for c, v, t in zip(doc["stop_channels"], doc["stop_level"], doc["stop_tolerance"], strict=True))
    else:
        rule = "no stop can be told from the channels: the edge scores every sample"
    return (f"operating states ({doc.get('source')}): trained on {ln.get('running_rows')} running of {ln.get('rows')} "
            f"rows, {ln.get('starts')} starts; {rule}; settling {doc.get('settle_samples')} samples after a start")
