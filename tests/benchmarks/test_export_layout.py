"""The export's fast graph layout computes the trainer's function, and the trainer's module comes back out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from trainer import export as ex


@pytest.mark.parametrize("kernel", [1, 3, 5, 7])
@pytest.mark.parametrize("length", [2, 5, 16])
def test_subpixel_conv_equals_conv_transpose(kernel: int, length: int) -> None:
    torch.manual_seed(kernel * 10 + length)
    ct = nn.ConvTranspose1d(6, 3, kernel, stride=2, padding=kernel // 2, output_padding=1).eval()
    sp = ex.SubPixelConvTranspose1d(ct).eval()
    x = torch.randn(4, 6, length)
    with torch.no_grad():
        torch.testing.assert_close(sp(x), ct(x), rtol=1e-5, atol=1e-6)
    w, b = sp.convtranspose_weight()
    torch.testing.assert_close(w, ct.weight.detach())
    torch.testing.assert_close(b, ct.bias.detach())


def test_subpixel_refuses_other_strides() -> None:
    with pytest.raises(ValueError, match="stride-2"):
        ex.SubPixelConvTranspose1d(nn.ConvTranspose1d(2, 2, 3, stride=3, padding=1))


def test_exported_file_has_no_conv_transpose_and_rebuilds_the_module(demo_model_path: Path) -> None:
    nodes = onnx.load(str(demo_model_path)).graph.node
    ops = {n.op_type for n in nodes}
    assert "ConvTranspose" not in ops and "Div" not in ops
    # Pow only for a power-mean score's root, on the (B,) score (format 4): the channel powers are Mul
    assert [list(n.output) for n in nodes if n.op_type == "Pow"] in ([], [["score"]])
    graph = ex.scoring_graph_from_onnx(demo_model_path)
    assert any(isinstance(m, nn.ConvTranspose1d) for m in graph.ae.decoder)
    meta = ex.read_metadata(demo_model_path)
    rng = np.random.default_rng(0)
    x = (np.array(meta.normalisation.mean) + np.array(meta.normalisation.std)
         * rng.standard_normal((16, meta.window, meta.n_channels))).astype(np.float32)
    with torch.no_grad():
        ref = [t.numpy() for t in graph(torch.from_numpy(x))]
    got = ex.run_onnx(demo_model_path, x)
    np.testing.assert_allclose(got["score"], ref[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["channel_error"], ref[1], rtol=1e-4, atol=1e-6)
