"""Per-dimension feature standardization inside a head: `(x - mean) / std` with the statistics of the rows it was
trained on, kept as buffers (saved and loaded with the head's weights).

Why: state features mix scales (metres of world position, centimetres of gripper-to-object offsets, unit
quaternions, one-hot task ids). The heads' LayerNorm normalizes across the dimensions of one row, which keeps the
centimetre-scale offsets that decide a grasp tiny next to the one-hot entries. Measured on the libero_object study
data (main head, width 256, 3000 steps): held-out loss 1.234 → 1.160, layer-0 token accuracy 0.878 → 0.927
(docs/history/RESULTS.md). Off by default: on a single task with 20 demos it raised held-out accuracy but cut closed-loop
success from 10/10 to 2-3/10 (docs/history/RESULTS.md), which is not yet understood.
"""

from __future__ import annotations

import torch
from torch import nn

from rvq.data.feature_store import Features, feature_chunks

# The std is floored: a dimension that barely varies over the training rows (a quaternion component of an upright
# object: std 7e-4 in the libero_object study data) would otherwise turn a tipped object at evaluation into an input
# of hundreds of standard deviations. With the floor a deviation of 0.1 reads as 10.
MIN_STD = 1e-2


class FeatureStandardizer(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, features: Features) -> "FeatureStandardizer":
        """Statistics of training features `[N, D]` (N >= 2, finite; in RAM or `LazyFeatures`, read in chunks:
        two passes in float64, mean then unbiased variance)."""
        if features.ndim != 2 or features.shape[1] != self.mean.shape[0]:
            raise ValueError(f"features must be [N, {self.mean.shape[0]}], got {list(features.shape)}")
        count = features.shape[0]
        if count < 2:
            raise ValueError(f"standardization needs at least 2 training rows, got {count}")
        total = torch.zeros(self.mean.shape, dtype=torch.float64)
        for chunk in feature_chunks(features):
            chunk = chunk.to("cpu", torch.float64)
            if not torch.isfinite(chunk).all():
                raise ValueError("training features contain NaN/inf")
            total += chunk.sum(dim=0)
        mean = total / count
        squares = sum(((chunk.to("cpu", torch.float64) - mean) ** 2).sum(dim=0) for chunk in feature_chunks(features))
        self.mean.copy_(mean)
        self.std.copy_((squares / (count - 1)).sqrt().clamp(min=MIN_STD))
        return self

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features `[B, D]` → standardized `[B, D]`."""
        return (features - self.mean.to(features.dtype)) / self.std.to(features.dtype)
