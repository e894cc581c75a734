"""Run evaluation episodes: one episode in an env with a policy (`run_episode`: chunks executed whole, in part or
temporally ensembled, the episode's record), and a worker's runner that keeps its policy and its env between
episodes of one task (`EpisodeRunner`). `rvq.eval.evaluate.run_eval` plans, resumes and schedules them.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rvq.envs import make_env
from rvq.eval.config import EvalConfig
from rvq.eval.temporal_ensemble import TemporalEnsembler
from rvq.expert import ScriptedExpert
from rvq.expert.roundtrip import TokenizedExpert
from rvq.policies import NoopPolicy, ReplayPolicy, TokenPolicy
from rvq.tokenizer import ActionTokenizer

PolicyFactory = Callable[[EvalConfig], Any]
SCENE_CACHE = "scene_chain_states"  # in the output folder: generator states of each task's scene chain, shared by
# workers (not "scene_states": folders of SCENE_PROTOCOL 1 kept their states there, some drawn from a used env)


def build_policy(cfg: EvalConfig):
    if cfg.policy in ("rsd", "main"):
        return TokenPolicy.from_dir(cfg.checkpoints, mode=cfg.policy, device=cfg.device, exact=cfg.exact,
                                    flip_gripper=cfg.flip_gripper, trust_remote_code=cfg.trust_remote_code,
                                    tau=cfg.tau, max_grid_distance=cfg.max_grid_distance,
                                    image_transform=cfg.image_transform, exit_tolerance=cfg.exit_tolerance,
                                    exit_depth=cfg.exit_depth)
    if cfg.policy == "replay":
        return ReplayPolicy(cfg.demos)
    if cfg.policy == "expert":
        if cfg.roundtrip_tokenizer:
            return TokenizedExpert(ScriptedExpert(cfg.expert_grasp_hold, cfg.expert_phase_end),
                                   ActionTokenizer.from_checkpoint(cfg.roundtrip_tokenizer))
        return ScriptedExpert(cfg.expert_grasp_hold, cfg.expert_phase_end)
    return NoopPolicy()


Episode = tuple[int, int]  # (task, trial)


def _upright(frame: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(frame[::-1, ::-1])


def _write_video(path: Path, frames: list[np.ndarray], success: bool) -> None:
    import imageio.v2 as imageio

    marked = frames[-1].copy()
    color = np.array([0, 200, 0] if success else [220, 0, 0], dtype=np.uint8)
    border = max(2, marked.shape[0] // 32)
    marked[:border], marked[-border:], marked[:, :border], marked[:, -border:] = color, color, color, color
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimwrite(path, [*frames, *[marked] * 10], fps=20, macro_block_size=1)


def episode_record(cfg: EvalConfig, task: int, trial: int, env=None) -> dict[str, Any]:
    """The JSON line of one episode before it runs (`env` None: the env could not be created)."""
    return {"suite": cfg.suite, "task": task, "task_name": getattr(env, "task_name", None),
            "instruction": getattr(env, "instruction", None), "trial": trial, "policy": cfg.policy, "label": cfg.row_name,
            "env": cfg.env, "checkpoint_identity": cfg.identity,
            "shard": f"{cfg.shard[0]}/{cfg.shard[1]}", "worker": os.getpid(), "success": False, "steps": 0,
            "error": None, "video": None, "seconds": 0.0, "finished_at": None,
            "timing": {"env_create_s": 0.0, "reset_s": 0.0, "policy_s": 0.0, "env_step_s": 0.0}}


class EpisodeTimeout(RuntimeError):
    """The episode ran past `EvalConfig.episode_timeout` (checked between env steps)."""


def next_actions(chunk: np.ndarray, execute_steps: int | None,
                 ensembler: TemporalEnsembler | None) -> list[np.ndarray]:
    """The actions `[A]` to execute from a chunk `[C, A]` the policy just predicted: with an ensembler, this step's
    ensembled action (the policy acts again on the next step); else the chunk's first `execute_steps` (all when None;
    receding horizon: the rest is dropped and the policy acts again)."""
    if execute_steps is not None and execute_steps > len(chunk):
        raise ValueError(f"execute_steps {execute_steps} exceeds the policy's chunk of {len(chunk)} actions")
    if ensembler is not None:
        return [ensembler.step(chunk)]
    return list(chunk[:execute_steps])


def run_episode(env, policy, cfg: EvalConfig, task: int, trial: int, video: Path | None,
                on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """One episode: reset to the trial's initial state, act in open-loop chunks (their first `cfg.execute_steps`
    actions, all by default), or on every step with the chunks ensembled (`cfg.temporal_ensemble`), until success
    or max steps.
    `on_step(steps)` is called after every env step (progress)."""
    record = episode_record(cfg, task, trial, env)
    timing = record["timing"]
    start = time.perf_counter()
    frames: list[np.ndarray] = []
    try:
        obs = env.reset(trial)
        timing["reset_s"] = time.perf_counter() - start
        if hasattr(policy, "attach_env"):
            policy.attach_env(env)  # privileged state (the scripted expert)
        policy.reset(env.instruction, task, trial)
        max_steps = cfg.max_steps or env.max_steps
        queue: list[np.ndarray] = []
        ensembler = None if cfg.temporal_ensemble is None else TemporalEnsembler(cfg.temporal_ensemble)
        success = False
        while record["steps"] < max_steps:
            if video is not None and "agentview" in obs:
                frames.append(_upright(obs["agentview"]))
            if not queue:
                tick = time.perf_counter()
                queue = next_actions(policy.act(obs), cfg.execute_steps, ensembler)
                timing["policy_s"] += time.perf_counter() - tick
            tick = time.perf_counter()
            obs, success = env.step(queue.pop(0))
            timing["env_step_s"] += time.perf_counter() - tick
            record["steps"] += 1
            if on_step is not None:
                on_step(record["steps"])
            if success:
                break
            if cfg.episode_timeout is not None and time.perf_counter() - start > cfg.episode_timeout:
                raise EpisodeTimeout(f"episode ran past the {cfg.episode_timeout:g} s timeout "
                                     f"(--episode-timeout) after {record['steps']} steps")
        record["success"] = bool(success)
        record["policy_stats"] = policy.episode_stats()
        if video is not None and frames:
            frames.append(_upright(obs["agentview"]))
            name = video.with_name(f"{video.stem}--{'success' if success else 'failure'}.mp4")
            _write_video(name, frames, success)
            record["video"] = str(name)
    except Exception:  # noqa: BLE001 - recorded, the run continues
        record["error"] = traceback.format_exc()
    record["seconds"] = time.perf_counter() - start
    record["finished_at"] = time.time()
    return record


class EpisodeRunner:
    """What a worker holds: one policy (built once) and the env of the task it ran last (reused between
    episodes of that task). `run(task, trial)` never raises: failures become the record's `error`."""

    def __init__(self, cfg: EvalConfig, factory: PolicyFactory) -> None:
        self.cfg = cfg
        self.policy = factory(cfg)  # identities are checked here, before any simulator starts
        self.env, self.env_task = None, None
        self.env_errors: dict[int, str] = {}  # task → why its env could not be created (not retried)

    def _env_for(self, task: int):
        if self.env_task != task:
            self.close()
            extra = {"step_latency_s": self.cfg.mock_step_latency_ms / 1e3} if self.cfg.env == "mock" else {}
            self.env = make_env(self.cfg.env, self.cfg.suite, task, render=self.cfg.render,
                                scene_cache=Path(self.cfg.out_dir) / SCENE_CACHE, **extra)
            self.env_task = task
        return self.env

    def run(self, task: int, trial: int, on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
        if task in self.env_errors:
            return {**episode_record(self.cfg, task, trial), "error": self.env_errors[task]}
        tick = time.perf_counter()
        try:
            env = self._env_for(task)
        except Exception:  # noqa: BLE001 - every episode of the task is recorded as an error
            self.env_errors[task] = traceback.format_exc()
            return {**episode_record(self.cfg, task, trial), "error": self.env_errors[task]}
        created_s = time.perf_counter() - tick  # ~0 when the env of this task was reused
        video = None
        if trial < self.cfg.videos:
            video = Path(self.cfg.out_dir) / "videos" / f"{self.cfg.suite}--task{task}--trial{trial}"
        record = run_episode(env, self.policy, self.cfg, task, trial, video, on_step)
        record["timing"]["env_create_s"] = created_s
        return record

    def close(self) -> None:
        env, self.env, self.env_task = self.env, None, None
        if env is not None:
            env.close()


def share_cores(workers: int) -> None:
    """Give each of `workers` processes its share of the cores for torch's intra-op threads. By default every
    process takes all cores; two workers on two cores then spin against each other (measured: a 14 ms main-only
    decode took ~700 ms)."""
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
