"""Small heads for fast tests."""

from __future__ import annotations

import torch

from rvq.models import DraftConfig, DraftModel, MainConfig, MainModel, TokenSpace

SMALL_TOKENS = TokenSpace(chunk_size=2, hidden_dim=3, num_layers=5, num_levels=4)


def small_main(feature_dim: int = 12, tokens: TokenSpace = SMALL_TOKENS, width: int = 32, depth: int = 2,
               seed: int = 0, dtype: torch.dtype = torch.float32) -> MainModel:
    torch.manual_seed(seed)
    return MainModel(MainConfig(feature_dim, tokens, width=width, depth=depth, heads=4, dropout=0.0)).to(dtype).eval()


def small_draft(feature_dim: int = 12, tokens: TokenSpace = SMALL_TOKENS, layers: int = 3, width: int = 32,
                seed: int = 1, dtype: torch.dtype = torch.float32) -> DraftModel:
    torch.manual_seed(seed)
    return DraftModel(DraftConfig(feature_dim, tokens, num_draft_layers=layers, width=width, dropout=0.0)).to(dtype).eval()
