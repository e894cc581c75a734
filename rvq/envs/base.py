"""The env contract the runner relies on, a benchmark's description, and the registry of env kinds.

A second benchmark (SimplerEnv, RoboCasa) is one module with an `Env` class and one `ENVS` entry with its
`BenchmarkSpec`: the runner, the executors, the policies and the reports only use what is declared here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

import rvq.envs.suites as suites


class Env(Protocol):
    """One task of a benchmark. Observations follow `rvq.envs.observation` (state, instruction, task id, objects,
    images when rendering)."""

    task_name: str
    instruction: str
    max_steps: int
    num_trials: int

    def reset(self, trial: int) -> dict[str, Any]:
        """Start trial `trial` (a fixed initial state and scene: a function of the task and the trial alone)."""

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], bool]:
        """One action `[action_dim]` in raw env units → (observation, success by the env's own predicate)."""

    def close(self) -> None:
        """Free the simulator."""


@dataclass(frozen=True)
class BenchmarkSpec:
    """What an evaluation protocol fixes, in one place."""

    name: str
    max_steps: dict[str, int]  # suite → steps before an episode counts as a failure
    num_tasks: dict[str, int]
    trials_per_task: int  # fixed initial states per task
    wait_steps: int  # no-op steps while objects settle, before the policy acts (not counted in max_steps)
    noop_action: tuple[float, ...]
    env_seed: int
    resolution: int  # camera renders, pixels
    action_dim: int
    observation_transform: str  # what the policy side does to renders before a model sees them


LIBERO = BenchmarkSpec(
    name="libero", max_steps=dict(suites.MAX_STEPS), num_tasks=dict(suites.NUM_TASKS),
    trials_per_task=suites.TRIALS_PER_TASK, wait_steps=suites.NUM_WAIT_STEPS,
    noop_action=tuple(float(x) for x in suites.NOOP_ACTION), env_seed=suites.ENV_SEED,
    resolution=suites.RESOLUTION, action_dim=suites.ACTION_DIM,
    observation_transform="rotate 180 degrees, resize to 224 (rvq.processors.libero_observation_steps)",
)


@dataclass(frozen=True)
class EnvEntry:
    benchmark: BenchmarkSpec
    factory: str  # "module:Class", imported only when an env of this kind is made
    description: str


ENVS: dict[str, EnvEntry] = {
    "libero": EnvEntry(LIBERO, "rvq.envs.libero_env:LiberoEnv", "the real LIBERO simulator"),
    "mock": EnvEntry(LIBERO, "rvq.envs.mock_env:MockLiberoEnv", "a deterministic stand-in with LIBERO's protocol"),
}


def env_class(kind: str) -> type:
    if kind not in ENVS:
        raise ValueError(f"unknown env kind {kind!r}; choose one of {tuple(ENVS)}")
    module, name = ENVS[kind].factory.split(":")
    return getattr(importlib.import_module(module), name)
