"""Policies that fail the way real ones do, for the runner's fault tests: a worker killed mid-episode (segfault,
OOM kill, `kill -9`), a worker stopped (SIGSTOP: alive, silent), a policy call that never returns, a policy that is
merely slow, and a batched policy for the policy service that stops the service's process.

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
    stop_trials: set[int] = field(default_factory=set)  # SIGSTOP it at this trial's first action (alive, silent)
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
        self.trial, self.task, self.steps = trial, task_id, 0
        if trial in self.spec.kill_trials and self._first_time("killed"):
            os.kill(os.getpid(), signal.SIGKILL)

    def _first_time(self, what: str) -> bool:
        """True unless `once_dir` records that this episode's fault already happened (then it does not again)."""
        if self.spec.once_dir is None:
            return True
        marker = Path(self.spec.once_dir) / f"{what}-task{self.task}-trial{self.trial}"
        if marker.exists():
            return False
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        return True

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        self.steps += 1
        if self.trial in self.spec.stop_trials and self.steps == 2 and self._first_time("stopped"):
            os.kill(os.getpid(), signal.SIGSTOP)  # mid-episode, after it has reported steps
        if self.trial in self.spec.hang_trials:
            while True:
                time.sleep(3600)
        if self.trial in self.spec.slow_trials:
            time.sleep(self.spec.slow_s)
        return np.tile(NOOP_ACTION, (8, 1))

    def episode_stats(self) -> dict[str, Any]:
        return {}


@dataclass
class StoppingBatchPolicyFactory:
    """For the policy service: a batched policy (`act_batch`) that stops its own process (SIGSTOP) at its
    `stop_at`-th batch, as a service frozen by a debugger, a stuck driver or a full swap would be."""

    stop_at: int = 3

    def __call__(self, cfg: Any) -> "StoppingBatchPolicy":
        return StoppingBatchPolicy(self.stop_at)


class StoppingBatchPolicy:
    def __init__(self, stop_at: int) -> None:
        self.stop_at, self.batches = stop_at, 0

    def act_batch(self, observations: list, instructions: list, pad_to: int | None = None) -> list:
        self.batches += 1
        if self.batches == self.stop_at:
            os.kill(os.getpid(), signal.SIGSTOP)
        step = {"ms": 0.0, "feature_ms": 0.0, "batch": len(observations), "rsd": None}
        return [(np.tile(NOOP_ACTION, (8, 1)), step) for _ in observations]


@dataclass
class ReplicaKillingFactory:
    """Wraps a real policy factory for a policy replica: the replica's process exits at its `kill_at`-th batch, the
    first time only (a marker in `once_dir`), as a replica lost to an OOM kill or a node failure would."""

    inner: Any
    once_dir: str
    kill_at: int = 3

    def __call__(self, cfg: Any) -> "ReplicaKillingPolicy":
        return ReplicaKillingPolicy(self.inner(cfg), self)


class ReplicaKillingPolicy:
    def __init__(self, policy: Any, spec: ReplicaKillingFactory) -> None:
        self.policy, self.spec, self.batches = policy, spec, 0

    def act_batch(self, observations: list, instructions: list, pad_to: int | None = None) -> list:
        self.batches += 1
        marker = Path(self.spec.once_dir) / "replica-killed"
        if self.batches == self.spec.kill_at and not marker.exists():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
            os._exit(1)
        return self.policy.act_batch(observations, instructions, pad_to=pad_to)


@dataclass
class LatencyPolicyFactory:
    """A batched policy whose cost stands in for a GPU's: `fixed_ms` per batch plus `per_sample_ms` per request
    (a launch-bound 7B step is mostly the fixed part); acts a no-op chunk. For the Ray scaling benchmark."""

    fixed_ms: float = 50.0
    per_sample_ms: float = 2.0

    def __call__(self, cfg: Any) -> "LatencyPolicy":
        return LatencyPolicy(self)


class LatencyPolicy:
    name = "latency"

    def __init__(self, spec: LatencyPolicyFactory) -> None:
        self.spec = spec

    def act_batch(self, observations: list, instructions: list, pad_to: int | None = None) -> list:
        time.sleep((self.spec.fixed_ms + self.spec.per_sample_ms * len(observations)) / 1e3)
        step = {"ms": 0.0, "feature_ms": 0.0, "batch": len(observations), "rsd": None}
        return [(np.tile(NOOP_ACTION, (8, 1)), step) for _ in observations]
