"""The uniform scalar grid `linspace(-1, 1, num_levels)` and arithmetic rounding onto it.

Codes are integer level indices in `[0, num_levels)`; values are grid points in `[-1, 1]`.
Rounding is done with arithmetic (`round((u + 1) * (n - 1) / 2)`), never with a distance
tensor over all levels.
"""

from __future__ import annotations

import torch


def grid_step(num_levels: int) -> float:
    """Distance between neighbouring grid points: `2 / (num_levels - 1)`."""
    return 2.0 / (num_levels - 1)


def values_to_codes(u: torch.Tensor, num_levels: int) -> torch.Tensor:
    """Nearest grid index of each element of `u` (any shape), clipped to the grid; int64."""
    half = (num_levels - 1) / 2.0
    return torch.round((u.clamp(-1.0, 1.0) + 1.0) * half).to(torch.int64)


def codes_to_values(codes: torch.Tensor, num_levels: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Grid value of each code (any shape)."""
    return codes.to(dtype) * grid_step(num_levels) - 1.0
