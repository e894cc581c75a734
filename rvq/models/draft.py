"""Draft model: features `[B, D]` → logits of the coarse layers `[B, k, P, levels]` in one pass."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from rvq.models.config import DraftConfig
from rvq.models.standardize import FeatureStandardizer
from rvq.validation import check_shape


class DraftModel(nn.Module):
    def __init__(self, config: DraftConfig) -> None:
        super().__init__()
        self.config = config
        tokens = config.tokens
        self.standardize = FeatureStandardizer(config.feature_dim) if config.standardize_features else nn.Identity()
        layers: list[nn.Module] = [nn.LayerNorm(config.feature_dim), nn.Linear(config.feature_dim, config.width)]
        for _ in range(config.depth - 1):
            layers += [nn.GELU(), nn.Dropout(config.dropout), nn.Linear(config.width, config.width)]
        layers += [nn.GELU(), nn.Dropout(config.dropout)]
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Linear(config.width, config.num_draft_layers * tokens.positions * tokens.num_levels)

    @property
    def feature_dim(self) -> int:
        return self.config.feature_dim

    @property
    def num_draft_layers(self) -> int:
        return self.config.num_draft_layers

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features `[B, D]` → logits `[B, k, P, levels]`."""
        check_shape(features, "features", (None, self.feature_dim))
        logits = self.head(self.trunk(self.standardize(features)))
        return rearrange(
            logits, "b (k p v) -> b k p v", k=self.num_draft_layers, v=self.config.tokens.num_levels
        )
