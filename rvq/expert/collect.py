"""`rvq collect-demos`: run the scripted expert in the real simulator and write LIBERO-layout HDF5 files.

One file per task, `<task_name>_demo.hdf5`, the layout of LIBERO's own datasets (read unchanged by
`rvq.data`):

    data/                  attrs: problem_info (JSON, language_instruction), env_args (JSON), bddl_file_name,
                                  attempts, successes, success_rate, complete
    data/demo_k/           attrs: num_samples, init_state_index, success
        actions [T, 7]     states [T, S] (MuJoCo state)   rewards [T]   dones [T]
        obs/agentview_rgb, eye_in_hand_rgb [T, H, W, 3] uint8 (as rendered), ee_pos [T, 3], ee_ori [T, 3],
            gripper_states [T, 2], joint_states [T, 7], objects/<name> [T, 7] (position + quaternion x, y, z, w)

Observation t is the one the action t was chosen on. Only successful episodes are kept; a task without a
kept episode gets no file (the summary says so). A task whose file
is marked complete is skipped on rerun (resume); files are written atomically.

Starts: by default trial i starts from the suite's fixed initial state i (the evaluation states). With
`random_resets = N`, episodes start from LIBERO's randomized reset instead (seed `reset_seed(task, attempt)`,
recorded per demo as `reset_seed`), and attempts continue until N successes are kept or `max_attempts`
is reached: training data that never saw an evaluation initial state. With `takeover_policy` as well, a learned
policy acts first and the expert takes over (`rvq.expert.takeover`, seeds `reset_seed(task, attempt, True)`); the
files then hold the expert's part only, each demo recording its `takeover_step`, and the file the policy's
fingerprint.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from rvq.config_cli import save_run_config
from rvq.data.episodes import read_demos
from rvq.data.lerobot_write import write_lerobot_dataset
from rvq.data.state_obs import STATE_COLUMNS
from rvq.envs.libero_env import LiberoEnv
from rvq.envs.mock_env import MockLiberoEnv
from rvq.envs.suites import ENV_SEED, TaskIds, check_tasks
from rvq.eval.runner import share_cores
from rvq.expert.rollout import expert_episode
from rvq.expert.scripted import EXPERT_REVISION, check_grasp_hold, check_phase_end
from rvq.expert.scripted import ScriptedExpert
from rvq.expert.takeover import draw_takeover_step, policy_fingerprint, takeover_episode
from rvq.policies import TokenPolicy


@dataclass
class CollectConfig:
    """A demo collection run (`rvq collect-demos`; `--config FILE` gives defaults): the scripted expert on a LIBERO
    suite, one LIBERO-layout HDF5 file per task (rerun to resume). Task lists also take ranges (`--tasks 0-4`)."""

    suite: str = "libero_spatial"  # libero_spatial, libero_object, libero_goal, libero_10 or libero_90
    tasks: TaskIds = field(default_factory=list)  # task ids, e.g. 0 3, 0,3 or 0-4 (empty: all of the suite)
    trials: int = 50  # episodes per task, from the fixed initial states 0..N-1
    out_dir: str = "runs/demos"  # output folder (rerun to resume)
    workers: int = 1  # simulator processes, one task each at a time
    resolution: int = 128  # camera resolution of the recorded images (LIBERO's datasets are 128×128)
    # False (--no-images): physics only, no cameras (~10x faster); the files then hold actions, states,
    # proprioception and object poses, no images
    images: bool = True
    # N > 0: keep N successes per task from LIBERO's randomized resets (seeded, recorded) instead of the fixed
    # evaluation initial states: training data with no leakage into evaluation
    random_resets: int = 0
    max_attempts: int = 0  # randomized resets: episodes per task at most (0: 3 N + 10)
    # lerobot: also write the demos as a LeRobot dataset in <out_dir>/lerobot (the HDF5 files stay the resumable
    # store); needs pip install "rvq[lerobot]"
    format: str = "hdf5"
    lerobot_version: str = "v3.0"  # LeRobot layout: v3.0 or v2.1
    # takeover demos (DAgger-style, rvq.expert.takeover): this policy folder's main head acts from each randomized
    # reset, then the expert takes over and finishes; only the expert's part is recorded (needs random_resets)
    takeover_policy: str = ""
    takeover_steps: tuple[int, int] = (20, 160)  # LO HI: the takeover step is drawn per episode from it
    # how the expert's grasp ends: timer (a fixed 12 steps; every table before the seventh study pass) or contact
    # (the first step after both finger pads have held the object two steps in a row); recorded in the files
    grasp_hold: str = "timer"
    # how the expert's moving phases end besides arriving: limit (after 60 steps; every table before the twelfth
    # study pass) or stall (also once the hand has stopped, blocked); recorded in the files
    phase_end: str = "limit"

    def starts(self) -> str:
        """What the episodes start from, as recorded in the files."""
        if self.takeover_policy:
            return "takeover"
        return "random_resets" if self.random_resets else "fixed_initial_states"

    def attempt_limit(self) -> int:
        return self.max_attempts or 3 * self.random_resets + 10


RESET_SEED_BASE = 1_000_000  # far from ENV_SEED and from small trial numbers
ATTEMPTS_PER_TASK = 10_000  # seeds of task t: RESET_SEED_BASE + ATTEMPTS_PER_TASK * t + attempt


TAKEOVER_SEED_BASE = 2_000_000  # takeover episodes start from other randomized resets than the plain demos


def reset_seed(task: int, attempt: int, takeover: bool = False) -> int:
    """The seed of a randomized reset: distinct per (task, attempt, takeover or not), the same on every rerun."""
    return (TAKEOVER_SEED_BASE if takeover else RESET_SEED_BASE) + ATTEMPTS_PER_TASK * task + attempt


def task_file(out_dir: Path, env) -> Path:
    return out_dir / f"{env.task_name}_demo.hdf5"


def is_complete(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as f:
            return bool(f["data"].attrs.get("complete", False))
    except (OSError, KeyError):
        return False


def collect_task(cfg: CollectConfig, task: int) -> dict[str, Any]:
    env = LiberoEnv(cfg.suite, task, resolution=cfg.resolution, render=cfg.images)
    out = Path(cfg.out_dir)
    path = task_file(out, env)
    takeover = _takeover_settings(cfg)
    if is_complete(path):
        env.close()
        with h5py.File(path, "r") as f:
            attrs = f["data"].attrs
            # DART noise (removed, docs/decisions.md): a file made with it is not reused
            found = {"starts": str(attrs.get("starts", "fixed_initial_states")),
                     "action_noise": float(attrs.get("action_noise", 0.0)),
                     **{key: str(attrs.get(key, "")) for key in takeover},
                     "expert_grasp_hold": str(attrs.get("expert_grasp_hold", "timer")),  # older files: the timer
                     "expert_phase_end": str(attrs.get("expert_phase_end", "limit")),  # older files: the limit
                     "expert_revision": int(attrs.get("expert_revision", 1))}  # older files: the first expert
            rate = float(attrs["success_rate"])
        wanted = {"starts": cfg.starts(), "action_noise": 0.0, **takeover,
                  "expert_grasp_hold": cfg.grasp_hold, "expert_phase_end": cfg.phase_end,
                  "expert_revision": EXPERT_REVISION}
        if found != wanted:
            raise ValueError(f"{path} holds demos made with {found}, this run asks for {wanted}: use another --out "
                             "folder (a finished file is reused on rerun, never mixed with other settings)")
        return {"task": task, "file": str(path), "skipped": True, "success_rate": rate}
    expert, successes, kept, policy_solved = ScriptedExpert(cfg.grasp_hold, cfg.phase_end), 0, 0, 0
    policy = None
    if cfg.takeover_policy:
        share_cores(cfg.workers)
        policy = TokenPolicy.from_dir(cfg.takeover_policy, mode="main", device="cpu")
    tmp = path.with_name(path.name + ".tmp")
    try:
        with h5py.File(tmp, "w") as f:
            data = f.create_group("data")
            data.attrs["problem_info"] = json.dumps({"language_instruction": env.instruction,
                                                     "problem_name": env.sim_env.parsed_problem["problem_name"]})
            data.attrs["env_args"] = json.dumps({"suite": cfg.suite, "task_id": task, "controller": "OSC_POSE",
                                                 "resolution": cfg.resolution, "seed": ENV_SEED})
            data.attrs["bddl_file_name"] = os.path.basename(env.sim_env.bddl_file_name)  # LIBERO's problem env sets it
            attempts = 0
            for trial in range(cfg.attempt_limit() if cfg.random_resets else cfg.trials):
                if cfg.random_resets and successes >= cfg.random_resets:
                    break
                seed = reset_seed(task, trial, policy is not None) if cfg.random_resets else None
                if policy is not None:
                    step = draw_takeover_step(seed, *cfg.takeover_steps)
                    episode = takeover_episode(env, policy, expert, seed, step)
                    policy_solved += episode["policy_solved"]
                else:
                    episode = expert_episode(env, expert, trial, seed)
                attempts += 1
                successes += episode["success"]
                if not episode["success"] or episode.get("policy_solved"):
                    continue
                demo = data.create_group(f"demo_{kept}")
                kept += 1
                start = {"init_state_index": trial} if seed is None else {"reset_seed": seed, "init_state_index": -1}
                if policy is not None:
                    start["takeover_step"] = episode["policy_steps"]  # the policy's steps before the recorded part
                    start["takeover_holding"] = episode["started_holding"]  # the hand held the object at takeover
                demo.attrs.update({"num_samples": episode["steps"], "success": episode["success"], **start})
                demo.create_dataset("actions", data=episode["actions"])
                demo.create_dataset("states", data=episode["states"])
                rewards = np.zeros(episode["steps"])
                rewards[-1] = float(episode["success"])
                demo.create_dataset("rewards", data=rewards)
                demo.create_dataset("dones", data=rewards.astype(np.uint8))
                obs = demo.create_group("obs")
                for key, value in episode["obs"].items():
                    obs.create_dataset(key, data=value, compression="gzip" if value.dtype == np.uint8 else None)
            data.attrs.update({"attempts": attempts, "successes": successes, "success_rate": successes / attempts,
                               "kept": kept, "starts": cfg.starts(),
                               **takeover, **({"policy_solved": policy_solved} if policy is not None else {}),
                               "expert_grasp_hold": cfg.grasp_hold, "expert_phase_end": cfg.phase_end,
                               "expert_revision": EXPERT_REVISION, "complete": True})
        if kept == 0:  # a file without demos is not a dataset; the summary records the attempt
            tmp.unlink()
            return {"task": task, "file": None, "skipped": False, "success_rate": 0.0, "kept": 0, "attempts": attempts}
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        env.close()
    summary = {"task": task, "file": str(path), "skipped": False, "success_rate": successes / attempts, "kept": kept,
               "attempts": attempts, "attempts_per_kept_demo": attempts / kept}
    if policy is not None:
        summary["policy_solved"] = policy_solved  # attempts the policy finished before the takeover: not kept
    return summary


def _takeover_settings(cfg: CollectConfig) -> dict[str, str]:
    """The file attributes that identify a takeover run (empty for plain demos)."""
    if not cfg.takeover_policy:
        return {}
    return {"takeover_policy_sha256": policy_fingerprint(cfg.takeover_policy),
            "takeover_steps": f"{cfg.takeover_steps[0]}-{cfg.takeover_steps[1]}"}


def collect_demos(cfg: CollectConfig) -> list[dict[str, Any]]:
    """Collect every task of `cfg` (in parallel with `workers` processes); returns one summary per task."""
    tasks = check_tasks(cfg.tasks, cfg.suite)
    check_grasp_hold(cfg.grasp_hold)
    check_phase_end(cfg.phase_end)
    if cfg.format not in ("hdf5", "lerobot"):
        raise ValueError(f"format must be 'hdf5' or 'lerobot', got {cfg.format!r}")
    if cfg.random_resets < 0:
        raise ValueError(f"random_resets must be >= 0, got {cfg.random_resets}")
    if cfg.takeover_policy:
        low, high = cfg.takeover_steps
        if not cfg.random_resets:
            raise ValueError("takeover demos start from randomized resets: set random_resets (--random-resets N)")
        if not 0 <= low <= high:
            raise ValueError(f"takeover_steps must be 0 <= low <= high, got {cfg.takeover_steps}")
        policy_fingerprint(cfg.takeover_policy)  # a missing or incomplete folder fails here, before any env starts
    if cfg.random_resets and not 1 <= cfg.attempt_limit() <= ATTEMPTS_PER_TASK:
        raise ValueError(f"max_attempts must be in [1, {ATTEMPTS_PER_TASK}] (distinct reset seeds per task), "
                         f"got {cfg.attempt_limit()}")
    if not cfg.random_resets and not 1 <= cfg.trials <= 50:
        raise ValueError(f"trials must be in [1, 50] (one per fixed initial state), got {cfg.trials}")
    Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
    save_run_config(cfg, cfg.out_dir)  # what this run was given (a valid --config file); the demo files record theirs
    if cfg.workers <= 1:
        summaries = [collect_task(cfg, t) for t in tasks]
    else:
        with mp.get_context("spawn").Pool(cfg.workers) as pool:
            summaries = pool.starmap(collect_task, [(cfg, t) for t in tasks])
    (Path(cfg.out_dir) / "collect_summary.json").write_text(json.dumps(summaries, indent=2))
    if cfg.format == "lerobot":
        export_lerobot(cfg)
    return summaries


def export_lerobot(cfg: CollectConfig) -> Path:
    """The collected HDF5 demos (the resumable store) written again as one LeRobot dataset, `<out_dir>/lerobot`;
    a rerun rewrites it from the HDF5 files (staged beside it, then moved into place)."""
    import shutil

    out = Path(cfg.out_dir)
    staging = out / "lerobot.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    write_lerobot_dataset(read_demos([out], split_arms=False), staging, version=cfg.lerobot_version)
    shutil.rmtree(out / "lerobot", ignore_errors=True)
    staging.rename(out / "lerobot")
    return out / "lerobot"


def collect_mock_demos(suite: str, tasks: list[int], trials: int, out_dir: str | Path, steps: int = 60) -> list[Path]:
    """Demo files for `rvq.envs.MockLiberoEnv` (one per task, this module's layout): demo i solves trial i with the
    mock's own expert actions, recording the observation each action was chosen on (`obs/ee_pos`, `ee_ori`,
    `gripper_states`, `objects/<name>`) and the suite's task index in `env_args`. Replaying them succeeds: the
    positive control of the mock suites, and the data of a mock pipeline run."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for task in check_tasks(tasks, suite):
        env = MockLiberoEnv(suite, task)
        path = out / f"task{task:02d}_demo.hdf5"
        with h5py.File(path, "w") as f:
            data = f.create_group("data")
            data.attrs["problem_info"] = json.dumps({"language_instruction": env.instruction})
            data.attrs["env_args"] = json.dumps({"suite": suite, "task_id": task})
            successes = 0
            for trial in range(trials):
                demo = data.create_group(f"demo_{trial}")
                actions = env.expert_actions(trial, steps)
                observations = [env.reset(trial)]
                reached = False
                for action in actions:
                    obs, done = env.step(action)
                    observations.append(obs)
                    reached = reached or done
                observations = observations[:-1]  # the observation each action was chosen on
                successes += reached
                demo.create_dataset("actions", data=actions)
                demo.attrs.update({"num_samples": len(actions), "init_state_index": trial, "success": reached})
                states = np.stack([o["state"] for o in observations])
                for key, columns in STATE_COLUMNS.items():
                    demo.create_dataset(f"obs/{key}", data=states[:, columns])
                for name in observations[0]["objects"]:
                    demo.create_dataset(f"obs/objects/{name}", data=np.stack([o["objects"][name] for o in observations]))
            data.attrs.update({"attempts": trials, "successes": successes, "success_rate": successes / trials,
                               "kept": trials,
                               "starts": "fixed_initial_states", "complete": True})
        paths.append(path)
    return paths
