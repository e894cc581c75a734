"""Tokenizer configuration: everything needed to rebuild an `ActionRFSQAE` from a checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

QUANTIZERS = ("naive", "layernorm", "robust")
# Fields added after the first checkpoints were written, with the value those checkpoints imply.
LEGACY_DEFAULTS = {"quantize_dropout": 0.0, "linear_skip": False, "coarse_decoder": False, "layer0_warmup": 0,
                   "encoder_mlp": True, "linear_inverse": False, "cascade": False, "layer0_share": 0.0}
# Fields of experiments measured and removed (docs/decisions.md), with their neutral value: a checkpoint that names one
# at that value holds the architecture trained today and loads; at any other value it is refused, naming it.
REMOVED_FIELDS = {"grid_std_range": None, "prefix_encoder_grad": 1.0, "prefix_conditioned": False,
                  "prefix_weighting": "uniform", "compand_tails": False, "layer0_quantile": 0.0}
# The recipe's fields that a config may leave unset (None) and their values then: `cascade` is the quantizer's
# (robust trains as a cascade since issue 14's eleventh pass; naive and the seed's LayerNorm stay one autoencoder,
# the seed's methods), and the others follow the resolved `cascade` (`TokenizerConfig.resolved`).
CASCADE_BY_QUANTIZER = {"robust": True, "naive": False, "layernorm": False}
LINEAR_STAGE = {"linear_inverse": True, "encoder_mlp": False}  # the exactly invertible linear autoencoder
MLP_STAGE = {"linear_inverse": False, "encoder_mlp": True}
RECIPE_FIELDS = ("cascade", "layer0_share", *LINEAR_STAGE)


@dataclass(frozen=True)
class TokenizerConfig:
    """Shapes and quantizer strategy of the action tokenizer; each field's comment says what it does, and
    docs/history/RESULTS.md (issue 14) what was measured for it.

    Unset (None) recipe fields take the quantizer's recipe (`resolved()`, which every model applies): robust is a
    cascade whose layer 0 trains on half of each batch and whose residual stage is the exactly invertible linear
    autoencoder (`layer0_share` 0.5, `linear_inverse`, no encoder MLP; issue 14's tenth and eleventh passes) where the
    model has linear paths and `hidden_dim >= action_dim` (else its residual stage keeps the MLP encoder) and
    `num_layers` allows a cascade (else one autoencoder); naive and layernorm are one autoencoder (`cascade` False,
    `layer0_share` 0, MLP encoder, no atanh). `cascade=False` on robust gives the single autoencoder that was the
    default before. Checkpoints written before a field existed load with `LEGACY_DEFAULTS` (the architecture they
    had); fields of removed experiments with `REMOVED_FIELDS`.
    """

    action_dim: int = 7  # action dimensions per step (LIBERO: 7, the gripper last)
    hidden_dim: int = 16  # latent dimensions per step, each quantized by every layer
    num_layers: int = 8  # residual layers (tokens per latent dimension)
    num_levels: int = 7  # grid levels per layer and dimension
    # robust (calibrated per layer, decodable), naive (the same grid every layer: dead layers after the first), or
    # layernorm (the seed's per-token LayerNorm: forward only, not decodable from codes)
    quantizer: str = "robust"
    mlp_dim: int = 256  # hidden width of the encoder and decoder MLPs
    chunk_size: int = 8  # actions per chunk (one token sequence)
    calibration_momentum: float = 0.05  # robust: moving-average momentum of the per-layer calibration
    range_margin: float = 1.1  # robust: layer 0 covers the calibrated latent range widened by this factor
    # training: the share of chunks reconstructed from a random prefix of k < L layers (k uniform in 1..L-1), so every
    # prefix decodes to a good action; 0: off
    quantize_dropout: float = 0.2
    linear_skip: bool = True  # a linear path beside the encoder and decoder MLPs (False: the seed's architecture)
    # layer 0 alone (k = 1) is decoded by a decoder of its own (a copy of the full one at initialization), trained on
    # the chunks whose drawn prefix is 1; needs quantize_dropout > 0 or layer0_warmup > 0, and num_layers >= 2
    coarse_decoder: bool = True
    # training: the first N training forwards (counted by the quantizer's calibration_steps, so a resumed run goes on
    # where it stopped) reconstruct every chunk from layer 0 alone; `rvq train-tokenizer` sets it from its
    # layer0_warmup_ratio
    layer0_warmup: int = 0
    # False: the encoder is its linear path alone, tanh(W x + b) (needs linear_skip). None: the quantizer's recipe
    encoder_mlp: bool | None = None
    # the decoders' linear paths read atanh of the latent and start as the pseudo-inverse of the encoder's, the MLPs'
    # output layers at zero: an exactly invertible linear autoencoder at initialization (needs linear_skip and
    # hidden_dim >= action_dim). None: the quantizer's recipe
    linear_inverse: bool | None = None
    # layer 0 a one-layer naive FSQ autoencoder of its own, layers 1..L-1 an autoencoder of this config on the action
    # residual it leaves (rvq.rfsq.cascade.CascadeRFSQAE). None: the quantizer's recipe (robust: a cascade)
    cascade: bool | None = None
    # cascade, training: this share of each batch's chunks goes on training layer 0's stage on k = 1 alone after its
    # warm-up (0: layer 0 fixed after it). None: the quantizer's recipe (robust: 0.5)
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

    def to_dict(self) -> dict[str, Any]:
        """Every field, the recipe's resolved (a checkpoint names the architecture it holds)."""
        return asdict(self.resolved())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TokenizerConfig":
        """A checkpoint's config; fields added since it was written take `LEGACY_DEFAULTS`, removed ones
        (`REMOVED_FIELDS`) must hold their neutral value."""
        used = {name: data[name] for name in REMOVED_FIELDS if name in data and data[name] != REMOVED_FIELDS[name]}
        if used:
            raise ValueError(f"tokenizer config uses option(s) removed from rvq: {used} (measured and not adopted: "
                             f"docs/decisions.md); retrain without them")
        data = {name: value for name, value in data.items() if name not in REMOVED_FIELDS}
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
