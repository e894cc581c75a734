"""The seed's "robust" RFSQ: per-token LayerNorm of each residual over the latent dimension.

For each token and layer the residual is normalized by its own mean and std over `H`,
quantized on `[-1, 1]`, and denormalized. The forward pass reconstructs well, but the
per-token statistics are not in the codes: `decode` raises `NotDecodableError`.
Kept only for comparison.
"""

from __future__ import annotations

import torch

from rvq.rfsq.grid import codes_to_values
from rvq.rfsq.residual import ResidualScalarQuantizer

EPS = 1e-5


class LayerNormRFSQ(ResidualScalarQuantizer):
    """Per-sample normalization; not decodable from codes."""

    decodable = False

    def layer_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError("LayerNormRFSQ normalizes per token; it has no per-layer affine")

    def sample_affine(
        self, layer: int, residual: torch.Tensor, affine: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mean = residual.mean(dim=-1, keepdim=True)
        std = residual.std(dim=-1, keepdim=True, unbiased=False) + EPS
        return mean, std

    def decode_without_statistics(self, codes: torch.Tensor) -> torch.Tensor:
        """What the seed's `decode_from_indices` returned: the sum of grid values, as if every
        per-token mean were 0 and std 1. For measuring how wrong code-only decoding is; never
        for driving a robot. codes `[..., H, k]` → `[..., H]`."""
        return codes_to_values(codes, self.num_levels).sum(dim=-1)
