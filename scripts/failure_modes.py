"""Where do a learned policy's failed libero_object episodes stop? Re-runs every failed (task, trial) of an
evaluation's results file with the policy folder it was made with (main-only greedy, physics only, one thread; with
`--temporal-ensemble [M]` when the evaluation used it) and classifies each by the target object's path: `untouched`
(never moved 1 cm), `moved` (moved, never lifted 5 cm), `lifted` (lifted, then dropped or not placed). Also counts
the gripper command's switches per episode (dithering).

    python scripts/failure_modes.py EVAL/results.jsonl POLICY_FOLDER [--temporal-ensemble [M]] [--tasks 2 3 5]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

import numpy as np
import torch

from rvq.envs.libero_env import LiberoEnv
from rvq.eval.results import read_results
from rvq.eval.runner import next_actions
from rvq.eval.temporal_ensemble import DEFAULT_ENSEMBLE_DECAY, TemporalEnsembler
from rvq.policies.token_policy import TokenPolicy

MOVED_M, LIFTED_M = 0.01, 0.05


def target_object(instruction: str, objects: dict[str, np.ndarray]) -> str:
    """libero_object's instructions read 'pick up the X and place it in the basket'; X names the object."""
    if not instruction.startswith("pick up the ") or " and place" not in instruction:
        raise ValueError(f"not a libero_object pick-and-place instruction: {instruction!r}")
    name = instruction[len("pick up the "):].split(" and place")[0].replace(" ", "_")
    matches = [key for key in objects if key.startswith(name)]
    if len(matches) != 1:
        raise ValueError(f"instruction names {name!r}; scene objects {sorted(objects)}")
    return matches[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results")
    parser.add_argument("policy")
    parser.add_argument("--temporal-ensemble", type=float, nargs="?", const=DEFAULT_ENSEMBLE_DECAY, default=None,
                        metavar="M", help="re-run as the evaluation did with `--temporal-ensemble M`")
    parser.add_argument("--tasks", type=int, nargs="+", default=None, help="only these tasks' failures")
    args = parser.parse_args()
    torch.set_num_threads(1)
    records = read_results(args.results)
    suites = {r["suite"] for r in records}
    if suites != {"libero_object"}:
        raise SystemExit(f"this script classifies libero_object episodes; the file holds {sorted(suites)}")
    failed = sorted((r["task"], r["trial"]) for r in records
                    if not r["success"] and (args.tasks is None or r["task"] in args.tasks))
    policy = TokenPolicy.from_dir(args.policy, mode="main", device="cpu")
    counts: Counter[str] = Counter()
    env, env_task = None, None
    for task, trial in failed:
        if env_task != task:
            if env is not None:
                env.close()
            env, env_task = LiberoEnv("libero_object", task, render=False), task
        obs = env.reset(trial)
        target = target_object(env.instruction, obs["objects"])
        start = obs["objects"][target][:3].copy()
        policy.reset(env.instruction, task, trial)
        ensembler = None if args.temporal_ensemble is None else TemporalEnsembler(args.temporal_ensemble)
        queue, moved, lifted, switches, last, success = [], 0.0, 0.0, 0, None, False
        for _ in range(env.max_steps):
            if not queue:
                queue = next_actions(policy.act(obs), None, ensembler)
            action = queue.pop(0)
            switches += last is not None and action[6] != last
            last = action[6]
            obs, success = env.step(action)
            if success:
                break
            position = obs["objects"][target][:3]
            moved = max(moved, float(np.linalg.norm(position - start)))
            lifted = max(lifted, float(position[2] - start[2]))
        kind = "succeeded on re-run" if success else (
            "lifted" if lifted > LIFTED_M else "moved" if moved > MOVED_M else "untouched")
        counts[kind] += 1
        print(f"task {task} trial {trial}: {kind} (lifted {lifted:.3f} m, moved {moved:.3f} m, "
              f"gripper switches {switches})", flush=True)
    print(json.dumps(dict(counts)))


if __name__ == "__main__":
    main()
