"""The `Policy` interface: reset with the task, act on an observation → an action chunk `[C, 7]` in raw
env units, executed open-loop by the runner."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

GRIPPER = -1  # index of the gripper dimension


class Policy(Protocol):
    name: str

    def reset(self, instruction: str, task_id: int, trial: int) -> None:
        """Start an episode."""

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        """Observation dict (see `rvq.envs.observation`) → action chunk `[C, 7]` float64, raw env units."""

    def episode_stats(self) -> dict[str, Any]:
        """Statistics of the episode so far (RSD acceptance, latency, ...); JSON-serializable."""


def binarize_gripper(chunk: np.ndarray, flip_sign: bool = False) -> np.ndarray:
    """Gripper to ±1 (LIBERO: -1 open, +1 close), split at 0. `flip_sign` for OpenVLA-family outputs, whose gripper
    lies in [0, 1] with 1 = open: split at 0.5 and flipped, as OpenVLA-OFT's LIBERO evaluation does
    (`normalize_gripper_action` to [-1, 1], sign, then `invert_gripper_action`). Exactly 0.5 maps to close here
    (OFT sends 0)."""
    chunk = np.array(chunk, dtype=np.float64, copy=True)
    if chunk.ndim != 2 or chunk.shape[1] != 7:
        raise ValueError(f"action chunk must be [C, 7], got {list(chunk.shape)}")
    if not np.isfinite(chunk).all():
        raise ValueError("action chunk contains NaN/inf")
    if flip_sign:
        chunk[:, GRIPPER] = np.where(chunk[:, GRIPPER] > 0.5, -1.0, 1.0)
    else:
        chunk[:, GRIPPER] = np.where(chunk[:, GRIPPER] > 0, 1.0, -1.0)
    return chunk
