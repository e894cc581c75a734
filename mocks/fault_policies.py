"""Policies that fail the way real ones do, for the runner's fault tests: a worker killed mid-episode (segfault,
OOM kill, `kill -9`), a policy call that never returns, a policy that is merely slow.

`FaultyPolicyFactory` is a picklable policy factory (`rvq.eval.run_eval(cfg, factory=...)`): spawn workers and
Ray actors build their policy from it. `once_dir`: a kill happens only the first time a trial reaches it (a
marker file is written before dying), so a requeued episode then succeeds.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rvq.envs.suites import NOOP_ACTION


@dataclass
class FaultyPolicyFactory:
    kill_trials: set[int] = field(default_factory=set)  # SIGKILL the worker process when this trial starts
    hang_trials: set[int] = field(default_factory=set)  # act() never returns
    slow_trials: set[int] = field(default_factory=set)  # act() sleeps `slow_s`, then acts
    slow_s: float = 0.5
    once_dir: str | None = None

    def __call__(self, cfg: Any) -> "FaultyPolicy":
        return FaultyPolicy(self)


class FaultyPolicy:
    name = "faulty"

    def __init__(self, spec: FaultyPolicyFactory) -> None:
        self.spec, self.trial = spec, -1

    def reset(self, instruction: str, task_id: int, trial: int) -> None:
        self.trial = trial
        if trial in self.spec.kill_trials:
            if self.spec.once_dir is not None:
                marker = Path(self.spec.once_dir) / f"killed-task{task_id}-trial{trial}"
                if marker.exists():
                    return
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        if self.trial in self.spec.hang_trials:
            while True:
                time.sleep(3600)
        if self.trial in self.spec.slow_trials:
            time.sleep(self.spec.slow_s)
        return np.tile(NOOP_ACTION, (8, 1))

    def episode_stats(self) -> dict[str, Any]:
        return {}
