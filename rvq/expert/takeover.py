"""Takeover demonstrations: recovery data from a learned policy's own states (DAgger-style).

A learned policy acts from a randomized reset for a drawn number of steps; then the scripted expert takes over
from the state the policy left (it plans from the state it finds, and lifts from where the hand is when the object
is already grasped) and finishes the task. Only the expert's part is recorded, with the observations it acted on.

Why: a policy imitating clean expert demos drifts into states those demos never visit (a missed grasp, a closed
empty hand beside the object, an object knocked aside), and there its actions are guesses. The expert's actions in
exactly those states are the labels it lacks (Ross et al. 2011, DAgger; Kelly et al. 2019, HG-DAgger, where a human
takes over). The takeover step is drawn per episode, so the recorded starts cover every phase of the task.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from rvq.expert.rollout import expert_rollout
from rvq.policies.bundle import read_layout


def draw_takeover_step(seed: int, low: int, high: int) -> int:
    """The step (in [low, high]) at which the expert takes over the episode started with reset `seed`: the same on
    every rerun."""
    return int(np.random.default_rng(seed).integers(low, high + 1))


def policy_fingerprint(folder: str | Path) -> str:
    """sha256 over what identifies the parts the prefix runs (tokenizer and main head: what `rvq eval`'s policy
    identity hashes for a main-only policy)."""
    digests = read_layout(folder, "main").digests("main")
    return hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()


def policy_prefix(env, policy, obs: dict[str, Any], steps: int) -> tuple[dict[str, Any], int, bool]:
    """Run `policy` for `steps` env steps from `obs` (its chunks executed whole, as `rvq eval` does by default).
    Returns (last observation, steps run, success): it stops early when the task succeeds."""
    policy.reset(env.instruction, env.task_id, -1)
    queue: list[np.ndarray] = []
    success, done = False, 0
    while done < steps:
        if not queue:
            queue = list(policy.act(obs))
        obs, success = env.step(queue.pop(0))
        done += 1
        if success:
            break
    return obs, done, success


def takeover_episode(env, policy, expert, seed: int, takeover_step: int) -> dict[str, Any]:
    """One episode from randomized reset `seed`: `policy` for `takeover_step` steps, then the expert (with a whole
    episode's step budget, `env.max_steps`). Returns `expert_rollout`'s record of the expert's
    part plus `policy_steps` and `policy_solved` (the policy succeeded before the takeover: nothing to record)."""
    obs = env.reset_random(seed)
    obs, policy_steps, solved = policy_prefix(env, policy, obs, takeover_step)
    if solved:
        return {"success": False, "policy_solved": True, "policy_steps": policy_steps, "steps": 0, "seed": seed,
                "trial": -1}
    episode = expert_rollout(env, expert, obs, trial=-1)
    episode.update({"policy_solved": False, "policy_steps": policy_steps, "seed": seed,
                    "started_holding": bool(expert.plan.get("started_holding", False))})
    return episode
