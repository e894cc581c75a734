"""Configurations of the Phase 2 token predictors, and the code grid they predict (`TokenSpace`).

Three layouts of one chunk's codes, converted only by `TokenSpace`'s methods:
- chunk `[B, C, H, L]` (chunk step, tokenizer latent, RFSQ layer): what the tokenizer encodes and decodes;
- positions `[B, P, L]` with `P = C * H` ordered `(c h)`: what the main head is teacher-forced on and RSD fills;
- layer rows `[B, L, P]`: what the heads emit (logits `[B, L, P, levels]`, their argmax `[B, L, P]`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from einops import rearrange

from rvq.rfsq.config import TokenizerConfig
from rvq.validation import check_shape


@dataclass(frozen=True)
class TokenSpace:
    """The code grid a head predicts; taken from the tokenizer it is trained for."""

    chunk_size: int = 8
    hidden_dim: int = 16
    num_layers: int = 8
    num_levels: int = 7

    @classmethod
    def from_tokenizer(cls, config: TokenizerConfig) -> "TokenSpace":
        return cls(config.chunk_size, config.hidden_dim, config.num_layers, config.num_levels)

    @property
    def positions(self) -> int:
        return self.chunk_size * self.hidden_dim

    def chunk_to_positions(self, codes: torch.Tensor) -> torch.Tensor:
        """chunk `[B, C, H, L]` → positions `[B, P, L]`."""
        check_shape(codes, "codes [B, C, H, L]", (None, self.chunk_size, self.hidden_dim, None))
        return rearrange(codes, "b c h l -> b (c h) l")

    def positions_to_chunk(self, codes: torch.Tensor) -> torch.Tensor:
        """positions `[B, P, L]` → chunk `[B, C, H, L]`."""
        check_shape(codes, "codes [B, P, L]", (None, self.positions, None))
        return rearrange(codes, "b (c h) l -> b c h l", c=self.chunk_size)

    def chunk_to_rows(self, codes: torch.Tensor) -> torch.Tensor:
        """chunk `[B, C, H, L]` → layer rows `[B, L, P]` (a head's targets)."""
        check_shape(codes, "codes [B, C, H, L]", (None, self.chunk_size, self.hidden_dim, None))
        return rearrange(codes, "b c h l -> b l (c h)")

    def rows_to_chunk(self, rows: torch.Tensor) -> torch.Tensor:
        """layer rows `[B, L, P]` (a head's argmax) → chunk `[B, C, H, L]`."""
        check_shape(rows, "codes [B, L, P]", (None, None, self.positions))
        return rearrange(rows, "b l (c h) -> b c h l", c=self.chunk_size)

    def rows_to_positions(self, rows: torch.Tensor) -> torch.Tensor:
        """layer rows `[B, L, P]` → positions `[B, P, L]`."""
        check_shape(rows, "codes [B, L, P]", (None, None, self.positions))
        return rearrange(rows, "b l p -> b p l")


class _HeadConfigIO:
    """Checkpoint (de)serialization shared by the head configs: a plain dict, `tokens` nested."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        data = dict(data)
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown {cls.__name__} key(s): {unknown}")
        data["tokens"] = TokenSpace(**data["tokens"])
        return cls(**data)


@dataclass(frozen=True)
class DraftConfig(_HeadConfigIO):
    """Draft: an MLP from features to the coarse layers L0..L(num_draft_layers-1)."""

    feature_dim: int
    tokens: TokenSpace = TokenSpace()
    num_draft_layers: int = 3
    width: int = 512
    depth: int = 2
    dropout: float = 0.1
    standardize_features: bool = False  # per-dimension (x - mean) / std of the training rows (`FeatureStandardizer`)

    def __post_init__(self) -> None:
        if not 1 <= self.num_draft_layers <= self.tokens.num_layers:
            raise ValueError(f"num_draft_layers must be in [1, {self.tokens.num_layers}], got {self.num_draft_layers}")
        if self.feature_dim < 1 or self.width < 1 or self.depth < 1:
            raise ValueError("feature_dim, width and depth must be >= 1")


@dataclass(frozen=True)
class MainConfig(_HeadConfigIO):
    """Main: a layer-causal transformer over the RFSQ layers, conditioned on the features."""

    feature_dim: int
    tokens: TokenSpace = TokenSpace()
    width: int = 512
    depth: int = 4
    heads: int = 8
    dropout: float = 0.1
    standardize_features: bool = False  # per-dimension (x - mean) / std of the training rows (`FeatureStandardizer`)

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise ValueError(f"width {self.width} must be divisible by heads {self.heads}")
        if self.feature_dim < 1 or self.depth < 1:
            raise ValueError("feature_dim and depth must be >= 1")
