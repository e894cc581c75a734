"""Incremental decoding of the main model over the RFSQ layer axis: a key/value cache of `L` slots per block, and
row-stable kernels, so that a pass computes only the layers it adds.

Why row-stable kernels (measured on the 2-core CPU, torch 2.13): a `torch.nn.Linear` row's result depends on how
many rows are computed with it (a [1, w] input and row 3 of an [8, w] input differ in the last bits: BLAS picks other
blockings per row count), so a cache that computed one row where the full pass computed eight would not reproduce
the full pass's tokens. Here every product is a batch of one-row products (`torch.baddbmm` with M = 1 per row) and
every query row attends to all `L` slots with the later ones masked, so a row's logits are the same bits whether it
is computed alone (a greedy step), with the rows before it (a draft's verification) or in a full pass. Against the
fused training pass (`MainModel.logits_from_context`: one GEMM over all rows, fused attention) they agree to float
rounding (tested within 1e-5).

Shapes: cache keys / values `[B, heads, L, head_dim]` per block (slots `>= filled` hold rows to be overwritten and
are never attended to); a pass over `R` rows takes inputs `[B, R, width]` and returns logits `[B, R, P, levels]`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def row_matmul(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x `[N, in]` @ weight `[in, out]` (+ bias `[out]`) → `[N, out]`, each row a product of its own (a batch of
    `[1, in] @ [in, out]` over one shared, expanded matrix): the bits of a row do not depend on `N`. (A batch of
    distinct matrices is not row-stable: measured, torch picks another kernel for one of them.)"""
    expanded = weight.expand(x.shape[0], -1, -1)
    if bias is None:
        return torch.bmm(x[:, None, :], expanded)[:, 0]
    return torch.baddbmm(bias.expand(x.shape[0], 1, -1), x[:, None, :], expanded)[:, 0]


def row_linear(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """`layer` on x `[N, in]` → `[N, out]`, row-stable (`row_matmul`)."""
    return row_matmul(x, layer.weight.t(), layer.bias)


@dataclass
class LayerCache:
    """What a decode has computed so far: the feature context `[B, width]`, per block the keys and values
    `[B, heads, L, head_dim]` of the layers `< filled`."""

    context: torch.Tensor
    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    filled: int = 0

    @property
    def batch(self) -> int:
        return int(self.context.shape[0])

    def truncate(self, filled: int) -> None:
        """Forget the layers `>= filled` (a rejected draft's rows): the next pass recomputes them."""
        if not 0 <= filled <= self.filled:
            raise ValueError(f"cannot truncate a cache of {self.filled} layers to {filled}")
        self.filled = filled


def block_rows(block: nn.Module, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, start: int) -> torch.Tensor:
    """One `CausalBlock` on rows `start .. start+R-1`: x `[B, R, width]` → `[B, R, width]`; writes their keys and
    values into slots `start ..` of `keys` / `values` `[B, heads, L, head_dim]` and attends to the slots up to each row."""
    batch, rows, width = x.shape
    slots = keys.shape[2]
    flat = rearrange(x, "b r w -> (b r) w")
    qkv = row_linear(F.layer_norm(flat, (width,), block.norm1.weight, block.norm1.bias, block.norm1.eps), block.qkv)
    q, k, v = rearrange(qkv, "(b r) (three h d) -> three b h r d", b=batch, three=3, h=block.heads)
    keys[:, :, start:start + rows] = k
    values[:, :, start:start + rows] = v
    head_dim = q.shape[-1]
    # every query row against all L slots, one [1, d] @ [d, L] product per row
    expanded_k = rearrange(keys[:, :, None].expand(-1, -1, rows, -1, -1), "b h r l d -> (b h r) d l")
    scores = torch.bmm(rearrange(q, "b h r d -> (b h r) 1 d"), expanded_k) * head_dim ** -0.5  # [(b h r), 1, L]
    position = torch.arange(start, start + rows, device=x.device)
    later = torch.arange(slots, device=x.device)[None, :] > position[:, None]  # [R, L]
    mask = later[None, None].expand(batch, block.heads, -1, -1).reshape(-1, 1, slots)
    probs = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1)
    expanded_v = rearrange(values[:, :, None].expand(-1, -1, rows, -1, -1), "b h r l d -> (b h r) l d")
    attended = rearrange(torch.bmm(probs, expanded_v), "(b h r) 1 d -> (b r) (h d)", b=batch, h=block.heads)
    flat = flat + row_linear(attended, block.proj)
    hidden = F.layer_norm(flat, (width,), block.norm2.weight, block.norm2.bias, block.norm2.eps)
    up, act, down = block.mlp[0], block.mlp[1], block.mlp[2]
    flat = flat + row_linear(act(row_linear(hidden, up)), down)
    return rearrange(flat, "(b r) w -> b r w", b=batch)
