"""`vector_quantize_pytorch.ResidualFSQ` inside the same encoder/decoder as `ActionRFSQAE`.

ResidualFSQ (fixed per-layer scales `n^-l`, input soft-clamped to `±n/(n-1)`) is the strongest
public decodable design; wrapping it with our MLPs makes the comparison about the quantizer alone.
Codes are exposed per latent dim, `[..., H, L]`, like ours (the library's per-layer index packs
the H level indices into one integer).
"""

from __future__ import annotations


import torch
from einops import rearrange

from rvq.rfsq.autoencoder import ActionRFSQAE
from rvq.rfsq.config import TokenizerConfig
from rvq.rfsq.grid import codes_to_values, values_to_codes
from rvq.rfsq.residual import ResidualScalarQuantizer


class LibraryResidualFSQ(ResidualScalarQuantizer):
    """Adapter over `GroupedResidualFSQ` with one group per latent dim (levels `[n]` each).

    One group per dim is the same elementwise quantizer as `ResidualFSQ(levels=[n] * H)`, without
    the library building an implicit codebook of `n^H` entries. Training uses the library's
    forward pass; `_quantize` restates its arithmetic (soft clamp, scales `n^-l`, hard-clamped
    symmetric grid) to expose per-layer residuals and codes, and a test checks the two agree.
    """

    def __init__(self, dim: int, num_layers: int, num_levels: int, quantize_dropout: bool = False) -> None:
        super().__init__(dim, num_layers, num_levels)
        try:
            from vector_quantize_pytorch import GroupedResidualFSQ
        except ImportError as exc:
            raise ModuleNotFoundError("the ResidualFSQ baseline (rvq compare-tokenizers) needs vector-quantize-pytorch: "
                              'pip install "rvq[bench]" (or "rvq[test]")') from exc

        self.rfsq = GroupedResidualFSQ(dim=dim, groups=dim, levels=[num_levels], num_quantizers=num_layers,
                                       quantize_dropout=quantize_dropout)

    def _scales(self) -> torch.Tensor:
        return self.rfsq.rvqs[0].scales[:, 0].to(self.scale.dtype)  # [L]

    def layer_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        half_range = self._scales()[:, None].expand(self.num_layers, self.dim)
        return torch.zeros_like(half_range), half_range

    def _soft_clamp(self, z: torch.Tensor) -> torch.Tensor:
        clamp = float(self.rfsq.rvqs[0].soft_clamp_input_value)
        return (z / clamp).tanh() * clamp

    def _quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        x = self._soft_clamp(z)
        residual, z_hat = x, torch.zeros_like(x)
        codes, residuals = [], [x]
        for scale in self._scales():
            level = values_to_codes(residual / scale, self.num_levels)
            quantized = codes_to_values(level, self.num_levels, x.dtype) * scale
            residual = residual - quantized
            z_hat = z_hat + quantized
            codes.append(level)
            residuals.append(residual)
        return z_hat, torch.stack(codes, dim=-1), residuals

    def library_forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The library's own output: `(z_hat [..., H], level indices [..., H, L])`."""
        z_hat, indices = self.rfsq(z)  # indices: [H, ..., L]
        return z_hat, rearrange(indices, "h ... l -> ... h l").long()

    def forward(
        self, z: torch.Tensor, keep_layers: torch.Tensor | None = None, prefix_grad: float = 1.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if keep_layers is not None:
            raise ValueError("the library's ResidualFSQ applies its own quantize_dropout; keep_layers is ours")
        if torch.is_grad_enabled() and z.requires_grad:
            return self.library_forward(z)
        return self._quantize(z)[:2]


class ResidualFSQAE(ActionRFSQAE):
    """`ActionRFSQAE` with the library's ResidualFSQ as its quantizer (config.quantizer is ignored).

    `config.quantize_dropout > 0` turns on the library's own `quantize_dropout` (one random cut-off layer
    per training batch, every batch) in place of ours."""

    name = "residual_fsq"

    def __init__(self, config: TokenizerConfig) -> None:
        if config.coarse_decoder or config.layer0_warmup:
            raise ValueError("ResidualFSQ drops layers itself and does not say which prefix a batch kept: "
                             "coarse_decoder and layer0_warmup are rvq's quantizers' options only")
        super().__init__(config=config)
        self.quantizer = LibraryResidualFSQ(config.hidden_dim, config.num_layers, config.num_levels,
                                            quantize_dropout=config.quantize_dropout > 0)

    def _prefix_lengths(self, batch: int, device: torch.device) -> None:
        return None  # the library drops layers itself
