"""OpenVLA's action tokens: each normalized dimension of each step in one of 256 uniform bins on [-1, 1]."""

from __future__ import annotations

import math

import torch


class UniformBinning:
    """`num_bins` uniform bins per dimension; the token decodes to its bin centre."""

    def __init__(self, num_bins: int = 256) -> None:
        if num_bins < 2:
            raise ValueError(f"num_bins must be >= 2, got {num_bins}")
        self.num_bins = num_bins
        self.edges = torch.linspace(-1.0, 1.0, num_bins + 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """normalized `[..., A]` → bin index `[..., A]` in `[0, num_bins)`."""
        return torch.bucketize(x.clamp(-1, 1), self.edges[1:-1])

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        centres = (self.edges[:-1] + self.edges[1:]) / 2
        return centres[tokens]

    def bits_per_chunk(self, chunk_size: int, action_dim: int) -> float:
        return chunk_size * action_dim * math.log2(self.num_bins)
