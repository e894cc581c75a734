"""LIBERO environments: the real simulator (`LiberoEnv`) and a deterministic mock with the same API."""

from rvq.envs.mock_env import MockLiberoEnv
from rvq.envs.observation import check_observation
from rvq.envs.suites import MAX_STEPS, NUM_TASKS, check_suite, parse_tasks

ENV_KINDS = ("libero", "mock")


def make_env(kind: str, suite: str, task_id: int, **kwargs):
    """`kind`: "libero" (the real simulator) or "mock"."""
    if kind == "libero":
        from rvq.envs.libero_env import LiberoEnv

        return LiberoEnv(suite, task_id, **kwargs)
    if kind == "mock":
        return MockLiberoEnv(suite, task_id, **kwargs)
    raise ValueError(f"unknown env kind {kind!r}; choose one of {ENV_KINDS}")


__all__ = ["ENV_KINDS", "MAX_STEPS", "MockLiberoEnv", "NUM_TASKS", "check_observation", "check_suite",
           "make_env", "parse_tasks"]
