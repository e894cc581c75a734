"""`CascadeRFSQAE`: layer 0 a one-layer FSQ autoencoder of its own, layers 1..L-1 a residual autoencoder on what
layer 0 leaves of the action (`TokenizerConfig.cascade`).

Each stage's autoencoder has an error floor relative to what it encodes; coding the action-space residual with a
second autoencoder makes the second floor relative to layer 0's error instead of to the action (measured in
docs/history/RESULTS.md, issue 14's ninth pass). Layer 0 is trained for k = 1 alone, so its prefix is a one-layer tokenizer's.

Shapes as `ActionRFSQAE`: actions `[B, C, A]`, codes `[B, C, H, L]` int64 in `[0, num_levels)`; codes `[..., 0]`
come from layer 0's stage and `[..., 1:]` from the residual stage.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import nn

from rvq.module_mode import eval_mode
from rvq.rfsq.autoencoder import ActionRFSQAE, check_codes
from rvq.rfsq.bound import PrefixIntervals
from rvq.rfsq.config import TokenizerConfig
from rvq.rfsq.metrics import residual_diagnostics

RESIDUAL_QUANTILE = 0.99  # the residual stage reads each action dim's residual over this quantile of |residual|
MIN_RESIDUAL_SCALE = 1e-6  # a dim that layer 0 reconstructs (almost) exactly keeps a finite scale


class CascadeRFSQAE(nn.Module):
    """Two autoencoders in series: `stage0` (naive FSQ, one layer) and `stage1` (`config.quantizer`, L - 1 layers,
    the config's other options) on `(x - stage0's decode) / residual_scale`.

    Training (any loop that minimizes the forward's reconstruction error): the first `config.layer0_warmup` training
    forwards train layer 0's stage alone; after them the residual stage trains, with its own `quantize_dropout` over
    its prefixes, and layer 0's stage is fixed, or, with `config.layer0_share` > 0, goes on training on that share
    of each batch's chunks (reconstructed from layer 0 alone; the other chunks' reconstructions take layer 0's decode
    without gradient). `residual_scale` `[A]` is calibrated during training (moving average of
    each dim's RESIDUAL_QUANTILE of |residual|, `config.calibration_momentum`), so codes alone decode."""

    name = "cascade"

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        config = config.resolved(cascade=True)
        if not config.cascade:
            raise ValueError("CascadeRFSQAE builds configs with cascade=True")
        self.config = config
        self.stage0 = ActionRFSQAE.from_config(replace(
            config, quantizer="naive", num_layers=1, coarse_decoder=False, quantize_dropout=0.0, layer0_warmup=0,
            encoder_mlp=True, linear_inverse=False, cascade=False, layer0_share=0.0))
        self.stage1 = ActionRFSQAE.from_config(replace(config, num_layers=config.num_layers - 1, layer0_warmup=0,
                                                       cascade=False, layer0_share=0.0))
        self.register_buffer("residual_scale", torch.ones(config.action_dim))
        self.register_buffer("training_forwards", torch.zeros((), dtype=torch.int64))

    @classmethod
    def from_config(cls, config: TokenizerConfig) -> "CascadeRFSQAE":
        return cls(config)

    action_dim = property(lambda self: self.config.action_dim)
    hidden_dim = property(lambda self: self.config.hidden_dim)
    num_layers = property(lambda self: self.config.num_layers)
    num_levels = property(lambda self: self.config.num_levels)
    decodable = property(lambda self: self.stage1.decodable)

    # --- training ---------------------------------------------------------------------------------

    @torch.no_grad()
    def _calibrate(self, residual: torch.Tensor) -> None:
        """Moving average of each action dim's RESIDUAL_QUANTILE of |residual| (`[B, C, A]`)."""
        batch = torch.quantile(residual.abs().reshape(-1, self.action_dim).float(), RESIDUAL_QUANTILE, dim=0)
        batch = batch.clamp_min(MIN_RESIDUAL_SCALE).to(self.residual_scale.dtype)
        if int(self.training_forwards) == int(self.config.layer0_warmup):  # the first forward after layer 0's
            self.residual_scale.copy_(batch)
        else:
            self.residual_scale.lerp_(batch, self.config.calibration_momentum)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """actions `[B, C, A]` → `(x_recon [B, C, A], codes [B, C, H, L])`. In eval mode the output is what
        `decode_from_indices(codes)` gives; in training mode see the class."""
        if not self.training:
            codes = self.encode(x)
            return self.decode_from_indices(codes), codes
        if self.config.layer0_warmup == 0 and not self.config.layer0_share:
            raise ValueError("cascade trains layer 0's stage during the first layer0_warmup training forwards or on "
                             "a share of every batch: set layer0_warmup > 0 (rvq train-tokenizer: "
                             "layer0_warmup_ratio) or layer0_share > 0")
        if int(self.training_forwards) < self.config.layer0_warmup:
            coarse, codes0 = self.stage0(x)
            with eval_mode(self.stage1):  # no calibration of its quantizer yet
                codes1 = self.stage1.encode(self._residual(x, coarse.detach()))
            self.training_forwards += 1
            return coarse, torch.cat([codes0, codes1], dim=-1)  # codes of every layer, as always
        if self.config.layer0_share:
            return self._forward_joint(x)
        # layer 0's stage is fixed from now on: no gradient, no calibration
        with torch.no_grad(), eval_mode(self.stage0):
            codes0 = self.stage0.encode(x)
            coarse = self.stage0.decode_from_indices(codes0)
            self._calibrate(x - coarse)
        fine, codes1 = self.stage1(self._residual(x, coarse))
        self.training_forwards += 1
        return coarse + fine * self.residual_scale, torch.cat([codes0, codes1], dim=-1)

    def _forward_joint(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both stages train: a `layer0_share` of the chunks (drawn per chunk) is reconstructed from layer 0 alone,
        the rest from layer 0's decode (no gradient) plus the residual stage's."""
        coarse, codes0 = self.stage0(x)
        with torch.no_grad():
            self._calibrate(x - coarse)
        fine, codes1 = self.stage1(self._residual(x, coarse.detach()))
        layer0_rows = torch.rand(x.shape[0], 1, 1, device=x.device) < self.config.layer0_share
        recon = torch.where(layer0_rows, coarse, coarse.detach() + fine * self.residual_scale)
        self.training_forwards += 1
        return recon, torch.cat([codes0, codes1], dim=-1)

    def _residual(self, x: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """What the residual stage encodes: `(x - coarse) / residual_scale`, `[B, C, A]`."""
        return (x - coarse) / self.residual_scale

    # --- API -------------------------------------------------------------------------------------

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """actions `[B, C, A]` → codes `[B, C, H, L]` int64."""
        codes0 = self.stage0.encode(x)
        codes1 = self.stage1.encode(self._residual(x, self.stage0.decode_from_indices(codes0)))
        return torch.cat([codes0, codes1], dim=-1)

    def decode_from_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """codes `[B, C, H, k]`, the first k ≤ L layers → actions `[B, C, A]`."""
        check_codes(codes, self.hidden_dim, self.num_layers, self.num_levels)
        coarse = self.stage0.decode_from_indices(codes[..., :1])
        if codes.shape[-1] == 1:
            return coarse
        return coarse + self.stage1.decode_from_indices(codes[..., 1:]) * self.residual_scale

    @torch.no_grad()
    def completion_interval(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """codes `[B, C, H, k]`, the first `k` layers (0 <= k <= L) → `(lo, hi)` `[B, C, A]` holding the full decode of
        every completion: layer 0's decode (or its interval) plus `residual_scale` times the residual stage's."""
        check_codes(codes, self.hidden_dim, self.num_layers, self.num_levels, min_layers=0)
        _, lo, hi = PrefixIntervals(self)(codes.long())
        return lo, hi

    @torch.no_grad()
    def diagnostics(self, x: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        """The unquantized floor (`[B, C, A]`: layer 0's decode plus the residual stage's unquantized reconstruction)
        and per-layer quantizer diagnostics (layer 0's, then the residual stage's), for `x: [B, C, A]`, `valid:
        [B, C]`."""
        coarse = self.stage0.decode_from_indices(self.stage0.encode(x))
        residual = self._residual(x, coarse)
        latent0, latent1 = self.stage0.encode_latent(x), self.stage1.encode_latent(residual)
        floor = coarse + self.stage1.decode_latent(latent1) * self.residual_scale
        first = residual_diagnostics(self.stage0.quantizer, latent0[valid])
        rest = residual_diagnostics(self.stage1.quantizer, latent1[valid])
        joined = {key: first[key] + rest[key] for key in ("energy_ratio", "effective_layers", "code_perplexity")}
        # before layer 0 (layer 0's latent), then before layers 1..L-1 and after the last (the residual stage's)
        joined["residual_std"] = first["residual_std"][:1] + rest["residual_std"]
        joined["num_effective_layers"] = first["num_effective_layers"] + rest["num_effective_layers"]
        return floor, joined
