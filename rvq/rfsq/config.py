"""Tokenizer configuration: everything needed to rebuild an `ActionRFSQAE` from a checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

QUANTIZERS = ("naive", "layernorm", "robust")
# Fields added after the first checkpoints were written, with the value those checkpoints imply.
LEGACY_DEFAULTS = {"quantize_dropout": 0.0, "linear_skip": False, "prefix_conditioned": False,
                   "prefix_weighting": "uniform", "compand_tails": False, "layer0_quantile": 0.0,
                   "coarse_decoder": False, "layer0_warmup": 0, "encoder_mlp": True, "linear_inverse": False,
                   "cascade": False, "layer0_share": 0.0}
PREFIX_WEIGHTINGS = ("uniform", "inverse")
# The recipe's fields that a config may leave unset (None) and their values then: `cascade` is the quantizer's
# (robust trains as a cascade since issue 14's eleventh pass; naive and the seed's LayerNorm stay one autoencoder,
# the seed's methods), and the others follow the resolved `cascade` (`TokenizerConfig.resolved`).
CASCADE_BY_QUANTIZER = {"robust": True, "naive": False, "layernorm": False}
LINEAR_STAGE = {"linear_inverse": True, "encoder_mlp": False}  # the exactly invertible linear autoencoder
MLP_STAGE = {"linear_inverse": False, "encoder_mlp": True}
RECIPE_FIELDS = ("cascade", "layer0_share", *LINEAR_STAGE)


@dataclass(frozen=True)
class TokenizerConfig:
    """Shapes and quantizer strategy of the action tokenizer.

    quantizer: "robust" (decodable, calibrated), "naive" (same grid every layer, dead layers),
               or "layernorm" (the seed's per-token LayerNorm; forward only, not decodable).
    grid_std_range: robust only; grid half-range in residual stds (None: sqrt(3)(n-1)/n).
    range_margin: robust only; layer 0 covers the calibrated latent range widened by this factor.
    quantize_dropout: training only; the fraction of chunks whose reconstruction uses a random prefix of
        k < L layers (k uniform in 1..L-1), so every prefix decodes to a good action. 0 turns it off.
    linear_skip: a linear path beside the encoder and decoder MLPs (False: the seed's exact architecture).
    prefix_encoder_grad: training only; weight of the straight-through gradient that truncated chunks send
        to the encoder (1: as full-depth chunks; 0: they train the decoder only). Lower values trade coarse
        prefixes for a lower full-depth floor (docs/history/RESULTS.md).
    prefix_weighting: training only; how the prefix length k of a dropped chunk is drawn: "uniform" in 1..L-1,
        or "inverse" (P(k) proportional to 1/k: short prefixes, the ones RSD's draft and chance-level fine layers
        leave, are trained more often).
    compand_tails: normalized actions beyond ±1 enter the encoder log-compressed (`rvq.rfsq.compand`) and the
        decoder's output is expanded back. Off by default (docs/history/RESULTS.md: with `layer0_quantile` and inverse prefix
        weighting it brings k = 1 to naive's error, at twice the full-depth error).
    layer0_quantile: robust only; 0 calibrates layer 0 on the latent's min / max (times `range_margin`); q > 0 on its
        q and 1 - q quantiles, so the tails fall in the edge cells (whose later layers widen to cover them up to
        the tanh bound) and the bulk gets finer coarse cells.
    prefix_conditioned: the decoder is told how many layers it decodes (a learned `[L, mlp_dim]` embedding
        added to its hidden layer). Off by default: measured, it did not lower the k = 1 error.
    coarse_decoder: codes of layer 0 alone (k = 1) are decoded by a decoder of their own (the same MLP and linear
        path, equal to the full decoder at initialization), trained on the chunks whose drawn prefix is 1; the full
        decoder then serves k >= 2 only. Training it needs `quantize_dropout > 0` or `layer0_warmup > 0`, and
        `num_layers >= 2`. On by default since issue 14's fifth pass (docs/history/RESULTS.md), with quantize_dropout 0.2
        (0.35 before) and `rvq train-tokenizer`'s `layer0_warmup_ratio` 0.2.
    layer0_warmup: training only; the first N training forwards (counted by the quantizer's `calibration_steps`,
        so a resumed run goes on where it stopped) reconstruct every chunk from layer 0 alone, before prefix
        training starts: the coarse layout is learned first (docs/history/RESULTS.md, issue 14's fourth pass). A model
        knows no run length: `rvq train-tokenizer` sets it from `layer0_warmup_ratio` (a share of its steps).
    encoder_mlp: False: the encoder is its linear path alone, `tanh(W x + b)` (needs `linear_skip`). With
        `linear_inverse` the full depth then decodes any action in the tanh's range as exactly as a training one.
    linear_inverse: the decoders' linear paths read `atanh` of the latent (the inverse of the encoder's tanh, its
        argument clamped to ±(1 - 1e-6)) and start as the pseudo-inverse of the encoder's linear path, and the MLPs'
        output layers start at zero: the untrained model is an exactly invertible linear autoencoder, so the MLPs
        only learn what the coarse prefixes need. Needs `linear_skip`. Off by default: measured (docs/history/RESULTS.md,
        issue 14's sixth pass), with `encoder_mlp` False it brings the full depth below 1e-5 on the embedded default's
        split, while k = 2's error rises (atanh amplifies a coarse latent's error near the tanh's ends).
    cascade: layer 0 is a one-layer naive FSQ autoencoder of its own, trained alone for the first `layer0_warmup`
        training forwards and then fixed (or trained on `layer0_share` of each batch), and layers 1..L-1 a
        `quantizer` autoencoder of L - 1 layers (this config's other options) on the action-space residual layer 0
        leaves (`rvq.rfsq.cascade.CascadeRFSQAE`). Robust's default since issue 14's eleventh pass (see below);
        measured in docs/history/RESULTS.md (issue 14's ninth to eleventh passes). Needs `layer0_warmup > 0` or `layer0_share > 0` when trained, a decodable quantizer, and
        num_layers >= 3 with `coarse_decoder` (the residual stage's own k = 1 decoder), else >= 2.
    layer0_share: cascade only, training only; after layer 0's warm-up, this share of each batch's chunks (drawn
        per chunk, as quantize dropout draws prefixes) goes on training layer 0's stage on k = 1 alone while the rest
        train the residual stage, so layer 0 learns for the whole run as a one-layer tokenizer does. 0: layer 0 is
        fixed after its warm-up. With a share, `layer0_warmup` may be 0 (both stages train from the first step).

    Unset (None) recipe fields take the quantizer's recipe (`resolved()`, which every model applies): robust is a
    cascade whose layer 0 trains on half of each batch and whose residual stage is the exactly invertible linear
    autoencoder (`layer0_share` 0.5, `linear_inverse`, no encoder MLP; measured in docs/history/RESULTS.md, issue 14's tenth
    and eleventh passes) where the model has linear paths and `hidden_dim >= action_dim` (else its residual stage keeps
    the MLP encoder) and `num_layers` allows a cascade (else one autoencoder); naive and layernorm are one autoencoder
    (`cascade` False, `layer0_share` 0, MLP encoder, no atanh). `cascade=False` on robust gives the single autoencoder
    that was the default before.
    Checkpoints written before a field existed load with `LEGACY_DEFAULTS` (the architecture they had).
    """

    action_dim: int = 7
    hidden_dim: int = 16
    num_layers: int = 8
    num_levels: int = 7
    quantizer: str = "robust"
    mlp_dim: int = 256
    chunk_size: int = 8
    grid_std_range: float | None = None
    calibration_momentum: float = 0.05
    range_margin: float = 1.1
    quantize_dropout: float = 0.2
    linear_skip: bool = True
    prefix_encoder_grad: float = 1.0
    prefix_conditioned: bool = False
    prefix_weighting: str = "uniform"
    compand_tails: bool = False
    layer0_quantile: float = 0.0
    coarse_decoder: bool = True
    layer0_warmup: int = 0
    encoder_mlp: bool | None = None
    linear_inverse: bool | None = None
    cascade: bool | None = None
    layer0_share: float | None = None

    @property
    def cascade_min_layers(self) -> int:
        """The fewest layers a cascade can have: layer 0's stage and a residual stage (with `coarse_decoder`, one
        more: the residual stage's own k = 1 decoder)."""
        return 3 if self.coarse_decoder else 2

    def resolved(self, cascade: bool | None = None) -> "TokenizerConfig":
        """This config with every unset (None) recipe field given the quantizer's recipe (see the class docstring).
        `cascade`: what an unset `cascade` becomes (a model class that is one or the other); None: the quantizer's."""
        if all(getattr(self, name) is not None for name in RECIPE_FIELDS):
            return self
        if self.cascade is not None:
            cascade = self.cascade
        elif cascade is None:
            cascade = CASCADE_BY_QUANTIZER[self.quantizer] and self.num_layers >= self.cascade_min_layers
        # the linear stage needs the linear paths and a latent as wide as the action (to invert); else the MLP one
        linear = cascade and self.linear_skip and self.hidden_dim >= self.action_dim
        recipe = {"cascade": cascade, "layer0_share": 0.5 if cascade else 0.0,
                  **(LINEAR_STAGE if linear else MLP_STAGE)}
        return replace(self, **{name: value for name, value in recipe.items() if getattr(self, name) is None})

    def __post_init__(self) -> None:
        if self.quantizer not in QUANTIZERS:
            raise ValueError(f"unknown quantizer {self.quantizer!r}; choose one of {QUANTIZERS}")
        if any(getattr(self, name) is None for name in RECIPE_FIELDS):
            self.resolved()  # checks the values the model will have
            return
        for name in ("action_dim", "hidden_dim", "num_layers", "mlp_dim", "chunk_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_levels < 2:
            raise ValueError(f"num_levels must be >= 2, got {self.num_levels}")
        if not 0.0 <= self.quantize_dropout <= 1.0:
            raise ValueError(f"quantize_dropout must be in [0, 1], got {self.quantize_dropout}")
        if self.prefix_weighting not in PREFIX_WEIGHTINGS:
            raise ValueError(f"prefix_weighting must be one of {PREFIX_WEIGHTINGS}, got {self.prefix_weighting!r}")
        if not 0.0 <= self.layer0_quantile < 0.5:
            raise ValueError(f"layer0_quantile must be in [0, 0.5), got {self.layer0_quantile}")
        if self.coarse_decoder and self.num_layers == 1:
            # with one layer k = 1 is the full depth: training's forward would reach the full decoder and decoding
            # from codes the coarse one, so the two would give different actions
            raise ValueError("coarse_decoder decodes layer 0 of a deeper stack; with num_layers=1 set "
                             "coarse_decoder=False")
        if self.layer0_warmup < 0:
            raise ValueError(f"layer0_warmup must be >= 0, got {self.layer0_warmup}")
        if not self.linear_skip and (self.linear_inverse or not self.encoder_mlp):
            setting = "linear_inverse=True" if self.linear_inverse else "encoder_mlp=False"
            raise ValueError(f"{setting} needs the linear paths: set linear_skip=True")
        if self.linear_inverse and self.hidden_dim < self.action_dim:
            raise ValueError(f"linear_inverse needs hidden_dim >= action_dim to invert the encoder's linear path, got "
                             f"hidden_dim={self.hidden_dim} < action_dim={self.action_dim}")
        if self.cascade:
            if self.quantizer == "layernorm":
                raise ValueError("cascade's residual stage must decode from codes: quantizer 'layernorm' cannot")
            if self.num_layers < self.cascade_min_layers:
                raise ValueError(f"cascade needs num_layers >= {self.cascade_min_layers} (layer 0's stage "
                                 f"and a residual stage{' with its own k = 1 decoder' if self.coarse_decoder else ''})"
                                 f", got {self.num_layers}")
        if not 0.0 <= self.layer0_share < 1.0:
            raise ValueError(f"layer0_share must be in [0, 1), got {self.layer0_share}")
        if self.layer0_share and not self.cascade:
            raise ValueError("layer0_share is the share of chunks that train a cascade's layer 0: set cascade=True")
        if not 0.0 <= self.prefix_encoder_grad <= 1.0:
            raise ValueError(f"prefix_encoder_grad must be in [0, 1], got {self.prefix_encoder_grad}")

    def to_dict(self) -> dict[str, Any]:
        """Every field, the recipe's resolved (a checkpoint names the architecture it holds)."""
        return asdict(self.resolved())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TokenizerConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown tokenizer config key(s): {unknown}")
        return cls(**{**LEGACY_DEFAULTS, **data})

    @property
    def bits_per_chunk(self) -> float:
        """Information in one chunk's codes: `chunk * hidden * layers * log2(levels)`."""
        import math

        return self.chunk_size * self.hidden_dim * self.num_layers * math.log2(self.num_levels)
