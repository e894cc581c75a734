"""`ActionRFSQAE`: per-step MLP encoder → residual scalar quantizer → per-step MLP decoder.

Shapes: actions `x: [B, C, A]` (C = chunk length, A = action_dim), latent `[B, C, H]`,
codes `[B, C, H, L]` int64 in `[0, num_levels)`.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from rvq.rfsq.bound import PrefixIntervals
from rvq.rfsq.config import TokenizerConfig
from rvq.rfsq.layernorm import LayerNormRFSQ
from rvq.rfsq.naive import NaiveRFSQ
from rvq.rfsq.residual import ResidualScalarQuantizer
from rvq.rfsq.robust import RobustRFSQ
from rvq.validation import check_finite, check_float, check_shape

ATANH_MARGIN = 1e-6  # linear_inverse: atanh's argument stays within ±(1 - this), atanh at most 7.25


def check_codes(codes: torch.Tensor, hidden_dim: int, num_layers: int, num_levels: int, min_layers: int = 1) -> None:
    """Refuse anything but an integer tensor `[B, C, hidden_dim, k]`, min_layers <= k <= num_layers, values in
    `[0, num_levels)`."""
    if not isinstance(codes, torch.Tensor):
        raise ValueError(f"codes must be a torch.Tensor, got {type(codes).__name__}")
    if codes.dtype.is_floating_point or codes.dtype.is_complex or codes.dtype == torch.bool:
        raise ValueError(f"codes must be an integer tensor (int64), got dtype {codes.dtype}")
    check_shape(codes, "codes [B, C, hidden_dim, k]", (None, None, hidden_dim, None))
    k = codes.shape[-1]
    if not min_layers <= k <= num_layers:
        raise ValueError(f"codes have {k} layers; this tokenizer decodes {min_layers}..{num_layers}")
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= num_levels):
        raise ValueError(
            f"codes out of range: found values in [{int(codes.min())}, {int(codes.max())}], "
            f"expected [0, {num_levels})"
        )


def build_quantizer(config: TokenizerConfig) -> ResidualScalarQuantizer:
    """The quantizer named by `config.quantizer`."""
    if config.quantizer == "robust":
        return RobustRFSQ(
            config.hidden_dim,
            config.num_layers,
            config.num_levels,
            momentum=config.calibration_momentum,
            range_margin=config.range_margin,
        )
    if config.quantizer == "naive":
        return NaiveRFSQ(config.hidden_dim, config.num_layers, config.num_levels)
    return LayerNormRFSQ(config.hidden_dim, config.num_layers, config.num_levels)


class ActionRFSQAE(nn.Module):
    """Action autoencoder with a residual FSQ bottleneck (the seed project's API).

    `use_layernorm=True` selects the robust quantizer and `False` the naive one, as in the
    seed; `quantizer=` names a strategy explicitly ("robust", "naive", "layernorm").
    """

    def __init__(
        self,
        action_dim: int = 7,
        hidden_dim: int = 16,
        num_layers: int = 8,
        num_levels: int = 7,
        use_layernorm: bool = True,
        *,
        quantizer: str | None = None,
        mlp_dim: int = 256,
        chunk_size: int = 8,
        calibration_momentum: float = 0.05,
        range_margin: float = 1.1,
        quantize_dropout: float = 0.2,
        linear_skip: bool = True,
        coarse_decoder: bool = True,
        layer0_warmup: int = 0,
        encoder_mlp: bool = True,
        linear_inverse: bool = False,
        config: TokenizerConfig | None = None,
    ) -> None:
        super().__init__()
        if config is None:
            config = TokenizerConfig(
                action_dim=action_dim,
                hidden_dim=hidden_dim,
                num_layers=num_layers,
                num_levels=num_levels,
                quantizer=quantizer or ("robust" if use_layernorm else "naive"),
                mlp_dim=mlp_dim,
                chunk_size=chunk_size,
                calibration_momentum=calibration_momentum,
                range_margin=range_margin,
                quantize_dropout=quantize_dropout,
                linear_skip=linear_skip,
                coarse_decoder=coarse_decoder,
                layer0_warmup=layer0_warmup,
                encoder_mlp=encoder_mlp,
                linear_inverse=linear_inverse,
            )
        # one autoencoder: a config that leaves `cascade` unset is not a cascade here (the recipe's other unset fields
        # then take the single autoencoder's values)
        config = config.resolved(cascade=False)
        if config.cascade:
            raise ValueError("a cascade=True config builds rvq.rfsq.CascadeRFSQAE (rvq.rfsq.build_tokenizer_model)")
        self.config = config
        mlp = [nn.Linear(config.action_dim, config.mlp_dim), nn.ReLU(), nn.Linear(config.mlp_dim, config.hidden_dim)]
        self.encoder = nn.Sequential(*(mlp if config.encoder_mlp else []), nn.Tanh())
        self.quantizer = build_quantizer(config)
        self.decoder = nn.Sequential(
            nn.Linear(config.hidden_dim, config.mlp_dim),
            nn.ReLU(),
            nn.Linear(config.mlp_dim, config.action_dim),
        )
        # The linear paths lower the autoencoder's floor: a 7 -> 16 map is invertible, so the MLPs only model
        # what is not linear (measured in docs/history/RESULTS.md, "A lower floor").
        self.encoder_skip = nn.Linear(config.action_dim, config.hidden_dim) if config.linear_skip else None
        self.decoder_skip = nn.Linear(config.hidden_dim, config.action_dim) if config.linear_skip else None
        # k = 1's own decoder, a copy of the full one at initialization (so an untrained model decodes every prefix
        # with one mapping). Measured: with `layer0_warmup` it brings k = 1 below naive's error and lowers the full
        # depth's too, since the full decoder no longer serves the coarsest prefix (docs/history/RESULTS.md, issue 14).
        self.coarse_decoder = copy.deepcopy(self.decoder) if config.coarse_decoder else None
        self.coarse_decoder_skip = copy.deepcopy(self.decoder_skip) if config.coarse_decoder else None
        if config.linear_inverse:
            self._init_linear_inverse()

    @torch.no_grad()
    def _init_linear_inverse(self) -> None:
        """The MLPs' output layers to zero and the decoders' linear paths to the pseudo-inverse of the encoder's:
        `decode(atanh(tanh(W x + b))) = pinv(W) (W x + b) - pinv(W) b = x` for any x (W: [H, A], H >= A)."""
        inverse = torch.linalg.pinv(self.encoder_skip.weight)  # [A, H]
        for mlp in (self.encoder if self.config.encoder_mlp else None, self.decoder, self.coarse_decoder):
            if mlp is not None:
                output = [m for m in mlp if isinstance(m, nn.Linear)][-1]
                nn.init.zeros_(output.weight)
                nn.init.zeros_(output.bias)
        for skip in (self.decoder_skip, self.coarse_decoder_skip):
            if skip is not None:
                skip.weight.copy_(inverse)
                skip.bias.copy_(-inverse @ self.encoder_skip.bias)

    @classmethod
    def from_config(cls, config: TokenizerConfig) -> "ActionRFSQAE":
        return cls(config=config)

    # --- shape properties -----------------------------------------------------------------------

    @property
    def action_dim(self) -> int:
        return self.config.action_dim

    @property
    def hidden_dim(self) -> int:
        return self.config.hidden_dim

    @property
    def num_layers(self) -> int:
        return self.config.num_layers

    @property
    def num_levels(self) -> int:
        return self.config.num_levels

    @property
    def decodable(self) -> bool:
        return self.quantizer.decodable

    # --- checks ----------------------------------------------------------------------------------

    def _check_actions(self, x: torch.Tensor) -> None:
        check_float(x, "actions")
        weight_dtype = next(self.parameters()).dtype
        if x.dtype != weight_dtype:
            raise ValueError(f"actions are {x.dtype} but the tokenizer's weights are {weight_dtype}: convert the "
                             f"actions (x.to({weight_dtype})) or the model (model.to({x.dtype}))")
        check_shape(x, "actions [B, C, action_dim]", (None, None, self.action_dim))
        check_finite(x, "actions")

    # --- API -------------------------------------------------------------------------------------

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """actions `[B, C, A]` → latent `[B, C, H]` in (-1, 1)."""
        self._check_actions(x)
        pre = self.encoder[:-1](x) if self.config.encoder_mlp else 0.0
        if self.encoder_skip is not None:
            pre = pre + self.encoder_skip(x)
        return self.encoder[-1](pre)

    def decode_latent(self, z_hat: torch.Tensor, num_layers: int | torch.Tensor | None = None) -> torch.Tensor:
        """latent `[B, C, H]` → actions `[B, C, A]`. `num_layers`: how many layers `z_hat` sums (an int, or
        `[B]` per chunk; None: all L): layer 0 alone goes to the coarse decoder where there is one."""
        if self.coarse_decoder is not None and isinstance(num_layers, int) and num_layers == 1:
            return self._decode_coarse(z_hat)  # layer 0 alone: the full decoder is not needed
        out = self.decoder(z_hat)
        out = out if self.decoder_skip is None else out + self.decoder_skip(self._skip_input(z_hat))
        if self.coarse_decoder is not None and num_layers is not None and not isinstance(num_layers, int):
            coarse = (torch.as_tensor(num_layers, device=z_hat.device) == 1).reshape(-1, 1, 1)  # [B] or a scalar
            out = torch.where(coarse, self._decode_coarse(z_hat), out)
        return out

    def _decode_coarse(self, z_hat: torch.Tensor) -> torch.Tensor:
        """latent of layer 0 alone `[B, C, H]` → actions `[B, C, A]`."""
        out = self.coarse_decoder(z_hat)
        return out if self.coarse_decoder_skip is None else out + self.coarse_decoder_skip(self._skip_input(z_hat))

    def _skip_input(self, z_hat: torch.Tensor) -> torch.Tensor:
        """What the decoders' linear paths read, `[B, C, H]`: the latent, or with `linear_inverse` its atanh (the
        tanh's inverse; coarse prefixes can reach ±1 and beyond, so the argument is clamped to ±(1 -
        ATANH_MARGIN))."""
        if not self.config.linear_inverse:
            return z_hat
        # in float32: in bf16 / fp16 the clamp's bound rounds to ±1, where atanh is infinite
        return torch.atanh(z_hat.float().clamp(-1 + ATANH_MARGIN, 1 - ATANH_MARGIN)).to(z_hat.dtype)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """actions `[B, C, A]` → `(x_recon [B, C, A], codes [B, C, H, L])`.

        In training mode a `config.quantize_dropout` fraction of the chunks is reconstructed from a random
        prefix of the layers (codes are always all L layers); in eval mode the output is what
        `decode_from_indices(codes)` gives."""
        z = self.encode_latent(x)
        keep = self._prefix_lengths(z.shape[0], z.device) if self.training else None
        z_hat, codes = self.quantizer(z, keep_layers=keep)
        return self.decode_latent(z_hat, keep), codes

    def _prefix_lengths(self, batch: int, device: torch.device) -> torch.Tensor | None:
        """Layers each chunk's training reconstruction keeps: 1 during the first `layer0_warmup` training forwards;
        then L, or for a `quantize_dropout` fraction a k drawn uniformly in 1..L-1 (the global torch RNG, which
        training states save). `[B]` int64, or None."""
        p, num_layers = self.config.quantize_dropout, self.num_layers
        if self.coarse_decoder is not None and p == 0.0 and self.config.layer0_warmup == 0:
            raise ValueError("coarse_decoder is trained only on chunks decoded from layer 0 alone: set "
                             "quantize_dropout > 0 or layer0_warmup > 0 to train it, or leave coarse_decoder off")
        if int(self.quantizer.calibration_steps) < self.config.layer0_warmup:  # training forwards seen so far
            return torch.ones(batch, dtype=torch.int64, device=device)
        if p == 0.0 or num_layers == 1:
            return None
        dropped = torch.rand(batch, device=device) < p
        k = torch.randint(1, num_layers, (batch,), device=device)
        return torch.where(dropped, k, torch.full_like(k, num_layers))

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """actions `[B, C, A]` → codes `[B, C, H, L]` int64."""
        return self.quantizer.encode(self.encode_latent(x))

    @torch.no_grad()
    def completion_interval(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """codes `[B, C, H, k]`, the first `k` layers (0 <= k <= L) → `(lo, hi)` `[B, C, A]`: the full decode of every
        completion of `codes` to L layers lies in `[lo, hi]` (certified: `rvq.rfsq.bound`)."""
        check_codes(codes, self.hidden_dim, self.num_layers, self.num_levels, min_layers=0)
        _, lo, hi = PrefixIntervals(self)(codes.long())
        return lo, hi

    def decode_from_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """codes `[B, C, H, k]`, the first k ≤ L layers → actions `[B, C, A]`."""
        check_codes(codes, self.hidden_dim, self.num_layers, self.num_levels)
        return self.decode_latent(self.quantizer.decode(codes.long()), codes.shape[-1])
