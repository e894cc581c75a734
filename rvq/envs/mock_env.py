"""A deterministic stand-in for `LiberoEnv` (same observation dict, action contract, reset/step API).

The end effector moves by `action[:3] * 0.05` per step; the task succeeds when it is within 0.05 of a
target that depends on task and trial, with the gripper closed (`action[6] > 0`). Images encode the
end-effector position (so image features carry the state); renders are stored upside down like LIBERO's.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from rvq.envs.observation import check_observation
from rvq.envs.suites import ACTION_DIM, MAX_STEPS, NOOP_ACTION, NUM_TASKS, NUM_WAIT_STEPS, TRIALS_PER_TASK, check_suite

STEP_SCALE = 0.05
MOCK_OBJECT = "target_1"  # the one object of every mock scene: the target, as a pose
TOLERANCE = 0.05


class MockLiberoEnv:
    def __init__(self, suite: str, task_id: int, resolution: int = 64, seed: int = 7, render: bool = True,
                 scene_cache: object = None, step_latency_s: float = 0.0) -> None:
        """`seed` draws the targets; `scene_cache` is accepted for `LiberoEnv`'s signature (a mock scene is a
        function of task and trial already); `step_latency_s`: sleep per step (a slow simulator, for benchmarks)."""
        self.step_latency_s = step_latency_s
        self.suite = check_suite(suite)
        if not 0 <= task_id < NUM_TASKS[suite]:
            raise ValueError(f"{suite} has tasks 0..{NUM_TASKS[suite] - 1}; got {task_id}")
        self.task_id = task_id
        self.task_name = f"mock_{suite}_task_{task_id}"
        self.instruction = f"move the gripper to target {task_id}"
        self.max_steps = MAX_STEPS[suite]
        self.resolution = resolution
        self.num_trials = TRIALS_PER_TASK
        self.seed = seed
        self.eef = np.zeros(3)
        self.gripper = -1.0
        self.target = np.zeros(3)

    def target_for(self, trial: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.task_id, trial])
        return rng.uniform(-0.5, 0.5, 3)

    def _render(self, shift: float) -> np.ndarray:
        image = np.zeros((self.resolution, self.resolution, 3), dtype=np.uint8)
        image[...] = np.clip((self.eef + 1.0) / 2.0 * 255 + shift, 0, 255).astype(np.uint8)
        image[: self.resolution // 4] = int((self.gripper + 1) * 127)
        return image[::-1, ::-1].copy()

    def observation(self) -> dict[str, Any]:
        obs = {
            "agentview": self._render(0.0),
            "wrist": self._render(32.0),
            "state": np.concatenate([self.eef, np.zeros(3), [self.gripper, -self.gripper]]).astype(np.float32),
            "instruction": self.instruction,
            "task_id": self.task_id,
            "objects": {MOCK_OBJECT: np.concatenate([self.target, [0.0, 0.0, 0.0, 1.0]])},
        }
        check_observation(obs, self.resolution)
        return obs

    def reset(self, trial: int) -> dict[str, Any]:
        if not 0 <= trial < self.num_trials:
            raise ValueError(f"{self.suite} task {self.task_id} has {self.num_trials} initial states; trial {trial}")
        self.eef = np.zeros(3)
        self.gripper = -1.0
        self.target = self.target_for(trial)
        for _ in range(NUM_WAIT_STEPS):
            self.step(NOOP_ACTION)
        return self.observation()

    def success(self) -> bool:
        return bool(np.linalg.norm(self.eef - self.target) < TOLERANCE and self.gripper > 0)

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], bool]:
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (ACTION_DIM,) or not np.isfinite(action).all():
            raise ValueError(f"action must be {ACTION_DIM} finite values, got {action.shape} {action}")
        if self.step_latency_s:
            time.sleep(self.step_latency_s)
        self.eef = self.eef + np.clip(action[:3], -1, 1) * STEP_SCALE
        self.gripper = 1.0 if action[6] > 0 else -1.0
        return self.observation(), self.success()

    def expert_actions(self, trial: int, steps: int = 60) -> np.ndarray:
        """A successful action sequence `[steps, 7]` for this task's trial (for replay demos)."""
        target = self.target_for(trial)
        eef, actions = np.zeros(3), []
        for t in range(steps):
            move = np.clip((target - eef) / STEP_SCALE, -1, 1)
            eef = eef + move * STEP_SCALE
            close = 1.0 if np.linalg.norm(target - eef) < TOLERANCE / 2 else -1.0
            actions.append(np.concatenate([move, np.zeros(3), [close]]))
        return np.asarray(actions)

    def close(self) -> None:
        pass


def mock_state_features(suite: str):
    """The state-feature layout of the mock suite: one object slot (the target), the suite's task count."""
    from rvq.backbones.state import StateFeatures  # here: it imports rvq.envs, whose package imports this module

    return StateFeatures(f"mock_{suite}", (MOCK_OBJECT,), {t: (MOCK_OBJECT,) for t in range(NUM_TASKS[suite])})
