"""The training loop: Adam, early stopping when validation loss plateaus, best state kept, seeded.

Training stops when the validation loss has not improved by more than ``min_delta`` (relative)
for ``patience`` epochs (converged); ``epochs`` is only a cap, and a run it stops while still
improving says so (``stop_reason``). With ``progress`` each epoch shows its time left and the
run's, as a range from the earliest a plateau can stop it to the epoch cap. Each epoch sees at most ``max_windows_per_epoch`` windows drawn
at random, so an epoch's cost stays bounded on long recordings.

Inputs are normalised windows (N, W, C) float32; the loss is the mean squared error
between the (optionally corrupted) input's reconstruction and the clean window.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from trainer.model import AEConfig, ConvAutoencoder, count_parameters
from trainer.progress import LiveLine, epoch_line

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Training options. ``noise``: std of gaussian input noise (normalised units);
    ``mask``: fraction of input points zeroed (= set to the channel mean); both keep a clean target."""

    epochs: int = 300
    batch_size: int = 32
    lr: float = 1e-3
    patience: int = 10
    min_delta: float = 0.005
    max_windows_per_epoch: int = 4096
    seed: int = 0
    device: str = "auto"
    noise: float = 0.0
    mask: float = 0.0
    threads: int = 1  # small conv nets train fastest on one CPU thread; raise for big models


@dataclass
class TrainResult:
    """What training produced: the best model (on CPU, eval mode) and a summary."""

    model: ConvAutoencoder
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = float("inf")
    seconds: float = 0.0
    n_params: int = 0
    windows_per_s: float = 0.0
    device: str = "cpu"
    stop_reason: str = ""
    converged: bool = False

    def summary(self) -> dict[str, Any]:
        return {
            "epochs": len(self.train_loss),
            "best_epoch": self.best_epoch,
            "best_val_loss": round(self.best_val_loss, 6),
            "final_train_loss": round(self.train_loss[-1], 6) if self.train_loss else None,
            "seconds": round(self.seconds, 2),
            "parameters": self.n_params,
            "windows_per_s": round(self.windows_per_s, 1),
            "device": self.device,
            "stop_reason": self.stop_reason,
            "converged": self.converged,
        }


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``auto`` (cuda when available)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available to torch")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu, cuda or auto, got {name!r}")
    return torch.device(name)


def corrupt(x: torch.Tensor, noise: float, mask: float, gen: torch.Generator) -> torch.Tensor:
    """Denoising input corruption of ``x`` (B, C, W): gaussian noise and/or zero-masking."""
    if noise > 0:
        x = x + noise * torch.randn(x.shape, generator=gen, device=x.device)
    if mask > 0:
        keep = torch.rand(x.shape, generator=gen, device=x.device) >= mask
        x = x * keep
    return x


@torch.no_grad()
def evaluate_loss(model: nn.Module, windows: np.ndarray, batch_size: int = 512, device: str = "cpu") -> float:
    """Mean squared reconstruction error over normalised windows (N, W, C)."""
    model.eval()
    total, n = 0.0, 0
    for i in range(0, len(windows), batch_size):
        xb = torch.from_numpy(windows[i : i + batch_size]).to(device).transpose(1, 2)
        total += float(torch.sum((model(xb) - xb) ** 2)) / (xb.shape[1] * xb.shape[2])
        n += xb.shape[0]
    return total / max(n, 1)


def fit(
    cfg: AEConfig, train: np.ndarray, val: np.ndarray, tc: TrainConfig, progress: bool = False
) -> TrainResult:
    """Train a fresh autoencoder on normalised windows ``train``/``val`` (N, W, C) float32."""
    if len(train) == 0 or len(val) == 0:
        raise ValueError(f"need training and validation windows, got {len(train)} and {len(val)}")
    device = resolve_device(tc.device)
    prev_threads = torch.get_num_threads()
    if tc.threads > 0:
        torch.set_num_threads(tc.threads)
    try:
        return _fit(cfg, train, val, tc, device, progress)
    finally:
        torch.set_num_threads(prev_threads)


