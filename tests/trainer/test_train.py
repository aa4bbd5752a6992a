"""The training loop: loss falls, seeded runs repeat, early stopping, denoising corruption."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_runtime.pipeline.windowing_offline import sliding_windows
from edge_runtime.tools.synthetic import normal_series
from trainer.data import fit_normalisation, normalise
from trainer.model import AEConfig
from trainer.train import TrainConfig, corrupt, fit, resolve_device


def windows() -> tuple[np.ndarray, np.ndarray]:
    x = normal_series(3000, 3, seed=0)
    mean, std = fit_normalisation([x[:2400]])
    return (
        normalise(sliding_windows(x[:2400], 32, 8), mean, std),
        normalise(sliding_windows(x[2400:], 32, 8), mean, std),
    )


CFG = AEConfig(n_channels=3, window=32, width=8, latent=8)


def test_loss_falls() -> None:
    tr, va = windows()
    res = fit(CFG, tr, va, TrainConfig(epochs=12, lr=3e-3, patience=12))
    assert res.val_loss[-1] < 0.7 * res.val_loss[0]
    assert res.train_loss[-1] < res.train_loss[0]
    assert res.best_val_loss == min(res.val_loss)
    s = res.summary()
    assert s["parameters"] > 0 and s["epochs"] == 12 and s["windows_per_s"] > 0


def test_seeded_runs_repeat() -> None:
    tr, va = windows()
    a = fit(CFG, tr, va, TrainConfig(epochs=2, seed=7))
    b = fit(CFG, tr, va, TrainConfig(epochs=2, seed=7))
    assert a.val_loss == b.val_loss
    for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_early_stopping_keeps_best_state() -> None:
    tr, va = windows()
    # A huge learning rate diverges quickly: training must stop early and keep the best epoch.
    res = fit(CFG, tr, va, TrainConfig(epochs=30, lr=5.0, patience=2))
    assert len(res.val_loss) < 30
    assert res.best_epoch == int(np.argmin(res.val_loss)) + 1


def test_denoising_corruption_noise_and_mask() -> None:
    x = torch.ones(4, 2, 50)
    gen = torch.Generator().manual_seed(0)
    masked = corrupt(x, 0.0, 0.5, gen)
    assert 0.3 < float((masked == 0).float().mean()) < 0.7
    noisy = corrupt(x, 0.1, 0.0, gen)
    assert 0.05 < float((noisy - x).std()) < 0.2
    tr, va = windows()
    res = fit(CFG, tr, va, TrainConfig(epochs=3, noise=0.2, mask=0.1))
    assert np.isfinite(res.best_val_loss)


def test_device_choice() -> None:
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="--device must be"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda")


def test_stop_reason_says_converged_or_capped() -> None:
    tr, va = windows()
    capped = fit(CFG, tr, va, TrainConfig(epochs=2, lr=1e-3, patience=5))
    assert not capped.converged and "epoch cap 2 while still improving" in capped.stop_reason
    flat = fit(CFG, tr, va, TrainConfig(epochs=50, lr=5.0, patience=2))
    assert flat.converged and flat.stop_reason.startswith("converged") and len(flat.val_loss) < 50


def test_epochs_see_at_most_max_windows() -> None:
    tr, va = windows()
    res = fit(CFG, tr, va, TrainConfig(epochs=1, batch_size=8, max_windows_per_epoch=16))
    assert res.summary()["epochs"] == 1 and res.windows_per_s > 0


def test_progress_shows_no_line_from_the_first_batch(capsys) -> None:
    """The first batch (warm-up) made a 0 % line with a run estimate of one batch's time; the first line now
    comes after 10 batches, and epoch 1's run estimate extrapolates the whole epoch."""
    tr, va = windows()
    fit(CFG, tr[:280], va, TrainConfig(epochs=1, batch_size=7, max_windows_per_epoch=280), progress=True)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("epoch")]
    assert lines and all("[#" in ln for ln in lines), lines  # 11 of 40 batches done at the first: not empty
