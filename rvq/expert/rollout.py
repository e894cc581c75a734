"""One expert rollout in the simulator, recorded with everything a LIBERO demo holds (actions, sim states, the
observations the state features and images read). Collection (`rvq.expert.collect`) and takeover demos
(`rvq.expert.takeover`) both record with it."""

from __future__ import annotations

from typing import Any

import numpy as np


def _record(env, obs: dict[str, Any]) -> dict[str, np.ndarray]:
    raw = env.raw_obs
    record = {
        "ee_pos": np.asarray(raw["robot0_eef_pos"]), "ee_ori": obs["state"][3:6],
        "gripper_states": np.asarray(raw["robot0_gripper_qpos"]), "joint_states": np.asarray(raw["robot0_joint_pos"]),
    }
    for name, pose in obs["objects"].items():  # obs/objects/<name> [T, 7]: what state features read
        record[f"objects/{name}"] = pose
    if "agentview" in obs:
        record["agentview_rgb"], record["eye_in_hand_rgb"] = obs["agentview"], obs["wrist"]
    return record


def expert_episode(env, expert, trial: int, seed: int | None = None) -> dict[str, Any]:
    """One expert episode with everything a LIBERO demo holds: from fixed initial state `trial`, or from a
    randomized reset with `seed`."""
    obs = env.reset(trial) if seed is None else env.reset_random(seed)
    episode = expert_rollout(env, expert, obs, trial)
    episode["seed"] = seed
    return episode


def expert_rollout(env, expert, obs: dict[str, Any], trial: int) -> dict[str, Any]:
    """The expert acts from `obs` (the env's current state) until success or `env.max_steps` steps, recording
    what a LIBERO demo holds."""
    expert.attach_env(env)
    expert.reset(env.instruction, env.task_id, trial)
    frames: dict[str, list] = {}
    actions, states = [], []
    success = False
    for _ in range(env.max_steps):
        for key, value in _record(env, obs).items():
            frames.setdefault(key, []).append(value)
        states.append(env.sim_env.sim.get_state().flatten())
        action = expert.act(obs)[0]
        actions.append(action)
        obs, success = env.step(action)
        if success:
            break
    steps = len(actions)
    return {"actions": np.asarray(actions), "states": np.asarray(states),
            "obs": {k: np.asarray(v) for k, v in frames.items()}, "success": bool(success), "steps": steps,
            "trial": trial}
