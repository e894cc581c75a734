"""Action steps: what a policy does to its model's output before the env executes it. They take and return
action chunks `[..., C, A]`: first normalized (the tokenizer's decoded codes), raw env units after `Unnormalize`,
and float64 NumPy after `BinarizeGripper`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from rvq.data.normalize import ActionNormalizer
from rvq.processors.pipeline import DataclassStep, Pipeline, register_step

GRIPPER = -1  # index of the gripper dimension


def gripper_split(flip_sign: bool = False) -> float:
    """Where `binarize_gripper` splits the gripper value: 0, or 0.5 for OpenVLA-family outputs (`flip_sign`)."""
    return 0.5 if flip_sign else 0.0


def binarize_gripper(chunk: np.ndarray, flip_sign: bool = False) -> np.ndarray:
    """Chunks `[..., C, 7]` with the gripper to ±1 (LIBERO: -1 open, +1 close), split at 0. `flip_sign` for
    OpenVLA-family outputs, whose gripper lies in [0, 1] with 1 = open: split at 0.5 and flipped, as OpenVLA-OFT's
    LIBERO evaluation does (`normalize_gripper_action` to [-1, 1], sign, then `invert_gripper_action`). Exactly 0.5
    maps to close here (OFT sends 0)."""
    chunk = np.array(chunk, dtype=np.float64, copy=True)
    if chunk.ndim < 2 or chunk.shape[-1] != 7:
        raise ValueError(f"action chunk must be [C, 7] (or [B, C, 7]), got {list(chunk.shape)}")
    if not np.isfinite(chunk).all():
        raise ValueError("action chunk contains NaN/inf")
    above = chunk[..., GRIPPER] > gripper_split(flip_sign)
    chunk[..., GRIPPER] = np.where(above, -1.0, 1.0) if flip_sign else np.where(above, 1.0, -1.0)
    return chunk


@register_step("unnormalize")
@dataclass(frozen=True)
class Unnormalize(DataclassStep):
    """Normalized actions `[..., A]` (torch) → raw env units, with the action statistics of the tokenizer the
    heads were trained with (bound at load: a bundle's statistics live in its tokenizer part)."""

    normalizer: ActionNormalizer | None = field(default=None, metadata={"bound": True}, compare=False)

    def __call__(self, actions: torch.Tensor) -> torch.Tensor:
        if self.normalizer is None:
            raise RuntimeError("unnormalize: no action statistics bound (a bundle binds its tokenizer's)")
        return self.normalizer.unnormalize(actions)


@register_step("binarize_gripper")
@dataclass(frozen=True)
class BinarizeGripper(DataclassStep):
    """The gripper dimension to ±1 (`binarize_gripper`); `flip`: OpenVLA-family outputs (1 = open)."""

    flip: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.flip, bool):
            raise ValueError(f"binarize_gripper: flip must be true or false, got {self.flip!r}")

    def __call__(self, chunks: torch.Tensor | np.ndarray) -> np.ndarray:
        chunks = chunks.numpy() if isinstance(chunks, torch.Tensor) else chunks
        return binarize_gripper(chunks, self.flip)


def libero_action_steps(flip_gripper: bool = False) -> Pipeline:
    """A token policy's output for LIBERO: unnormalized, the gripper binarized (flipped for OpenVLA-family heads)."""
    return Pipeline([Unnormalize(), BinarizeGripper(flip_gripper)])


def gripper_flip(steps: Pipeline) -> bool:
    """Whether the steps flip the gripper (False when they do not binarize it)."""
    return any(step.flip for step in steps.find(BinarizeGripper))
