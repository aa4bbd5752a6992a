"""Build small real models for tests: trained and exported by the real trainer (owned by the trainer)."""

from __future__ import annotations

from pathlib import Path

N_CHANNELS = 4
WINDOW = 32
HOP = 8


def train_small_model(out_dir: Path, seed: int = 0, epochs: int = 25) -> Path:
    """Train a tiny autoencoder on synthetic normal data (4 channels, W=32, hop=8); return the .onnx path.

    Takes a few seconds on one CPU thread. The model detects the synthetic anomaly kinds of
    :mod:`edge_runtime.tools.synthetic` well above its threshold.
    """
    from edge_runtime.tools.synthetic import channel_names, normal_series
    from trainer.api import train_and_export

    out = Path(out_dir) / "small.onnx"
    x = normal_series(6000, N_CHANNELS, seed=seed)
    train_and_export(
        x,
        channel_names(N_CHANNELS),
        out,
        window=WINDOW,
        hop=HOP,
        epochs=epochs,
        seed=seed,
        depth=2,
        width=16,
        latent=8,
        lr=3e-3,
        batch_size=64,
        threads=1,
    )
    return out
