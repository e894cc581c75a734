"""The LIBERO evaluation protocol (OpenVLA / OpenVLA-OFT convention)."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from tyro.constructors import PrimitiveConstructorSpec

MAX_STEPS = {"libero_spatial": 220, "libero_object": 280, "libero_goal": 300, "libero_10": 520, "libero_90": 400}
NUM_TASKS = {"libero_spatial": 10, "libero_object": 10, "libero_goal": 10, "libero_10": 10, "libero_90": 90}
NUM_WAIT_STEPS = 10  # no-op steps while objects settle, before the policy acts (not counted in MAX_STEPS)
NOOP_ACTION = np.array([0, 0, 0, 0, 0, 0, -1], dtype=np.float64)
ENV_SEED = 0  # OFT's get_libero_env calls env.seed(0); trial scenes follow from it (rvq.envs.scene_chain)
RESOLUTION = 256
TRIALS_PER_TASK = 50
ACTION_DIM = 7


def check_suite(suite: str) -> str:
    if suite not in MAX_STEPS:
        raise ValueError(f"unknown suite {suite!r}; choose one of {sorted(MAX_STEPS)}")
    return suite


def check_tasks(tasks: list[int], suite: str) -> list[int]:
    """Task ids (empty: all of the suite) checked against the suite's task count; sorted, unique."""
    count = NUM_TASKS[check_suite(suite)]
    if not tasks:
        return list(range(count))
    bad = [t for t in tasks if not 0 <= t < count]
    if bad:
        raise ValueError(f"{suite} has tasks 0..{count - 1}; got {bad}")
    return sorted(set(tasks))


def expand_task_spec(spec: str | None) -> list[int]:
    """`"0,3,5"` or `"0-4"` → task ids; None, "" or "all" → [] (all of the suite's). Not checked against a suite."""
    if spec is None or spec == "" or spec == "all":
        return []
    tasks: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-"))
                if hi < lo:
                    raise ValueError(f"task range {part!r} is empty (write low-high, e.g. 1-3)")
                tasks.extend(range(lo, hi + 1))
            else:
                tasks.append(int(part))
        except ValueError as exc:
            raise ValueError(f"cannot parse task list {spec!r}: use e.g. 0,3,5 or 0-4 ({exc})") from exc
    return tasks


def _task_ids_from_words(words: list[str]) -> list[int]:
    return [task for word in words for task in expand_task_spec(word)]


# A config field of task ids, given on the command line as ids, ranges or both: `--tasks 0 3 5`, `--tasks 0-4`,
# `--tasks 0,3,5`, `--tasks all` (empty: the whole suite). In files and Python it is a list of ints.
TaskIds = Annotated[list[int], PrimitiveConstructorSpec(
    nargs="*", metavar="ID|LO-HI", instance_from_str=_task_ids_from_words,
    is_instance=lambda value: isinstance(value, list) and all(isinstance(task, int) for task in value),
    str_from_instance=lambda value: [str(task) for task in value])]


def parse_tasks(spec: str | None, suite: str) -> list[int]:
    """`"0,3,5"` or `"0-4"` (or None / "all": all) → task ids, checked against the suite's task count."""
    check_suite(suite)
    return check_tasks(expand_task_spec(spec), suite)
