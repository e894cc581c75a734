"""`ActionTokenizer`: raw env actions in, tokens out, raw env actions back.

normalize (the bounds and statistics stored in the checkpoint) → encode; decode → unnormalize. It owns the
code grid (`tokens`, a `TokenSpace` with the chunk ↔ positions ↔ layer-rows conversions) and saving: callers
use this object, not the autoencoder inside it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from rvq.data.normalize import ActionNormalizer
from rvq.device import resolve_device
from rvq.models.config import TokenSpace
from rvq.rfsq import ActionRFSQAE, TokenizerConfig, save_tokenizer, tokenizer_identity
from rvq.rfsq.autoencoder import check_codes
from rvq.rfsq.bound import PrefixIntervals
from rvq.rfsq.checkpoint import read_tokenizer
from rvq.validation import INTEGER_DTYPE_KINDS


class CompletionInterval(NamedTuple):
    """`ActionTokenizer.completion_interval`: the prefix's decode (normalized units, and raw) and the raw interval of
    every completion's decode, each `[B, C, A]`."""

    normalized: torch.Tensor
    prefix: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor


class ActionTokenizer:
    """Wraps a decodable `ActionRFSQAE` with the action normalization it was trained with; owns its identity (the
    hash heads record) and its metrics."""

    def __init__(self, model: ActionRFSQAE, normalizer: ActionNormalizer, metrics: dict[str, Any] | None = None,
                 identity: str | None = None) -> None:
        """`identity`: the file's, when loaded (None: computed from the model and the normalizer, as saving would)."""
        if normalizer.action_dim != model.action_dim:
            raise ValueError(
                f"normalizer has {normalizer.action_dim} dims, tokenizer expects {model.action_dim}"
            )
        self.model = model.eval()
        self.normalizer = normalizer
        self.metrics = dict(metrics or {})
        self._identity = identity
        self._intervals: PrefixIntervals | None = None

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "ActionTokenizer":
        """Load a tokenizer checkpoint with its action statistics; `device` may be "auto"."""
        checkpoint = read_tokenizer(path, device=resolve_device(str(device)))
        if checkpoint.action_stats is None:
            raise ValueError(
                f"{path}: tokenizer checkpoint has no action statistics; it cannot map raw actions "
                "(train it with `rvq train-tokenizer`, which stores them)"
            )
        return cls(checkpoint.model, ActionNormalizer.from_dict(checkpoint.action_stats), checkpoint.metrics,
                   checkpoint.identity)

    @property
    def identity(self) -> str:
        """Content hash of config, weights and action statistics (`rvq.rfsq.tokenizer_identity`)."""
        if self._identity is None:
            self._identity = tokenizer_identity(self.model, self.normalizer.to_dict())
        return self._identity

    @property
    def config(self) -> TokenizerConfig:
        return self.model.config

    @property
    def tokens(self) -> TokenSpace:
        """The code grid `[C, H, L]` with `levels` values per code, and its layout conversions."""
        return TokenSpace.from_tokenizer(self.model.config)

    @property
    def quantizer(self) -> str:
        """robust, naive or layernorm (the seed's per-token LayerNorm variant, not decodable from codes)."""
        return self.model.config.quantizer

    def save(self, path: str | os.PathLike, metrics: dict[str, Any] | None = None) -> Path:
        """Write the tokenizer checkpoint (config, weights, action statistics, `metrics` or its own)."""
        return save_tokenizer(path, self.model, self.normalizer.to_dict(), self.metrics if metrics is None else metrics)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def encode(self, raw_actions: torch.Tensor) -> torch.Tensor:
        """raw `[B, C, A]` → codes `[B, C, H, L]`."""
        return self.model.encode(self.normalizer.normalize(raw_actions).to(self.device))

    @torch.no_grad()
    def decode_normalized(self, codes: torch.Tensor | np.ndarray) -> torch.Tensor:
        """codes `[B, C, H, k]` (tensor or integer NumPy array) → normalized actions `[B, C, A]` (on CPU): what a
        policy's action steps (`rvq.processors.Unnormalize`, ...) take."""
        if isinstance(codes, np.ndarray):
            if codes.dtype.kind not in INTEGER_DTYPE_KINDS:
                raise ValueError(f"codes must be integers, got a NumPy array of dtype {codes.dtype}")
            codes = torch.from_numpy(codes.astype(np.int64))
        return self.model.decode_from_indices(codes.to(self.device)).cpu()

    @torch.no_grad()
    def completion_interval(self, codes: torch.Tensor) -> CompletionInterval:
        """codes `[B, C, H, k]`, a chunk's first `k >= 1` layers → the prefix's decode (normalized, and raw) and a raw
        interval `[lo, hi]` that holds the raw decode of every completion of the codes to all L layers (certified:
        `rvq.rfsq.bound`; the unnormalization is monotone per dimension); each `[B, C, A]`, on CPU."""
        check_codes(codes, self.config.hidden_dim, self.config.num_layers, self.config.num_levels)
        normalized, lo, hi = self.intervals(codes.to(self.device))
        prefix, lo, hi = self.normalizer.unnormalize(torch.stack([normalized, lo, hi]).cpu())
        return CompletionInterval(normalized.cpu(), prefix, lo, hi)

    @property
    def intervals(self) -> PrefixIntervals:
        """The model's certified intervals with its constants computed once (`rvq.rfsq.bound.PrefixIntervals`)."""
        if self._intervals is None:
            self._intervals = PrefixIntervals(self.model)
        return self._intervals

    @torch.no_grad()
    def decode(self, codes: torch.Tensor | np.ndarray) -> torch.Tensor:
        """codes `[B, C, H, k]` (tensor or integer NumPy array) → raw actions `[B, C, A]` (on CPU)."""
        return self.normalizer.unnormalize(self.decode_normalized(codes))

    @torch.no_grad()
    def roundtrip(self, raw_actions: torch.Tensor) -> torch.Tensor:
        """raw `[B, C, A]` → codes → raw `[B, C, A]` (on CPU), decoded from the codes alone: what a token policy
        that emitted these codes would execute. The seed's LayerNorm variant cannot decode from codes; it is
        decoded the way the seed did (its per-token statistics lost), since codes are all a policy ever has."""
        codes = self.encode(raw_actions)
        if self.quantizer != "layernorm":
            return self.decode(codes)
        latent = self.model.quantizer.decode_without_statistics(codes)
        return self.normalizer.unnormalize(self.model.decode_latent(latent).cpu())
