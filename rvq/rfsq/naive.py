"""Naive RFSQ (the seed's original): every layer quantizes its residual on the same grid `[-1, 1]`.

After layer 0 the residual is below half a grid step, rounds to the middle code, and
layers 1..L-1 are dead. Kept as the baseline that robust RFSQ is measured against.
"""

from __future__ import annotations

import torch

from rvq.rfsq.residual import ResidualScalarQuantizer


class NaiveRFSQ(ResidualScalarQuantizer):
    """Same grid for every layer: offset 0, half-range 1. Its buffers keep their initial values."""

    def layer_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        zeros = torch.zeros_like(self.scale)
        return zeros, torch.ones_like(self.scale)
