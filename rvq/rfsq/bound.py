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

from rvq.rfsq.grid import codes_to_values
from rvq.rfsq.residual import NotDecodableError

SLACK_REL = 1e-5
SLACK_ABS = 1e-6


MONOTONE = (nn.ReLU, nn.Tanh, nn.Dropout)  # map a box's ends to its image's ends (dropout: identity in eval mode)


def widen(lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The box widened by the float slack (`SLACK_REL`, `SLACK_ABS`)."""
    slack = SLACK_REL * torch.maximum(lo.abs(), hi.abs()) + SLACK_ABS
    return lo - slack, hi + slack


class AutoencoderIntervals:
    """The completion interval of an `ActionRFSQAE` (eval mode, its weights fixed) with the quantizer's and decoder's
    constants computed once. Call: codes `[B, C, H, k]`, 0 <= k <= L → `(prefix, lo, hi)`, normalized actions
    `[B, C, A]` (before the float slack: `widen`); `prefix` is the model's own decode of the codes, bit for bit (None
    for k = 0)."""

    def __init__(self, model: nn.Module) -> None:
        quantizer = model.quantizer
        if not quantizer.decodable:
            raise NotDecodableError(f"{type(quantizer).__name__} has no code-only reconstruction to bound")
        for module in model.decoder:
            if not isinstance(module, (nn.Linear, *MONOTONE)):
                raise NotImplementedError(f"no interval bound through {type(module).__name__}")
        offset, half_range = quantizer.layer_affine()  # [L, H]
        levels, layers = quantizer.num_levels, quantizer.num_layers
        codes = torch.arange(levels, device=half_range.device)[:, None].expand(levels, quantizer.dim)
        self.factor = quantizer.edge_multiplier(codes, (offset, half_range))  # [n, H]: layers >= 1, by layer 0's code
        self.offset, self.half_range, self.levels, self.layers = offset, half_range, levels, layers
        zero = torch.zeros_like(half_range[:1])
        self.tail_offset = torch.cat([offset.flip(0).cumsum(0).flip(0), zero])  # [L + 1, H]: layers >= k
        self.tail_half_range = torch.cat([half_range.flip(0).cumsum(0).flip(0), zero])
        self.model = model
        self.mlp = [m for m in model.decoder]
        self.abs_weights = {id(m): m.weight.abs().t() for m in model.decoder if isinstance(m, nn.Linear)}
        if model.decoder_skip is not None:
            self.abs_weights[id(model.decoder_skip)] = model.decoder_skip.weight.abs().t()

    def _linear(self, lo: torch.Tensor, hi: torch.Tensor, layer: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
        mid, spread = layer((lo + hi) / 2), ((hi - lo) / 2) @ self.abs_weights[id(layer)]
        return mid - spread, mid + spread

    def box(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """codes `[..., H, k]` → the prefix's latent `[..., H]` and the completions' radius around it (k = 0: the
        centre of every completion)."""
        k = codes.shape[-1]
        if k == 0:
            centre = self.tail_offset[0].expand(codes.shape[:-1])  # every layer's offset
            radius = self.half_range[0] + self.tail_half_range[1] * self.factor.amax(0).clamp_min(1.0)
            return centre, radius.expand(codes.shape[:-1])
        factor = self.factor.gather(0, codes[..., 0].reshape(-1, codes.shape[-2])).reshape(codes.shape[:-1])
        # the quantizer's own accumulation, layer by layer in its order: the prefix's latent is decode's, bit for bit
        z = torch.zeros(codes.shape[:-1], dtype=self.half_range.dtype, device=codes.device)
        for layer in range(k):
            value = codes_to_values(codes[..., layer], self.levels, self.half_range.dtype)
            scale = self.half_range[layer] if layer == 0 else self.half_range[layer] * factor
            z = z + (self.offset[layer] + value * scale)
        return z, self.tail_half_range[k] * factor

    def __call__(self, codes: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """codes `[B, C, H, k]` → `(prefix decode or None for k = 0, lo, hi)`, normalized actions `[B, C, A]`."""
        model = self.model
        z, radius = self.box(codes)
        k = codes.shape[-1]
        centre = z + self.tail_offset[k] if k else z
        lo_z, hi_z = centre - radius, centre + radius
        lo, hi = lo_z, hi_z
        for module in self.mlp:
            lo, hi = self._linear(lo, hi, module) if isinstance(module, nn.Linear) else (module(lo), module(hi))
        if model.decoder_skip is not None:
            skip_lo, skip_hi = self._linear(model._skip_input(lo_z), model._skip_input(hi_z), model.decoder_skip)
            lo, hi = lo + skip_lo, hi + skip_hi
        prefix = model.decode_latent(z, k) if k else None
        return prefix, lo, hi

    def min_half_width(self, k: int) -> torch.Tensor:
        """`[A]`: a lower bound on the half-width of every interval at depth k (k layers known), from the linear path
        alone (an interval's width is the sum of its paths' widths; atanh's slope is >= 1; edge factors are >= 1).
        Zeros without a linear path (a ReLU MLP alone may collapse an interval)."""
        skip = self.model.decoder_skip
        if skip is None:
            return torch.zeros(self.model.config.action_dim, dtype=self.half_range.dtype)
        radius = self.half_range[0] + self.tail_half_range[1] if k == 0 else self.tail_half_range[k]
        return self.abs_weights[id(skip)].t() @ radius


class PrefixIntervals:
    """Certified completion intervals of a tokenizer model (`ActionRFSQAE` or `CascadeRFSQAE`, in eval mode) with its
    constants computed once, at the cost early exit can pay after every layer (the models' `completion_interval`
    builds one per call). Call: codes `[B, C, H, k]`, 0 <= k <= L → `(prefix, lo, hi)`, normalized actions
    `[B, C, A]`; `prefix` is the model's decode of the codes, bit for bit (None for k = 0)."""

    def __init__(self, model: nn.Module) -> None:
        if model.training:
            raise ValueError("certified intervals need the tokenizer in eval mode (its scales fixed)")
        self.cascade = hasattr(model, "stage1")
        self.model = model
        self.rest = AutoencoderIntervals(model.stage1 if self.cascade else model)
        self.first = AutoencoderIntervals(model.stage0) if self.cascade else None

    def min_half_width(self, k: int) -> torch.Tensor:
        """`[A]` normalized: a lower bound on the half-width of the interval of any codes at depth k >= 1 (before the
        float slack), what `AutoencoderIntervals.min_half_width` gives, through the cascade's residual scale."""
        if not self.cascade:
            return self.rest.min_half_width(k)
        return self.rest.min_half_width(k - 1) * self.model.residual_scale

    @torch.no_grad()
    def __call__(self, codes: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        if not self.cascade:
            prefix, lo, hi = self.rest(codes)
            lo, hi = widen(lo, hi)
            return prefix, lo, hi
        # layer 0's decode (or, with no layer known, its interval) plus residual_scale times the residual stage's
        fine, lo, hi = self.rest(codes[..., 1:])
        scale = self.model.residual_scale
        if codes.shape[-1] == 0:
            _, lo0, hi0 = self.first(codes)
            lo, hi = widen(lo0 + lo * scale, hi0 + hi * scale)
            return None, lo, hi
        coarse = self.model.stage0.decode_latent(self.first.box(codes[..., :1])[0], 1)  # decode_from_indices' bits
        prefix = coarse if fine is None else coarse + fine * scale
        lo, hi = widen(coarse + lo * scale, coarse + hi * scale)
        return prefix, lo, hi