def _fit(
    cfg: AEConfig, train: np.ndarray, val: np.ndarray, tc: TrainConfig, device: torch.device, progress: bool
) -> TrainResult:
    torch.manual_seed(tc.seed)
    gen = torch.Generator(device=device).manual_seed(tc.seed)
    rng = np.random.default_rng(tc.seed)
    model = ConvAutoencoder(cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr)
    res = TrainResult(model=model, n_params=count_parameters(model), device=str(device))
    train_t = torch.from_numpy(np.ascontiguousarray(train)).to(device).transpose(1, 2)  # (N, C, W)
    best_state = copy.deepcopy(model.state_dict())
    bad_epochs = 0
    per_epoch = min(len(train), max(tc.batch_size, tc.max_windows_per_epoch))
    n_batches = -(-per_epoch // tc.batch_size)
    t0 = time.perf_counter()
    seen = 0
    line = LiveLine(every_s=0.0)  # a terminal: the bar every 10 batches; a log: one line an epoch, more if slow

    def status(epoch: int, b: int, running: float, t_epoch: float, bad_epochs: int) -> str:
        done_n = min(per_epoch, (b + 1) * tc.batch_size)
        now = time.perf_counter()
        return epoch_line(epoch, tc.epochs, done_n, per_epoch, running / done_n, now - t_epoch,
                          (t_epoch - t0) / (epoch - 1) if epoch > 1 else (now - t_epoch) * per_epoch / done_n,
                          max(0, tc.patience - bad_epochs - 1))

    for epoch in range(1, tc.epochs + 1):
        model.train()
        t_epoch = time.perf_counter()
        order = torch.from_numpy(rng.permutation(len(train))[:per_epoch]).to(device)
        running = 0.0
        for b in range(n_batches):
            idx = order[b * tc.batch_size : (b + 1) * tc.batch_size]
            clean = train_t[idx]
            inp = corrupt(clean, tc.noise, tc.mask, gen)
            loss = torch.mean((model(inp) - clean) ** 2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running += loss.item() * len(idx)
            seen += len(idx)
            if progress and b % 10 == 0 and 0 < b < n_batches - 1 and line.due():  # not the first (warm-up) batch
                line.show(status(epoch, b, running, t_epoch, bad_epochs))
        train_loss = running / per_epoch
        val_loss = evaluate_loss(model, val, device=str(device))
        res.train_loss.append(train_loss)
        res.val_loss.append(val_loss)
        if progress:
            line.end(status(epoch, n_batches - 1, running, t_epoch, bad_epochs) + f"  val {val_loss:.5f}")
        log.debug("epoch %d train %.6f val %.6f", epoch, train_loss, val_loss)
        improved = val_loss < res.best_val_loss * (1.0 - tc.min_delta)
        if val_loss < res.best_val_loss:
            res.best_val_loss, res.best_epoch = val_loss, epoch
            best_state = copy.deepcopy(model.state_dict())
        bad_epochs = 0 if improved else bad_epochs + 1
        if bad_epochs >= tc.patience:
            res.converged = True
            res.stop_reason = (
                f"converged: validation loss improved by less than {tc.min_delta:.1%} in {tc.patience} epochs "
                f"(stopped at epoch {epoch}, best {res.best_epoch})"
            )
            break
    if not res.converged:
        recent = res.val_loss[-tc.patience - 1] if len(res.val_loss) > tc.patience else res.val_loss[0]
        n = min(tc.patience, len(res.val_loss) - 1)
        res.stop_reason = (
            f"stopped by the epoch cap {tc.epochs} while still improving (validation loss {recent:.4g} -> "
            f"{res.val_loss[-1]:.4g} over the last {n} epochs): raise --epochs" if n > 0 else
            f"stopped by the epoch cap {tc.epochs} before convergence could be judged (validation loss "
            f"{res.val_loss[-1]:.4g} after {len(res.val_loss)} epoch): raise --epochs"
        )
    log.info("%s", res.stop_reason)
    res.seconds = time.perf_counter() - t0
    res.windows_per_s = seen / res.seconds if res.seconds > 0 else 0.0
    model.load_state_dict(best_state)
    res.model = model.to("cpu").eval()
    return res
