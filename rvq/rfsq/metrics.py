"""Diagnostics of a residual quantizer on a batch of latents: effective layers, code usage, error."""

from __future__ import annotations

import math
from typing import Any

import torch

from rvq.module_mode import eval_mode
from rvq.rfsq.residual import ResidualScalarQuantizer

EFFECTIVE_ENERGY_RATIO = 0.5  # a layer is effective when it removes at least half the residual energy


@torch.no_grad()
def residual_diagnostics(quantizer: ResidualScalarQuantizer, z: torch.Tensor) -> dict[str, Any]:
    """Per-layer residual std, energy reduction, effective flags and code perplexity for `z: [..., H]`."""
    with eval_mode(quantizer):
        _, codes, residuals = quantizer._quantize(z)
    rms = [float(r.pow(2).mean().sqrt()) for r in residuals]
    energy_ratio = [(rms[i + 1] / rms[i]) ** 2 if rms[i] > 0 else 1.0 for i in range(len(rms) - 1)]
    perplexity = []
    for layer in range(codes.shape[-1]):
        counts = torch.bincount(codes[..., layer].reshape(-1), minlength=quantizer.num_levels).double()
        p = counts / counts.sum()
        entropy = -(p[p > 0] * p[p > 0].log()).sum().item()
        perplexity.append(math.exp(entropy))
    return {
        "residual_std": rms,
        "energy_ratio": energy_ratio,
        "effective_layers": [r < EFFECTIVE_ENERGY_RATIO for r in energy_ratio],
        "num_effective_layers": sum(r < EFFECTIVE_ENERGY_RATIO for r in energy_ratio),
        "code_perplexity": perplexity,
    }
