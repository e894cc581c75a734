"""The real LIBERO simulator behind the OpenVLA/OFT evaluation protocol.

Trial `i` of a task starts from the suite's fixed initial state `i`, in the scene (furniture placement) that OFT's
sequential run draws for it after `env.seed(0)`, whatever order trials run in and whatever the env ran before
(`rvq.envs.scene_chain`, `LiberoEnv._hard_reset`); it renders
256×256; `reset` then sends `NUM_WAIT_STEPS` no-op actions while objects settle. Success is the env's own predicate
(`check_success`), read after every step.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from rvq.envs.observation import check_observation, object_poses, quat_to_axis_angle
from rvq.envs.scene_chain import SceneChain
from rvq.envs.setup import prepare_libero
from rvq.envs.suites import ACTION_DIM, ENV_SEED, MAX_STEPS, NOOP_ACTION, NUM_WAIT_STEPS, RESOLUTION, check_suite


def _benchmark(suite: str):
    from libero.libero import benchmark  # noqa: PLC0415 - after prepare_libero

    return benchmark.get_benchmark_dict()[suite]()


class LiberoEnv:
    """One LIBERO task: `reset(trial) -> obs`, `step(action [7]) -> (obs, success)`, `close()`."""

    def __init__(
        self, suite: str, task_id: int, resolution: int = RESOLUTION, seed: int = ENV_SEED, render: bool = True,
        scene_cache: str | os.PathLike | None = None,
    ) -> None:
        """render=False: physics only (no cameras, ~10× faster); observations then lack images. Success
        and dynamics are the same: for policies that do not look (the scripted expert).
        scene_cache: a folder where envs of this task (other workers too) share the scene chain's states."""
        self.suite = check_suite(suite)
        prepare_libero()
        from libero.libero.envs import OffScreenRenderEnv  # noqa: PLC0415

        benchmark = _benchmark(suite)
        if not 0 <= task_id < benchmark.n_tasks:
            raise ValueError(f"{suite} has tasks 0..{benchmark.n_tasks - 1}; got {task_id}")
        self.task_id = task_id
        task = benchmark.get_task(task_id)
        self.task_name = task.name
        self.instruction = str(task.language)
        self.init_states = np.asarray(benchmark.get_task_init_states(task_id))
        self.max_steps = MAX_STEPS[suite]
        self.resolution = resolution
        self.render = render
        bddl = benchmark.get_task_bddl_file_path(task_id)
        if not os.path.isfile(bddl):
            raise FileNotFoundError(f"LIBERO task file missing: {bddl}")
        try:
            if render:
                self.env = OffScreenRenderEnv(bddl_file_name=bddl, camera_heights=resolution, camera_widths=resolution)
            else:
                self.env = OffScreenRenderEnv(bddl_file_name=bddl, has_offscreen_renderer=False, use_camera_obs=False)
        except Exception as exc:  # noqa: BLE001 - re-raised with the likely fix
            raise RuntimeError(
                f"cannot create the LIBERO env for {suite} task {task_id} with MUJOCO_GL="
                f"{os.environ.get('MUJOCO_GL')}: {exc} (try MUJOCO_GL=osmesa)"
            ) from exc
        self.env.seed(seed)
        # LIBERO appends a new set of property samplers (drawer open/close, stove on/off: one per such predicate in
        # the task's initial state) at every hard reset and never drops the old ones; each draws from NumPy's global
        # generator before the furniture is placed, so a reset's scene depends on how many resets this env object
        # made before it. The set the constructor's reset appended is kept, and every reset here starts from the
        # list a fresh env would hold (`_hard_reset`).
        self._property_samplers = list(self.sim_env.object_property_initializers)
        self.scenes = SceneChain(seed, Path(scene_cache) / f"{suite}-task{task_id}" if scene_cache else None)
        self.raw_obs: dict[str, Any] = {}

    @property
    def sim_env(self):
        """The LIBERO problem env inside the wrapper: parsed BDDL, objects, MuJoCo sim (privileged state)."""
        return self.env.env

    @property
    def num_trials(self) -> int:
        return int(self.init_states.shape[0])

    def observation(self, raw: dict[str, Any]) -> dict[str, Any]:
        state = np.concatenate([
            raw["robot0_eef_pos"], quat_to_axis_angle(raw["robot0_eef_quat"]), raw["robot0_gripper_qpos"],
        ]).astype(np.float32)
        obs: dict[str, Any] = {"state": state, "instruction": self.instruction, "task_id": self.task_id,
                               "objects": object_poses(raw)}
        if self.render:
            obs["agentview"] = np.ascontiguousarray(raw["agentview_image"])
            obs["wrist"] = np.ascontiguousarray(raw["robot0_eye_in_hand_image"])
        check_observation(obs, self.resolution, require_images=self.render)
        return obs

    def reset(self, trial: int) -> dict[str, Any]:
        """Start trial `trial` from the suite's fixed initial state, then wait for objects to settle."""
        if not 0 <= trial < self.num_trials:
            raise ValueError(f"{self.suite} task {self.task_id} has {self.num_trials} initial states; trial {trial}")
        # trial i's scene as in OFT's sequential run, where i + 1 hard resets came first (the constructor's, trials
        # 0..i-1)
        self.scenes.reset(trial, lambda i: self._hard_reset(i + 1))
        self.env.set_init_state(self.init_states[trial])
        return self._settle()

    def reset_random(self, seed: int) -> dict[str, Any]:
        """Start from LIBERO's own randomized reset: object placements drawn from the task's BDDL regions with
        `seed` (LIBERO seeds numpy's global generator), then wait for objects to settle. Not one of the fixed
        evaluation initial states: for training demonstrations."""
        self.env.seed(seed)
        self._hard_reset(1)  # as a fresh env's first reset: the seed alone decides the placement
        return self._settle()

    def _hard_reset(self, resets_before: int) -> None:
        """LIBERO's hard reset as the env would make it after `resets_before` earlier ones (its constructor's
        included): the property samplers those resets would have left are restored first, so the draws (and the
        scene) do not depend on what this env object ran before."""
        self.sim_env.object_property_initializers[:] = self._property_samplers * resets_before
        self.env.reset()

    def _settle(self) -> dict[str, Any]:
        """After a reset: `NUM_WAIT_STEPS` no-op actions while objects settle; returns the first observation."""
        for _ in range(NUM_WAIT_STEPS):
            raw, _, _, _ = self.env.step(NOOP_ACTION)
        self.raw_obs = raw
        return self.observation(raw)

    def success(self) -> bool:
        """The env's own success predicate."""
        return bool(self.env.check_success())

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], bool]:
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (ACTION_DIM,) or not np.isfinite(action).all():
            raise ValueError(f"action must be {ACTION_DIM} finite values, got {action.shape} {action}")
        raw, _, _, _ = self.env.step(action)
        self.raw_obs = raw
        return self.observation(raw), self.success()

    def close(self) -> None:
        env, self.env = getattr(self, "env", None), None
        if env is not None:
            env.close()
