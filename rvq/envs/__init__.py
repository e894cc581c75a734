"""Benchmark envs: the real LIBERO simulator (`LiberoEnv`) and a deterministic mock with the same API, behind the
`Env` contract and the `ENVS` registry (`rvq.envs.base`)."""

from rvq.envs.base import ENVS, LIBERO, BenchmarkSpec, Env, env_class
from rvq.envs.mock_env import MockLiberoEnv
from rvq.envs.observation import check_observation
from rvq.envs.suites import MAX_STEPS, NUM_TASKS, check_suite, parse_tasks

ENV_KINDS = tuple(ENVS)


def make_env(kind: str, suite: str, task_id: int, **kwargs) -> Env:
    """An env of a registered kind (`ENVS`: "libero", the real simulator, or "mock") for one task of a suite."""
    return env_class(kind)(suite, task_id, **kwargs)


__all__ = ["ENVS", "ENV_KINDS", "LIBERO", "MAX_STEPS", "BenchmarkSpec", "Env", "MockLiberoEnv", "NUM_TASKS",
           "check_observation", "check_suite", "env_class", "make_env", "parse_tasks"]
