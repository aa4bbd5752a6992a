"""The autoencoder: shapes, windows not divisible by 2**depth, refused configs."""

from __future__ import annotations

import pytest
import torch

from trainer.model import AEConfig, ConvAutoencoder, ModelConfigError, count_parameters


@pytest.mark.parametrize(("window", "depth"), [(64, 2), (60, 3), (33, 2), (8, 2)])
def test_output_shape_equals_input_shape(window: int, depth: int) -> None:
    m = ConvAutoencoder(AEConfig(n_channels=3, window=window, depth=depth, width=4, latent=4))
    z = torch.randn(5, 3, window)
    assert m(z).shape == (5, 3, window)


def test_latent_size_and_parameters_scale_with_width() -> None:
    small = ConvAutoencoder(AEConfig(2, 32, width=4))
    big = ConvAutoencoder(AEConfig(2, 32, width=16))
    assert count_parameters(big) > count_parameters(small)
    assert small.to_latent.out_features == 16


@pytest.mark.parametrize(
    ("cfg", "msg"),
    [
        (AEConfig(2, 64, kernel=4), "kernel must be an odd"),
        (AEConfig(2, 4, depth=2), r"too short for --depth 2: need window >= 5"),
        (AEConfig(2, 64, depth=0), "--depth must be"),
    ],
)
def test_refused_configs(cfg: AEConfig, msg: str) -> None:
    with pytest.raises(ModelConfigError, match=msg):
        ConvAutoencoder(cfg)
