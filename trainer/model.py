"""The 1D-convolutional autoencoder and its config.

Encoder: ``depth`` strided Conv1d (stride 2) -> flatten -> Linear to a ``latent``-dim code.
Decoder: Linear -> unflatten -> ``depth`` ConvTranspose1d (stride 2) -> Conv1d to C channels.
Works in the conv layout ``(B, C, W)`` on normalised values. A ``W`` that is not a multiple
of ``2**depth`` is zero-padded at the end inside the graph and the output cropped back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


class ModelConfigError(ValueError):
    """The architecture options cannot build a model for this window/channel count."""


@dataclass
class AEConfig:
    """Autoencoder hyper-parameters. ``width`` is the first conv's channels, doubled per level."""

    n_channels: int
    window: int
    depth: int = 2
    width: int = 16
    kernel: int = 5
    latent: int = 16

    def validate(self) -> None:
        if self.n_channels < 1:
            raise ModelConfigError("need at least one channel")
        if self.depth < 1 or self.depth > 6:
            raise ModelConfigError(f"--depth must be in 1..6, got {self.depth}")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ModelConfigError(f"--kernel must be an odd number >= 1, got {self.kernel}")
        if self.width < 1 or self.latent < 1:
            raise ModelConfigError("--width and --latent must be >= 1")
        if self.padded_window // 2**self.depth < 2:
            raise ModelConfigError(
                f"--window {self.window} is too short for --depth {self.depth}: "
                f"need window >= {2**self.depth + 1}"
            )

    @property
    def padded_window(self) -> int:
        """``W`` rounded up to a multiple of ``2**depth``."""
        f = 2**self.depth
        return -(-self.window // f) * f

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ConvAutoencoder(nn.Module):
    """``forward(z)``: (B, C, W) normalised -> (B, C, W) reconstruction."""

    def __init__(self, cfg: AEConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        pad = cfg.kernel // 2
        chans = [cfg.n_channels] + [cfg.width * 2**i for i in range(cfg.depth)]
        enc: list[nn.Module] = []
        for i in range(cfg.depth):
            enc += [nn.Conv1d(chans[i], chans[i + 1], cfg.kernel, stride=2, padding=pad), nn.ReLU()]
        self.encoder = nn.Sequential(*enc)
        self.code_len = cfg.padded_window // 2**cfg.depth
        self.feat = chans[-1]
        flat = chans[-1] * self.code_len
        self.to_latent = nn.Linear(flat, cfg.latent)
        self.from_latent = nn.Linear(cfg.latent, flat)
        dec: list[nn.Module] = []
        for i in range(cfg.depth, 0, -1):
            out = chans[i - 1] if i > 1 else cfg.width
            dec += [
                nn.ConvTranspose1d(chans[i], out, cfg.kernel, stride=2, padding=pad, output_padding=1),
                nn.ReLU(),
            ]
        self.decoder = nn.Sequential(*dec)
        self.head = nn.Conv1d(cfg.width, cfg.n_channels, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        w = self.cfg.window
        extra = self.cfg.padded_window - w
        if extra:
            z = F.pad(z, (0, extra))  # (B, C, W') zeros = channel mean
        h = self.encoder(z)  # (B, F, W'/2**d)
        code = self.to_latent(h.flatten(1))  # (B, latent)
        h = self.from_latent(code).view(-1, self.feat, self.code_len)  # (B, F, W'/2**d)
        r = self.head(self.decoder(h))  # (B, C, W')
        if extra:
            r = r[:, :, :w]
        return r


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
