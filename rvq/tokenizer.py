"""`ActionTokenizer`: raw env actions in, tokens out, raw env actions back.

normalize (BOUNDS_Q99, statistics from the checkpoint) → encode; decode → unnormalize.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from rvq.data.normalize import ActionNormalizer
from rvq.device import resolve_device
from rvq.rfsq import ActionRFSQAE, load_tokenizer
from rvq.validation import INTEGER_DTYPE_KINDS


class ActionTokenizer:
    """Wraps a decodable `ActionRFSQAE` with the action normalization it was trained with."""

    def __init__(self, model: ActionRFSQAE, normalizer: ActionNormalizer) -> None:
        if normalizer.action_dim != model.action_dim:
            raise ValueError(
                f"normalizer has {normalizer.action_dim} dims, tokenizer expects {model.action_dim}"
            )
        self.model = model.eval()
        self.normalizer = normalizer

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "ActionTokenizer":
        """Load a tokenizer checkpoint with its action statistics; `device` may be "auto"."""
        model = load_tokenizer(path, device=resolve_device(str(device)))
        if model.action_stats is None:
            raise ValueError(
                f"{path}: tokenizer checkpoint has no action statistics; it cannot map raw actions "
                "(train it with `rvq train-tokenizer`, which stores them)"
            )
        return cls(model, ActionNormalizer.from_dict(model.action_stats))

    @property
    def identity(self) -> str:
        return self.model.identity

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def encode(self, raw_actions: torch.Tensor) -> torch.Tensor:
        """raw `[B, C, A]` → codes `[B, C, H, L]`."""
        return self.model.encode(self.normalizer.normalize(raw_actions).to(self.device))

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes `[B, C, H, k]` (tensor or integer NumPy array) → raw actions `[B, C, A]` (on CPU)."""
        if isinstance(codes, np.ndarray):
            if codes.dtype.kind not in INTEGER_DTYPE_KINDS:
                raise ValueError(f"codes must be integers, got a NumPy array of dtype {codes.dtype}")
            codes = torch.from_numpy(codes.astype(np.int64))
        normalized = self.model.decode_from_indices(codes.to(self.device)).cpu()
        return self.normalizer.unnormalize(normalized)
