"""The `Policy` interface: reset with the task, act on an observation → an action chunk `[C, 7]` in raw
env units, executed open-loop by the runner."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from rvq.processors.action import GRIPPER, binarize_gripper

__all__ = ["GRIPPER", "Policy", "binarize_gripper"]


class Policy(Protocol):
    name: str

    def reset(self, instruction: str, task_id: int, trial: int) -> None:
        """Start an episode."""

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        """Observation dict (see `rvq.envs.observation`) → action chunk `[C, 7]` float64, raw env units."""

    def episode_stats(self) -> dict[str, Any]:
        """Statistics of the episode so far (RSD acceptance, latency, ...); JSON-serializable."""
