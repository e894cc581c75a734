"""Main model: a layer-causal transformer over the RFSQ layers.

Sequence position `l` (one per RFSQ layer) holds the feature context, a layer embedding and the
embedding of the codes of layer `l-1` (a learned start vector at `l = 0`). With a causal mask, the
logits of layer `l` depend on the features and on the codes of layers `< l` only: the model never
sees the tokens it is asked to predict, it decodes greedily layer by layer, and one pass
teacher-forced on a draft's layers `0..k-1` gives its own choice for layers `0..k`.

Every pass has the same shape `[B, L, width]` whatever is known so far (unknown layers are filled
with code 0; the mask keeps them from earlier outputs). Rows of a fixed-shape computation do not
depend on later rows, so a verification pass and a greedy pass give bit-identical logits for the
layers they share: this is what makes exact speculative decoding exact.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from rvq.models.config import MainConfig
from rvq.models.layer_cache import LayerCache, block_rows, row_linear, row_matmul
from rvq.models.standardize import FeatureStandardizer
from rvq.validation import check_shape


class CausalBlock(nn.Module):
    """Pre-LN transformer block with causal self-attention over the layer axis."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x `[B, L, width]` → `[B, L, width]`."""
        q, k, v = rearrange(self.qkv(self.norm1(x)), "b l (three h d) -> three b h l d", three=3, h=self.heads)
        attended = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )
        x = x + self.proj(rearrange(attended, "b h l d -> b l (h d)"))
        return x + self.mlp(self.norm2(x))


