"""Reference detectors measured beside edgewatch in the same run. numpy (+ scipy for one quantile).

:class:`PcaT2Q` is the textbook PCA monitor (MacGregor & Kourti 1995): standardise every channel
on the training rows, keep the principal components that explain ``variance`` of the training
variance, and score each row by Hotelling's T^2 in the kept space and by Q (the squared prediction
error, SPE) in the residual space. Limits at ``alpha`` (99 %): T^2 by the F distribution for a new
observation, ``k (n-1)(n+1) / (n (n-k)) F(k, n-k)``; Q by Jackson & Mudholkar (1979). A row is
flagged when T^2 or Q exceeds its limit. Channels constant over the training rows carry no
information for PCA and are left out (listed in ``dropped``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np


@dataclass
class PcaT2Q:
    """Fitted PCA T^2+Q monitor. Arrays: ``mean``/``std`` (C',), ``loadings`` (C', k), ``eigvals`` (C',)."""

    mean: np.ndarray
    std: np.ndarray
    keep: np.ndarray  # (C,) bool: channels used
    loadings: np.ndarray
    eigvals: np.ndarray
    k: int
    t2_limit: float
    q_limit: float
    dropped: list[int] = field(default_factory=list)

    @classmethod
    def fit(cls, x: np.ndarray, variance: float = 0.9, alpha: float = 0.99) -> PcaT2Q:
        """Fit on training rows ``x`` (n, C) taken as normal."""
        from scipy.stats import f as f_dist

        x = np.asarray(x, dtype=np.float64)
        n = x.shape[0]
        sd = x.std(axis=0, ddof=1)
        keep = sd > 1e-12 * np.maximum(1.0, np.abs(x).max(axis=0))
        if not keep.any():
            raise ValueError("PCA T2+Q: every channel is constant over the training rows")
        mean, std = x[:, keep].mean(axis=0), sd[keep]
        z = (x[:, keep] - mean) / std
        _, sv, vt = np.linalg.svd(z, full_matrices=False)
        eig = np.zeros(z.shape[1])
        eig[: sv.size] = sv**2 / (n - 1)
        frac = np.cumsum(eig) / eig.sum()
        k = int(np.searchsorted(frac, variance) + 1)
        k = max(1, min(k, z.shape[1] - 1 if z.shape[1] > 1 else 1, n - 2))
        t2_lim = k * (n - 1) * (n + 1) / (n * (n - k)) * float(f_dist.ppf(alpha, k, n - k))
        return cls(
            mean, std, keep, vt[:k].T, eig, k, t2_lim, q_limit(eig[k:], alpha),
            dropped=[int(i) for i in np.flatnonzero(~keep)],
        )

    def statistics(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(T2 (T,), Q (T,))`` of rows ``x`` (T, C)."""
        z = (np.asarray(x, dtype=np.float64)[:, self.keep] - self.mean) / self.std
        t = z @ self.loadings  # (T, k)
        t2 = np.sum(t**2 / self.eigvals[: self.k], axis=1)
        resid = z - t @ self.loadings.T
        return t2, np.sum(resid**2, axis=1)

    def score(self, x: np.ndarray) -> np.ndarray:
        """One score per row (T,): ``max(T2 / T2 limit, Q / Q limit)``; a row is flagged above 1."""
        t2, q = self.statistics(x)
        q_part = q / self.q_limit if self.q_limit > 0 else np.zeros_like(q)
        return np.maximum(t2 / self.t2_limit, q_part)


def q_limit(residual_eigvals: np.ndarray, alpha: float = 0.99) -> float:
    """Jackson-Mudholkar limit of Q from the eigenvalues (m,) left out of the model; 0 if none."""
    lam = np.asarray(residual_eigvals, dtype=np.float64)
    th1, th2, th3 = (float(np.sum(lam**i)) for i in (1, 2, 3))
    if th1 <= 0 or th2 <= 0:
        return 0.0
    h0 = 1 - 2 * th1 * th3 / (3 * th2**2)
    c = NormalDist().inv_cdf(alpha)
    if abs(h0) < 1e-9:  # degenerate tail; fall back to the chi-square approximation g * chi2(h)
        from scipy.stats import chi2

        return float(th2 / th1 * chi2.ppf(alpha, th1**2 / th2))
    inner = c * np.sqrt(2 * th2 * h0**2) / th1 + 1 + th2 * h0 * (h0 - 1) / th1**2
    return float(th1 * max(inner, 0.0) ** (1 / h0))
