"""Certified completion intervals: what a tokenizer can decode from a prefix of codes, whatever the remaining layers.

Given the first `k` layers of a chunk's codes, the full decode `decode(codes[..., :L])` lies, for every possible
choice of the layers `k..L-1`, inside an interval `[lo, hi]` per chunk step and action dimension. How:

1. Latent box. Layer `l` adds `offset_l + value(code_l) * half_range_l * m` with `value` in `[-1, 1]` and `m` the
   edge multiplier that layer 0's code fixes (`ResidualScalarQuantizer.edge_multiplier`), so the unknown layers add
   at most `sum_l |offset_l| + half_range_l * m` to each latent element: a box around the prefix's latent. With no
   layer known (`k = 0`), layer 0 spans `offset_0 ± half_range_0` and `m` is the largest any code of layer 0 gives.
2. Decoder. Interval bound propagation through the full decoder (the MLP and the linear path): a linear map sends
   a box with centre `c` and radius `r` to centre `W c + b` and radius `|W| r`; ReLU and the linear path's `atanh`
   are monotone, so they map ends to ends. Sound for every point of the box (exact for one linear layer).
3. The cascade (`CascadeRFSQAE`): layer 0's decode plus `residual_scale` times the residual stage's interval.

Float rounding: the interval is widened by `SLACK_REL` of its magnitude plus `SLACK_ABS`, which covers the float32
rounding of the decode itself (tested with hypothesis against the decode, completions drawn at random and at the
grid's ends).
"""

from __future__ import annotations

import torch
from torch import nn

SLACK_REL = 1e-5
SLACK_ABS = 1e-6


def interval_linear(lo: torch.Tensor, hi: torch.Tensor, layer: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
    """`[..., in]` box → `[..., out]` box of `layer` over it."""
    centre, radius = (lo + hi) / 2, (hi - lo) / 2
    mid = layer(centre)
    spread = radius @ layer.weight.abs().t()
    return mid - spread, mid + spread


def interval_sequential(lo: torch.Tensor, hi: torch.Tensor, modules: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """A box through `nn.Sequential` of Linear, ReLU and Tanh layers (others are refused: not bounded here)."""
    for module in modules:
        if isinstance(module, nn.Linear):
            lo, hi = interval_linear(lo, hi, module)
        elif isinstance(module, (nn.ReLU, nn.Tanh, nn.Dropout)):
            lo, hi = module(lo), module(hi)  # monotone (dropout: identity in eval mode)
        else:
            raise NotImplementedError(f"no interval bound through {type(module).__name__}")
    return lo, hi


def widen(lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The box widened by the float slack (`SLACK_REL`, `SLACK_ABS`)."""
    slack = SLACK_REL * torch.maximum(lo.abs(), hi.abs()) + SLACK_ABS
    return lo - slack, hi + slack
