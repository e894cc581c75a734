"""Shared machinery of the residual scalar quantizers.

A residual quantizer of `L` layers turns a latent `z: [..., H]` into codes `[..., H, L]`.
Layer `l` quantizes the residual `r_l` (with `r_0 = z`) on the grid `linspace(-1, 1, n)`
after an affine normalization that is *a property of the quantizer, not of the sample*:

    u_l      = (r_l - offset_l) / half_range_l        # grid units
    code_l   = round_to_grid(clamp(u_l, -1, 1))
    recon_l  = offset_l + value(code_l) * half_range_l
    r_{l+1}  = r_l - recon_l

`offset` and `half_range` are `[L, H]` tensors computed by the subclass from its buffers, so
`decode(encode(z))` needs the codes alone. The seed's per-token LayerNorm variant overrides
the normalization with per-sample statistics and therefore cannot decode.
"""

from __future__ import annotations

import torch
from torch import nn

from rvq.rfsq.grid import codes_to_values, values_to_codes
from rvq.validation import check_finite


class NotDecodableError(RuntimeError):
    """Raised when codes alone cannot reproduce the quantizer's output (per-token LayerNorm)."""


class ResidualScalarQuantizer(nn.Module):
    """Base class: `forward(z) -> (z_hat, codes)`, `encode`, `decode`, residual diagnostics.

    Buffers (same keys for every strategy, so checkpoints are interchangeable in layout):
      center: `[H]`   offset of layer 0 (mean of the latent)
      scale:  `[L, H]` calibrated residual std per layer and latent dim
      calibration_steps: `[]` number of calibration updates seen
    """

    decodable: bool = True
    to_codes = staticmethod(values_to_codes)  # arithmetic rounding onto the grid

    def __init__(self, dim: int, num_layers: int, num_levels: int) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if num_levels < 2:
            raise ValueError(f"num_levels must be >= 2, got {num_levels}")
        self.dim = dim
        self.num_layers = num_layers
        self.num_levels = num_levels
        self.register_buffer("center", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(num_layers, dim))
        self.register_buffer("calibration_steps", torch.zeros((), dtype=torch.int64))

    # --- normalization: subclasses define it -------------------------------------------------

    def layer_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """`(offset, half_range)`, each `[L, H]`: latent value of grid point 0 and of grid point +1."""
        raise NotImplementedError

    def calibrate_layer(self, layer: int, residual: torch.Tensor) -> None:
        """Hook called in training mode with the detached residual `[N, H]` before layer `layer`."""

    def sample_affine(
        self, layer: int, residual: torch.Tensor, affine: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`(offset, half_range)` broadcastable to `residual: [..., H]` for this layer.

        `affine` is `layer_affine()` computed once per call (None for per-sample strategies).
        """
        offset, half_range = affine
        return offset[layer], half_range[layer]

    # --- quantization -------------------------------------------------------------------------

    def edge_multiplier(
        self, code0: torch.Tensor, affine: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Per-element factor `[..., H]` on the half-range of layers ≥ 1, from layer 0's codes alone.

        Layer 0 covers `offset_0 ± a_0 n/(n-1)`. If that is narrower than the input's bound
        (`input_bound`: 1 for a tanh latent), an element in an edge cell (code 0 or n-1) may lie up to
        `overflow` beyond it. Its later layers are widened by `1 + overflow / half_step_0`, so they cover
        the whole remainder: no element of the input's range is ever clipped. Elements in inner cells
        keep factor 1. Decodable, since it depends on the codes only.
        """
        if not self.decodable:
            return torch.ones_like(code0, dtype=self.scale.dtype)
        offset, half_range = self.layer_affine() if affine is None else affine
        n = self.num_levels
        half_step, reach = half_range[0] / (n - 1), half_range[0] * n / (n - 1)
        over_hi = torch.relu(self.input_bound - (offset[0] + reach))
        over_lo = torch.relu(self.input_bound + (offset[0] - reach))
        factor = torch.ones_like(code0, dtype=half_range.dtype)
        factor = torch.where(code0 == n - 1, 1 + over_hi / half_step, factor)
        return torch.where(code0 == 0, 1 + over_lo / half_step, factor)

    input_bound: float = 0.0  # bound on |latent| that layer 0 must be able to reach (0: no extension)

    def _quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Returns `(z_hat [..., H], codes [..., H, L], residuals)`; `residuals[l]` is `r_l`, L+1 of them."""
        z_hat, codes, residuals, _ = self._quantize_with_scales(z)
        return z_hat, codes, residuals

    def _quantize_with_scales(self, z: torch.Tensor):
        """`_quantize` plus the per-element `(offset, half_range)` each layer used."""
        check_finite(z, "latent")
        calibrating = self.training
        residual = z
        z_hat = torch.zeros_like(z)
        codes, residuals, scales = [], [z], []
        factor = None
        affine = self.layer_affine() if self.decodable and not calibrating else None
        for layer in range(self.num_layers):
            if calibrating:
                seen = residual if factor is None else residual / factor
                self.calibrate_layer(layer, seen.detach().reshape(-1, self.dim))
            if calibrating and self.decodable:  # the scales change as layers calibrate
                affine = self.layer_affine()
            offset, half_range = self.sample_affine(layer, residual, affine)
            if factor is not None:
                half_range = half_range * factor
            code = self.to_codes((residual - offset) / half_range, self.num_levels)
            recon = offset + codes_to_values(code, self.num_levels, z.dtype) * half_range
            residual = residual - recon
            z_hat = z_hat + recon
            codes.append(code)
            residuals.append(residual)
            scales.append((offset, half_range))
            if layer == 0:
                factor = self.edge_multiplier(code, affine)
        if calibrating:
            self.calibration_steps += 1
        return z_hat, torch.stack(codes, dim=-1), residuals, scales

    def forward(self, z: torch.Tensor, keep_layers: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`z: [B, ..., H]` → `(z_hat [B, ..., H], codes [B, ..., H, L])`; straight-through gradient to `z`.

        `keep_layers` `[B]` (training: quantize dropout): sample b's `z_hat` sums its first `keep_layers[b]`
        layers only, as `decode(codes[..., :k])` would; the codes are unchanged."""
        if keep_layers is None:
            z_hat, codes, _ = self._quantize(z)
        else:
            z_hat, codes = self._prefix_quantize(z, keep_layers)
        if torch.is_grad_enabled() and z.requires_grad:
            z_hat = z_hat.detach() + (z - z.detach())  # value z_hat, gradient dz
        return z_hat, codes

    def _prefix_quantize(self, z: torch.Tensor, keep_layers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes of all layers and, per sample, the reconstruction of its first `keep_layers` layers."""
        _, codes, residuals = self._quantize(z)
        prefix = torch.stack([z - r for r in residuals[1:]], dim=-1)  # [..., H, L]: z minus what k layers leave
        index = (keep_layers.long() - 1).clamp(0, self.num_layers - 1)
        index = index.view(-1, *([1] * (z.dim() - 1)), 1).expand(*z.shape, 1)
        return prefix.gather(-1, index).squeeze(-1), codes

    @torch.no_grad()
    def encode(self, z: torch.Tensor) -> torch.Tensor:
        """`z: [..., H]` → codes `[..., H, L]` int64 in `[0, num_levels)`."""
        return self._quantize(z)[1]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes `[..., H, k]` (k ≤ L, the first k layers) → `z_hat [..., H]`.

        Accumulates layer by layer in the same order as `forward`, so in eval mode
        `decode(encode(z))` equals `forward(z)[0]` bit for bit.
        """
        if not self.decodable:
            raise NotDecodableError(
                f"{type(self).__name__} cannot decode from codes: its per-token normalization statistics "
                "are not stored in the codes. Use the robust quantizer for anything that decodes tokens."
            )
        offset, half_range = self.layer_affine()
        z_hat = torch.zeros(codes.shape[:-1], dtype=half_range.dtype, device=codes.device)
        factor = None
        for layer in range(codes.shape[-1]):
            value = codes_to_values(codes[..., layer], self.num_levels, half_range.dtype)
            scale = half_range[layer] if factor is None else half_range[layer] * factor
            z_hat = z_hat + (offset[layer] + value * scale)
            if layer == 0:
                factor = self.edge_multiplier(codes[..., 0], (offset, half_range))
        return z_hat

    @torch.no_grad()
    def residuals(self, z: torch.Tensor) -> list[torch.Tensor]:
        """Residual before each layer and after the last: `L + 1` tensors shaped like `z`."""
        return self._quantize(z)[2]

    @torch.no_grad()
    def normalized_residuals(self, z: torch.Tensor) -> list[torch.Tensor]:
        """Residual before each layer in the layer's own normalized units: `(r_l - offset_l) / std_l`."""
        _, _, residuals, scales = self._quantize_with_scales(z)
        return [(r - off) / half * self.grid_std_range() for r, (off, half) in zip(residuals, scales)]

    def grid_std_range(self) -> float:
        """Half-range of the grid in units of the normalized residual's std."""
        return 1.0

    def latent_error_bound(self, z: torch.Tensor, num_layers: int | None = None) -> torch.Tensor:
        """Guaranteed elementwise bound on `|z - decode(encode(z)[..., :k])|`, `[..., H]`.

        With grid half-range `a_l` (latent units) and `n` levels, layer l covers
        `offset_l ± a_l * n / (n - 1)` and leaves at most half a step, `a_l / (n - 1)`.
        When `a_l >= a_{l-1} / n` for every layer and only layer 0 has an offset, each layer covers
        what the previous one leaves; edge cells of layer 0 widen later layers by `m` (see
        `edge_multiplier`) so that everything up to `input_bound` is covered. Hence

            |z - z_hat| <= m * a_{k-1} / (n - 1) + relu(|z - offset_0| - max(reach_0, bound side))

        where the last term is non-zero only for inputs beyond both layer 0's reach and `input_bound`.
        """
        if not self.decodable:
            raise NotDecodableError(f"{type(self).__name__} has no code-only reconstruction to bound")
        k = self.num_layers if num_layers is None else num_layers
        offset, half_range = self.layer_affine()
        n = self.num_levels
        if bool((half_range[1:] < half_range[:-1] / n * (1 - 1e-6)).any()) or bool(offset[1:].abs().max() > 0):
            raise RuntimeError("the quantizer's scales violate the coverage condition; no bound is guaranteed")
        reach = half_range[0] * n / (n - 1)
        hi = torch.maximum(offset[0] + reach, torch.full_like(reach, self.input_bound))
        lo = torch.minimum(offset[0] - reach, torch.full_like(reach, -self.input_bound))
        overflow = torch.relu(z - hi) + torch.relu(lo - z)
        factor = self.edge_multiplier(self.encode(z)[..., 0])
        return overflow + factor * half_range[k - 1] / (n - 1)
