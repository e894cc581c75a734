"""Action normalization: per-dimension affine maps fitted on the training split, travelling with the
tokenizer checkpoint (`to_dict`) and inverted before actions reach the environment.

Methods (`ActionNormalizer.fit(actions, method=...)`), chosen by measurement (docs/history/RESULTS.md, "Bounds"):

- `q99_guarded` (default): the 1st and 99th percentiles map to -1 and 1 (OpenVLA's resolution for the bulk
  of the data), but values beyond them are kept, not clipped, up to a guard at the training split's
  min / max. Rare large actions (a wrist turn) survive the round trip.
- `bounds_q99`: OpenVLA's BOUNDS_Q99: percentiles map to [-1, 1] and everything beyond is clipped. Earlier
  checkpoints use it; it cuts rare large actions off.

The gripper dimension (mask False) is passed through, kept in [-1, 1]. A dimension constant on the
training split maps to 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rvq.validation import REAL_DTYPE_KINDS

KIND = "bounds_q99"
METHODS = ("q99_guarded", "bounds_q99")
DEFAULT_METHOD = "q99_guarded"


@dataclass(frozen=True)
class ActionNormalizer:
    """`low`, `high`: `[A]` raw values that map to -1 and 1; `clip_low`, `clip_high`: `[A]` raw guard bounds
    (values beyond are clipped); `mask`: `[A]` True where the dimension is normalized; `kind`: the method."""

    low: np.ndarray
    high: np.ndarray
    mask: np.ndarray
    clip_low: np.ndarray | None = None
    clip_high: np.ndarray | None = None
    kind: str = KIND

    def __post_init__(self) -> None:
        if self.clip_low is None:  # BOUNDS_Q99: the guard is the percentile box itself
            object.__setattr__(self, "clip_low", self.low)
        if self.clip_high is None:
            object.__setattr__(self, "clip_high", self.high)

    @classmethod
    def fit(cls, actions: np.ndarray, gripper_dims: tuple[int, ...] = (-1,),
            method: str = DEFAULT_METHOD) -> "ActionNormalizer":
        """Statistics of `actions: [N, A]` (the training split only)."""
        if method not in METHODS:
            raise ValueError(f"unknown normalization {method!r}; choose one of {METHODS}")
        actions = np.asarray(actions, dtype=np.float64)
        if actions.ndim != 2 or actions.shape[0] == 0:
            raise ValueError(f"actions must be [N, A] with N > 0 to fit a normalizer, got {list(actions.shape)}")
        if not np.isfinite(actions).all():
            raise ValueError("actions contain NaN/inf; cannot fit normalization statistics")
        mask = np.ones(actions.shape[1], dtype=bool)
        for dim in gripper_dims:
            mask[dim] = False
        q01, q99 = np.quantile(actions, 0.01, axis=0), np.quantile(actions, 0.99, axis=0)
        lo, hi = actions.min(axis=0), actions.max(axis=0)
        if method == "bounds_q99":
            return cls(q01.astype(np.float32), q99.astype(np.float32), mask, kind="bounds_q99")
        flat = q99 <= q01  # percentiles that coincide: scale by the full range so rare values are not lost
        low, high = np.where(flat, lo, q01), np.where(flat, hi, q99)
        return cls(low.astype(np.float32), high.astype(np.float32), mask, lo.astype(np.float32),
                   hi.astype(np.float32), kind="q99_guarded")

    @property
    def action_dim(self) -> int:
        return int(self.low.shape[0])

    def _tensors(self, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        as_t = lambda a: torch.as_tensor(a, dtype=like.dtype, device=like.device)  # noqa: E731
        return (as_t(self.low), as_t(self.high), torch.as_tensor(self.mask, device=like.device),
                as_t(self.clip_low), as_t(self.clip_high))

    def _check(self, x: torch.Tensor, name: str) -> None:
        if x.shape[-1] != self.action_dim:
            raise ValueError(f"{name} have {x.shape[-1]} dims in the last axis, normalizer expects {self.action_dim}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} contain NaN/inf")

    def normalize(self, actions: torch.Tensor | np.ndarray) -> torch.Tensor:
        """raw `[..., A]` → normalized `[..., A]`: [-1, 1] between `low` and `high`, beyond that up to the
        guard (`normalized_bounds`). Constant dims (high == low) map to 0."""
        x = real_tensor(actions, "raw actions")
        self._check(x, "raw actions")
        low, high, mask, clip_low, clip_high = self._tensors(x)
        span = high - low
        guarded = torch.minimum(torch.maximum(x, clip_low), clip_high)
        scaled = torch.where(span > 0, 2 * (guarded - low) / span.clamp_min(1e-12) - 1, torch.zeros_like(x))
        return torch.where(mask, scaled, x.clamp(-1.0, 1.0))

    def unnormalize(self, normalized: torch.Tensor | np.ndarray) -> torch.Tensor:
        """normalized `[..., A]` → raw env units `[..., A]`, clipped to the guard bounds."""
        x = real_tensor(normalized, "normalized actions")
        self._check(x, "normalized actions")
        low, high, mask, clip_low, clip_high = self._tensors(x)
        raw = torch.minimum(torch.maximum((x + 1) / 2 * (high - low) + low, clip_low), clip_high)
        return torch.where(mask, raw, x.clamp(-1.0, 1.0))

    def normalized_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """`(lo, hi)` `[A]`: the range of normalized values (gripper dims: -1, 1)."""
        lo, hi = self.normalize(self.clip_low[None]).numpy()[0], self.normalize(self.clip_high[None]).numpy()[0]
        return np.where(self.mask, lo, -1.0), np.where(self.mask, hi, 1.0)

    def to_dict(self) -> dict[str, Any]:
        out = {"kind": self.kind, "low": self.low.tolist(), "high": self.high.tolist(), "mask": self.mask.tolist()}
        if self.kind != KIND:
            out.update(clip_low=self.clip_low.tolist(), clip_high=self.clip_high.tolist())
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ActionNormalizer":
        if not isinstance(data, dict) or data.get("kind") not in METHODS:
            raise ValueError(f"action statistics must be a dict of kind {METHODS}, got {data!r:.200}")
        guarded = data["kind"] != KIND
        for key in ("low", "high", "mask") + (("clip_low", "clip_high") if guarded else ()):
            if key not in data:
                raise ValueError(f"action statistics are missing {key!r}")
        try:
            arrays = {k: np.asarray(data[k], np.float32) for k in ("low", "high", "clip_low", "clip_high") if k in data}
        except (TypeError, ValueError) as exc:
            raise ValueError(f"action statistics 'low'/'high' must be lists of numbers ({exc})") from exc
        mask = np.asarray(data["mask"])
        if mask.dtype != bool:
            raise ValueError(f"action statistics 'mask' must be booleans, got dtype {mask.dtype}")
        low = arrays["low"]
        if low.ndim != 1 or low.size == 0 or any(a.shape != low.shape for a in (*arrays.values(), mask)):
            raise ValueError("action statistics must be 1-D of one length: "
                             + ", ".join(f"{k} {list(np.shape(v))}" for k, v in {**arrays, "mask": mask}.items()))
        for name, values in arrays.items():
            if not np.isfinite(values).all():
                raise ValueError(f"action statistics {name!r} contain NaN/inf at dims "
                                 f"{np.nonzero(~np.isfinite(values))[0].tolist()}")
        high = arrays["high"]
        inverted = np.nonzero(mask & (low > high))[0]
        if inverted.size:
            raise ValueError(f"action statistics have low > high at dims {inverted.tolist()} "
                             f"(low {low[inverted].tolist()}, high {high[inverted].tolist()})")
        if guarded:
            outside = np.nonzero(mask & ((arrays["clip_low"] > low) | (arrays["clip_high"] < high)))[0]
            if outside.size:
                raise ValueError(f"action statistics have guard bounds inside [low, high] at dims {outside.tolist()}")
        return cls(low, high, mask, arrays.get("clip_low"), arrays.get("clip_high"), kind=data["kind"])


def real_tensor(values: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    """`values` as a float32 tensor; refuses bool, complex, string and object data instead of casting it."""
    if isinstance(values, torch.Tensor):
        if values.dtype == torch.bool or values.dtype.is_complex:
            raise ValueError(f"{name} must be real numbers, got a {values.dtype} tensor")
        return values.to(torch.float32)
    array = np.asarray(values)
    if array.dtype.kind not in REAL_DTYPE_KINDS:
        raise ValueError(f"{name} must be real numbers, got an array of dtype {array.dtype}")
    return torch.as_tensor(array, dtype=torch.float32)
