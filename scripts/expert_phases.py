"""Where does the scripted expert wait? Runs it on official initial states (physics only, one thread) and prints, per
episode, the steps it spent in each phase, how many of them left the hand still (moved < `STALL_DISTANCE`), and
whether a moving phase ran to its step limit: a still hand in a moving phase is a wait the state does not show, which
a learned policy cannot time (docs/history/RESULTS.md, the eighth and twelfth passes). Ends with a JSON line of totals.

    python scripts/expert_phases.py --suite libero_spatial --trials 3 [--grasp-hold contact] [--phase-end stall]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
import torch

from rvq.envs.libero_env import LiberoEnv
from rvq.expert.scripted import GRASP_HOLDS, PHASE_ENDS, STALL_DISTANCE, ScriptedExpert

MOVING = ("above", "down", "lift", "carry", "lower")  # pick and place's phases with a target (`Phase.target`)


def phase_steps(env: LiberoEnv, expert: ScriptedExpert, trial: int) -> dict[str, Any]:
    """One episode from official initial state `trial`: per phase `[steps, still steps, ran to its limit]`."""
    obs = env.reset(trial)
    expert.attach_env(env)
    expert.reset(env.instruction, env.task_id, trial)
    phases: dict[str, list] = {}
    success, steps = False, 0
    for steps in range(1, env.max_steps + 1):
        index = expert.index
        action = expert.act(obs)
        name = expert.phases[index].name if index < len(expert.phases) else "done"
        before = np.array(env.raw_obs["robot0_eef_pos"], dtype=np.float64)
        obs, success = env.step(action[0])
        entry = phases.setdefault(name, [0, 0, False])
        entry[0] += 1
        entry[1] += int(np.linalg.norm(np.asarray(env.raw_obs["robot0_eef_pos"]) - before) < STALL_DISTANCE)
        if index < len(expert.phases):
            phase = expert.phases[index]
            entry[2] = entry[2] or (phase.target is not None and entry[0] >= phase.max_steps)
        if success:
            break
    return {"success": bool(success), "steps": steps, "phases": phases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="libero_spatial")
    parser.add_argument("--tasks", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--trials", type=int, default=3, help="official initial states 0..N-1 of each task")
    parser.add_argument("--grasp-hold", default="timer", choices=GRASP_HOLDS)
    parser.add_argument("--phase-end", default="limit", choices=PHASE_ENDS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    totals = {"episodes": 0, "successes": 0, "moving_still_steps": 0, "phases_at_limit": 0}
    for task in args.tasks:
        env = LiberoEnv(args.suite, task, render=False)
        try:
            for trial in range(args.trials):
                episode = phase_steps(env, ScriptedExpert(args.grasp_hold, args.phase_end), trial)
                phases = episode["phases"]
                still = sum(phases[name][1] for name in MOVING if name in phases)
                limits = sum(phases[name][2] for name in MOVING if name in phases)
                totals["episodes"] += 1
                totals["successes"] += episode["success"]
                totals["moving_still_steps"] += still
                totals["phases_at_limit"] += limits
                text = " ".join(f"{name} {n} ({s} still{', at its limit' if limit else ''})"
                                for name, (n, s, limit) in phases.items())
                print(f"task {task} trial {trial}: success {episode['success']}, {episode['steps']} steps, "
                      f"{still} still in moving phases | {text}", flush=True)
        finally:
            env.close()
    print(json.dumps(totals))


if __name__ == "__main__":
    main()