class MainModel(nn.Module):
    def __init__(self, config: MainConfig) -> None:
        super().__init__()
        self.config = config
        tokens = config.tokens
        self.standardize = FeatureStandardizer(config.feature_dim) if config.standardize_features else nn.Identity()
        self.context = nn.Sequential(nn.LayerNorm(config.feature_dim), nn.Linear(config.feature_dim, config.width))
        self.start = nn.Parameter(torch.zeros(config.width))
        self.code_embedding = nn.Linear(tokens.positions * tokens.num_levels, config.width, bias=False)
        self.layer_embedding = nn.Parameter(torch.randn(tokens.num_layers, config.width) * 0.02)
        self.blocks = nn.ModuleList(CausalBlock(config.width, config.heads, config.dropout) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.width)
        out = tokens.positions * tokens.num_levels
        self.head_weight = nn.Parameter(torch.randn(tokens.num_layers, config.width, out) * config.width**-0.5)
        self.head_bias = nn.Parameter(torch.zeros(tokens.num_layers, out))

    def no_weight_decay(self) -> set[str]:
        """Embeddings kept as matrices (codes as a one-hot projection, layers) and the per-layer output biases:
        not decayed (rvq.training.optim)."""
        return {"code_embedding.weight", "layer_embedding", "head_bias"}

    @property
    def feature_dim(self) -> int:
        return self.config.feature_dim

    @property
    def num_layers(self) -> int:
        return self.config.tokens.num_layers

    def encode_features(self, features: torch.Tensor) -> torch.Tensor:
        """features `[B, D]` → context `[B, width]` (computed once per decode)."""
        check_shape(features, "features", (None, self.feature_dim))
        return self.context(self.standardize(features))

    def logits_from_context(self, context: torch.Tensor, codes: torch.Tensor | None = None) -> torch.Tensor:
        """context `[B, width]`, codes `[B, P, n]` of layers `0..n-1` → logits `[B, L, P, levels]`.

        Logits of layer `l` are conditioned on the given codes of layers `< l`; for `l > n` they are
        conditioned on filler codes and are meaningless.
        """
        tokens = self.config.tokens
        batch, num_layers = context.shape[0], tokens.num_layers
        inputs = torch.zeros(batch, tokens.positions, num_layers - 1, dtype=torch.long, device=context.device)
        if codes is not None:
            check_shape(codes, "codes", (batch, tokens.positions, None))
            if codes.shape[-1] > num_layers:
                raise ValueError(f"codes has {codes.shape[-1]} layers, the model has {num_layers}")
            if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= tokens.num_levels):
                raise ValueError(f"codes must lie in [0, {tokens.num_levels}), got [{int(codes.min())}, {int(codes.max())}]")
            given = min(codes.shape[-1], num_layers - 1)
            inputs[..., :given] = codes[..., :given]
        one_hot = F.one_hot(inputs, tokens.num_levels).to(context.dtype)  # [B, P, L-1, levels]
        embedded = self.code_embedding(rearrange(one_hot, "b p l v -> b l (p v)"))  # [B, L-1, width]
        start = self.start.expand(batch, 1, -1)
        x = torch.cat([start, embedded], dim=1) + self.layer_embedding + context[:, None]
        for block in self.blocks:
            x = block(x)
        logits = torch.einsum("blw,lwo->blo", self.norm(x), self.head_weight) + self.head_bias
        return rearrange(logits, "b l (p v) -> b l p v", v=tokens.num_levels)

    # --- incremental decoding (inference): a pass computes only the layers it adds (`rvq.models.layer_cache`) -----

    def start_cache(self, context: torch.Tensor) -> LayerCache:
        """An empty cache for a decode of the batch whose context `[B, width]` is given (`encode_features`)."""
        check_shape(context, "context", (None, self.config.width))
        heads = self.config.heads
        shape = (context.shape[0], heads, self.num_layers, self.config.width // heads)
        slots = [torch.zeros(shape, dtype=context.dtype, device=context.device) for _ in self.blocks]
        return LayerCache(context, slots, [torch.zeros_like(s) for s in slots])

    def extend(self, cache: LayerCache, codes: torch.Tensor | None, rows: int = 1) -> torch.Tensor:
        """Logits `[B, rows, P, levels]` of layers `cache.filled .. cache.filled + rows - 1`, conditioned on `codes`
        `[B, P, n]` (layer `l` reads the codes of layer `l - 1`, so `n >= cache.filled + rows - 1`); the cache then
        holds them. A row's logits are the same bits however many rows a pass computes (see `rvq.models.layer_cache`),
        and equal `logits_from_context` to float rounding."""
        tokens = self.config.tokens
        start, batch = cache.filled, cache.batch
        if not 1 <= rows <= self.num_layers - start:
            raise ValueError(f"a pass from layer {start} computes 1..{self.num_layers - start} layers, got {rows}")
        needed = start + rows - 1
        if needed:
            if codes is None:
                raise ValueError(f"layers {start}..{needed} read the codes of layers < {needed}: codes are missing")
            check_shape(codes, "codes", (batch, tokens.positions, None))
            if codes.shape[-1] < needed:
                raise ValueError(f"codes hold {codes.shape[-1]} layers; layers up to {needed} need {needed}")
        parts = []
        first = start
        if start == 0:
            parts.append(self.start.expand(batch, 1, -1))
            first = 1
        if first < start + rows:
            given = codes[..., first - 1:start + rows - 1]  # [B, P, n]
            one_hot = F.one_hot(given, tokens.num_levels).to(cache.context.dtype)
            flat = rearrange(one_hot, "b p l v -> (b l) (p v)")
            parts.append(rearrange(row_linear(flat, self.code_embedding), "(b l) w -> b l w", b=batch))
        x = torch.cat(parts, dim=1) + self.layer_embedding[start:start + rows] + cache.context[:, None]
        for block, keys, values in zip(self.blocks, cache.keys, cache.values):
            x = block_rows(block, x, keys, values, start)
        cache.filled = start + rows
        normed = self.norm(x)
        logits = torch.stack([row_matmul(normed[:, r], self.head_weight[start + r], self.head_bias[start + r])
                              for r in range(rows)], dim=1)  # [B, rows, P * levels], one layer's head per row
        return rearrange(logits, "b r (p v) -> b r p v", v=tokens.num_levels)

    def forward(self, features: torch.Tensor, codes: torch.Tensor | None = None) -> torch.Tensor:
        """features `[B, D]`, codes `[B, P, n]` (teacher forcing) → logits `[B, L, P, levels]`."""
        return self.logits_from_context(self.encode_features(features), codes)
