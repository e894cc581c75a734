"""Baselines: the ResidualFSQ adapter agrees with the library; bins and DCT are what they claim."""

from __future__ import annotations

import math

import torch

from rvq.baselines.binning import UniformBinning
from rvq.baselines.dct import DCTTokenizer, dct_matrix
from rvq.baselines.residual_fsq import ResidualFSQAE
from rvq.rfsq import TokenizerConfig


def test_residual_fsq_adapter_matches_library() -> None:
    model = ResidualFSQAE(TokenizerConfig(coarse_decoder=False)).eval()
    z = torch.rand(64, 8, 16) * 2.4 - 1.2
    with torch.no_grad():
        library_zhat, library_codes = model.quantizer.library_forward(z)
        zhat, codes, residuals = model.quantizer._quantize(z)
    assert torch.equal(codes, library_codes)
    assert torch.allclose(zhat, library_zhat, atol=1e-6)
    assert torch.allclose(model.quantizer.decode(codes), zhat, atol=1e-6)
    assert len(residuals) == 9


def test_residual_fsq_trains_through_the_library() -> None:
    model = ResidualFSQAE(TokenizerConfig(coarse_decoder=False)).train()
    recon, codes = model(torch.randn(4, 8, 7))
    recon.pow(2).mean().backward()
    assert codes.shape == (4, 8, 16, 8)
    assert model.encoder[0].weight.grad.abs().sum() > 0


def test_uniform_bins_error_below_half_bin() -> None:
    tok = UniformBinning(256)
    x = torch.rand(1000, 8, 7) * 2 - 1
    tokens = tok.encode(x)
    assert int(tokens.min()) >= 0 and int(tokens.max()) < 256
    assert (tok.decode(tokens) - x).abs().max() <= 1 / 256 + 1e-6
    assert tok.bits_per_chunk(8, 7) == 8 * 7 * 8


def test_dct_orthonormal_and_bits() -> None:
    d = dct_matrix(8)
    assert torch.allclose(d @ d.T, torch.eye(8), atol=1e-5)
    x = torch.rand(500, 8, 7) * 2 - 1
    fine, coarse = DCTTokenizer(8, 1000.0), DCTTokenizer(8, 2.0)
    assert (fine.decode(fine.encode(x)) - x).abs().max() < 2e-3
    err_fine = (fine.decode(fine.encode(x)) - x).pow(2).mean()
    err_coarse = (coarse.decode(coarse.encode(x)) - x).pow(2).mean()
    assert err_coarse > 10 * err_fine
    bits_fine = DCTTokenizer.entropy_bits_per_chunk(fine.encode(x))
    bits_coarse = DCTTokenizer.entropy_bits_per_chunk(coarse.encode(x))
    assert 0 < bits_coarse < bits_fine <= 56 * math.log2(500)
