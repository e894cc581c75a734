"""Action normalization in the style of OpenVLA's `BOUNDS_Q99`.

Per dimension, the 1st and 99th percentiles of the training split map to [-1, 1] and values
are clipped; the gripper dimension (mask False) is passed through, kept in [-1, 1].
The statistics travel with the tokenizer checkpoint (`to_dict`), and are inverted before
actions reach the environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

KIND = "bounds_q99"


@dataclass(frozen=True)
class ActionNormalizer:
    """`low`, `high`: `[A]` percentiles; `mask`: `[A]` True where the dimension is normalized."""

    low: np.ndarray
    high: np.ndarray
    mask: np.ndarray

    @classmethod
    def fit(cls, actions: np.ndarray, gripper_dims: tuple[int, ...] = (-1,)) -> "ActionNormalizer":
        """Statistics of `actions: [N, A]` (the training split only)."""
        actions = np.asarray(actions, dtype=np.float64)
        if actions.ndim != 2 or actions.shape[0] == 0:
            raise ValueError(f"actions must be [N, A] with N > 0 to fit a normalizer, got {list(actions.shape)}")
        if not np.isfinite(actions).all():
            raise ValueError("actions contain NaN/inf; cannot fit normalization statistics")
        mask = np.ones(actions.shape[1], dtype=bool)
        for dim in gripper_dims:
            mask[dim] = False
        return cls(
            low=np.quantile(actions, 0.01, axis=0).astype(np.float32),
            high=np.quantile(actions, 0.99, axis=0).astype(np.float32),
            mask=mask,
        )

    @property
    def action_dim(self) -> int:
        return int(self.low.shape[0])

    def _tensors(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        low = torch.as_tensor(self.low, dtype=like.dtype, device=like.device)
        high = torch.as_tensor(self.high, dtype=like.dtype, device=like.device)
        mask = torch.as_tensor(self.mask, device=like.device)
        return low, high, mask

    def _check(self, x: torch.Tensor, name: str) -> None:
        if x.shape[-1] != self.action_dim:
            raise ValueError(f"{name} have {x.shape[-1]} dims in the last axis, normalizer expects {self.action_dim}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} contain NaN/inf")

    def normalize(self, actions: torch.Tensor | np.ndarray) -> torch.Tensor:
        """raw `[..., A]` → normalized `[..., A]` in [-1, 1]. Constant dims (high == low) map to 0."""
        x = torch.as_tensor(actions, dtype=torch.float32)
        self._check(x, "raw actions")
        low, high, mask = self._tensors(x)
        span = high - low
        scaled = torch.where(span > 0, 2 * (x - low) / span.clamp_min(1e-12) - 1, torch.zeros_like(x))
        return torch.where(mask, scaled, x).clamp(-1.0, 1.0)

    def unnormalize(self, normalized: torch.Tensor | np.ndarray) -> torch.Tensor:
        """normalized `[..., A]` → raw env units `[..., A]` (clipped to the percentile box)."""
        x = torch.as_tensor(normalized, dtype=torch.float32).clamp(-1.0, 1.0)
        self._check(x, "normalized actions")
        low, high, mask = self._tensors(x)
        return torch.where(mask, (x + 1) / 2 * (high - low) + low, x)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": KIND, "low": self.low.tolist(), "high": self.high.tolist(), "mask": self.mask.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ActionNormalizer":
        if not isinstance(data, dict) or data.get("kind") != KIND:
            raise ValueError(f"action statistics must be a {KIND!r} dict, got {data!r:.200}")
        for key in ("low", "high", "mask"):
            if key not in data:
                raise ValueError(f"action statistics are missing {key!r}")
        low, high = np.asarray(data["low"], np.float32), np.asarray(data["high"], np.float32)
        mask = np.asarray(data["mask"], bool)
        if not low.shape == high.shape == mask.shape:
            raise ValueError(f"action statistics have mismatched shapes: {low.shape}, {high.shape}, {mask.shape}")
        return cls(low, high, mask)
