"""Tail companding of normalized actions: identity on [-1, 1] (the 1st..99th percentiles under q99_guarded), a
logarithm beyond, `sign(u) (1 + log|u|)`; its exact inverse expands the decoder's output.

Why: q99_guarded keeps rare large actions (lift's keyboard actions reach ±7.2 normalized) that a tanh latent would
otherwise squeeze into its flat ends; compressed, they cost the bulk of the data less resolution in the coarse
layers. Both maps are continuous with slope 1 at ±1. Measured in docs/history/RESULTS.md (issue 14, third pass).
"""

from __future__ import annotations

import torch

MAX_LOG = 20.0  # expand() never overflows float32: |u| <= e^20


def compress_tails(u: torch.Tensor) -> torch.Tensor:
    """`[..., A]` → same shape: `u` where |u| ≤ 1, `sign(u) (1 + log|u|)` beyond."""
    magnitude = u.abs()
    return torch.where(magnitude <= 1, u, u.sign() * (1 + torch.log(magnitude.clamp_min(1))))


def expand_tails(y: torch.Tensor) -> torch.Tensor:
    """Inverse of `compress_tails`: `y` where |y| ≤ 1, `sign(y) exp(|y| - 1)` beyond."""
    magnitude = y.abs()
    return torch.where(magnitude <= 1, y, y.sign() * torch.exp((magnitude - 1).clamp_max(MAX_LOG)))
