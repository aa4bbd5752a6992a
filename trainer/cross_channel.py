"""The cross-channel residual term: what a few common factors of the channels do not explain.

Many correlated channels driven by a few common causes (load, a shared cycle) are where a small autoencoder
trained on a few hundred rows does worst: a fault on one of 50 channels hardly moves its reconstruction
error. A textbook PCA residual sees it at once. Learned from the training part's normal rows alone:

- the member channels (every channel not constant in training: the kept ones and those screened out for
  drifting) give their correlation matrix from the normalised rows ``z``; its **common factors** are the
  principal components whose eigenvalue is above the mean eigenvalue (Kaiser's rule);
- the term is **on** when those factors leave at most :data:`UNEXPLAINED_LIMIT` of the training variance
  unexplained (the channels really move together), and whatever they leave when there are
  :data:`MANY_CHANNELS` or more members: there one channel's fault is a small part of the autoencoder's
  score (a power mean over many channels), and a process plant's measurement noise leaves 25-40 % of the
  variance to the residual however strongly its channels share causes (the members are counted before any whose
  residual drifts is left out, below); otherwise (SKAB's 8 channels: 27-50 % left) it is off and the score is the
  autoencoder's alone;
- when on, each window gets per channel ``mean_W((M z)_c^2)`` with ``M = I - P P^T`` (P: the factors), the
  channel's share of the PCA residual (Q, SPE), divided by its mean on the held-out validation windows. A
  channel whose level drifts together with the factors (a shared slow cycle seen for one period) leaves
  a steady residual: a channel screened out for drifting is scored by this term alone, unless its residual
  drifts too (the same drift test, on the residual), which leaves it out of the term.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

UNEXPLAINED_LIMIT = 0.10  # the term is on when the common factors leave at most this share of the variance
MANY_CHANNELS = 20  # or when at least this many channels are members, whatever the share (docs/TRAINING.md)
MIN_CHANNELS = 3  # fewer member channels: no term (one or two channels have no structure to break)


@dataclass(frozen=True)
class CrossChannel:
    """The fitted residual model: ``projection`` (C, C) = I - P P^T on the member channels, 0 elsewhere;
    ``note``: why it is off when that is not the data (e.g. a score power of 1)."""

    on: bool
    components: int
    channels: int
    unexplained: float
    projection: np.ndarray | None = None
    note: str = ""

    def describe(self, cross_only: int = 0, drifting: int = 0, before_many: bool = False) -> str:
        """One line for ``fit`` and ``inspect`` (``cross_only``: drifting channels scored by the term alone;
        ``drifting``: channels whose residual drifts, left out of it; ``before_many``: a model fitted before the
        :data:`MANY_CHANNELS` rule, whose term is off for the 10 % limit alone)."""
        if self.note:
            return f"cross-channel term: off ({self.note})"
        first = f"after leaving out {drifting} channel(s) whose residual drifts: " if drifting and not self.on else ""
        if self.channels < MIN_CHANNELS:
            return f"cross-channel term: off ({first}only {self.channels} channels not constant)"
        share = f"{self.components} common factor(s) leave {100 * self.unexplained:.1f} % of the {self.channels} " \
                f"channels' training variance unexplained"
        if self.on:
            extra = (f"; {cross_only} drifting channel(s) scored by it alone" if cross_only else "") + (
                f"; {drifting} left out of it (their residual drifts too)" if drifting else "")
            why = f"limit {100 * UNEXPLAINED_LIMIT:.0f} %" if self.unexplained <= UNEXPLAINED_LIMIT else \
                f"on at {MANY_CHANNELS} or more channels whatever the share" + (
                    " (counted before those whose residual drifts were left out)" if self.channels < MANY_CHANNELS
                    else "") + ": one channel's fault is a small part of the autoencoder's score"
            return f"cross-channel term: on ({share}; {why}{extra})"
        if self.components == 0:
            return f"cross-channel term: off ({first}no common factor: every component explains as much as another)"
        if self.components >= self.channels:
            return f"cross-channel term: off ({first}{share}: no residual left)"
        if before_many:
            return f"cross-channel term: off ({first}{share}, above the {100 * UNEXPLAINED_LIMIT:.0f} % limit: the " \
                   f"channels do not move together; fitted before the term was on at {MANY_CHANNELS} or more " \
                   "channels: fit again to have it)"
        return f"cross-channel term: off ({first}{share}, above the {100 * UNEXPLAINED_LIMIT:.0f} % limit for fewer " \
               f"than {MANY_CHANNELS} channels: the channels do not move together)"

    def to_dict(self) -> dict[str, Any]:
        """Metadata (``scoring.cross_channel``), without the projection (stored beside it when on)."""
        return {"on": self.on, "components": self.components, "channels": self.channels,
                "unexplained": self.unexplained, "limit": UNEXPLAINED_LIMIT, "many_channels": MANY_CHANNELS}


def normal_covariance(arrays: list[np.ndarray], mean: np.ndarray, std: np.ndarray,
                      chunk: int = 65536) -> tuple[np.ndarray, int]:
    """``(covariance (C, C), rows)`` of the normalised rows of raw ``arrays`` (each (T, C)), in bounded memory."""
    c = len(mean)
    s1, s2, n = np.zeros(c), np.zeros((c, c)), 0
    for a in arrays:
        for lo in range(0, len(a), chunk):
            z = (np.asarray(a[lo : lo + chunk], dtype=np.float64) - mean) / std
            s1 += z.sum(axis=0)
            s2 += z.T @ z
            n += len(z)
    if n < 2:
        return np.zeros((c, c)), n
    mu = s1 / n
    return (s2 - n * np.outer(mu, mu)) / (n - 1), n


def fit_cross_channel(cov: np.ndarray, members: np.ndarray, many: bool | None = None) -> CrossChannel:
    """The residual model from the normalised training rows' covariance ``cov`` (C, C) over the ``members`` (C,).
    ``many``: whether the :data:`MANY_CHANNELS` rule applies (None: from these members' count)."""
    kept = np.asarray(members, dtype=bool)
    n_kept = int(kept.sum())
    many = n_kept >= MANY_CHANNELS if many is None else many
    if n_kept < MIN_CHANNELS:
        return CrossChannel(False, 0, n_kept, 1.0)
    sub = np.asarray(cov, dtype=np.float64)[np.ix_(kept, kept)]
    vals, vecs = np.linalg.eigh((sub + sub.T) / 2)
    vals, vecs = np.clip(vals[::-1], 0.0, None), vecs[:, ::-1]
    total = float(vals.sum())
    if not total > 0:
        return CrossChannel(False, 0, n_kept, 1.0)
    k = int((vals > vals.mean()).sum())
    unexplained = float(vals[k:].sum() / total)
    if k == 0 or k >= n_kept or (unexplained > UNEXPLAINED_LIMIT and not many):
        return CrossChannel(False, k, n_kept, unexplained)
    p = vecs[:, :k]
    proj = np.zeros((len(kept), len(kept)))
    idx = np.flatnonzero(kept)
    proj[np.ix_(idx, idx)] = np.eye(n_kept) - p @ p.T
    return CrossChannel(True, k, n_kept, unexplained, proj)


def file_means(train: list[np.ndarray], val: list[np.ndarray], mean: np.ndarray, std: np.ndarray,
               chunk: int = 65536) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per file with both parts: the mean normalised row of its training and of its validation part."""

    def mean_z(a: np.ndarray) -> np.ndarray:
        tot = np.zeros(len(mean))
        for lo in range(0, len(a), chunk):
            tot += ((np.asarray(a[lo : lo + chunk], dtype=np.float64) - mean) / std).sum(axis=0)
        return tot / len(a)

    return [(mean_z(a), mean_z(b)) for a, b in zip(train, val, strict=True) if len(a) and len(b)]


def residual_drift(projection: np.ndarray, cov: np.ndarray, means: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """(C,) the largest per-file move of each channel's residual ``(M z)_c`` between a file's training and
    validation parts, in training residual std (the screening's drift test on the residual), from the moments."""
    sd = np.sqrt(np.clip(np.diag(projection @ cov @ projection), 0.0, None))
    out = np.zeros(len(sd))
    for m_t, m_v in means:
        out = np.maximum(out, np.abs((m_v - m_t) @ projection) / np.where(sd > 1e-12, sd, np.inf))
    return out


def residual_terms(z: np.ndarray, projection: np.ndarray) -> np.ndarray:
    """Per channel ``mean_W((M z)^2)`` (N, C) of normalised windows ``z`` (N, W, C): the graph's function."""
    u = np.asarray(z, dtype=np.float64) @ np.asarray(projection, dtype=np.float64).T
    return np.asarray((u * u).mean(axis=1))


@dataclass(frozen=True)
class CrossPlan:
    """What the term does in one model: ``residual`` (C,) channels whose residual is scored, ``cross_only``
    (C,) the drifting ones scored by it alone, ``left_out`` (C,) those whose residual drifts too, ``weight`` (C,)
    the score's channel weights (``C / n_scored``)."""

    model: CrossChannel
    residual: np.ndarray
    cross_only: np.ndarray
    left_out: np.ndarray
    weight: np.ndarray

    @classmethod
    def off(cls, model: CrossChannel, kept: np.ndarray, left_out: np.ndarray | None = None) -> CrossPlan:
        """No term: the score's weights are the ``kept`` (C,) channels' alone."""
        none = np.zeros(len(kept), dtype=bool)
        return cls(model, none, none, none if left_out is None else left_out, kept * len(kept) / max(1, int(kept.sum())))

    @property
    def on(self) -> bool:
        return self.model.on and bool(self.residual.any())

    def describe(self) -> str:
        return self.model.describe(int(self.cross_only.sum()), int(self.left_out.sum()))

    def to_dict(self, channels: list[str]) -> dict[str, Any]:
        """Metadata (``scoring.cross_channel``)."""
        return {**self.model.to_dict(), "on": self.on, **({"note": self.model.note} if self.model.note else {}),
                "scored_by_it_alone": [c for c, o in zip(channels, self.cross_only, strict=True) if o],
                "left_out": [c for c, o in zip(channels, self.left_out, strict=True) if o]}


def plan_cross_channel(kept: np.ndarray, constant: np.ndarray, train: list[np.ndarray], val: list[np.ndarray],
                       mean: np.ndarray, std: np.ndarray, drift_limit: float) -> CrossPlan:
    """The term for a model whose reconstruction and level terms score the ``kept`` (C,) channels, from the raw
    training and validation arrays (paired per file); ``constant`` (C,): channels constant in training.

    A channel whose residual drifts moves every other channel's residual too (the projection mixes them), so
    the worst drifter is left out and the factors refitted, until every member's residual is steady."""
    kept = np.asarray(kept, dtype=bool)
    members = ~np.asarray(constant, dtype=bool)
    many = int(members.sum()) >= MANY_CHANNELS  # counted before any drifter is left out: one leaves the rule as it was
    cov, _ = normal_covariance(train, mean, std)
    means = file_means(train, val, mean, std)
    left_out = np.zeros(len(kept), dtype=bool)
    while True:
        model = fit_cross_channel(cov, members, many)
        if not model.on or model.projection is None:
            return CrossPlan.off(model, kept, left_out)
        drift = np.where(members, residual_drift(model.projection, cov, means), 0.0)
        worst = int(np.argmax(drift))
        if drift[worst] <= drift_limit:
            break
        members[worst], left_out[worst] = False, True
    scored = kept | members
    return CrossPlan(model, members, members & ~kept, left_out, scored * len(kept) / int(scored.sum()))
