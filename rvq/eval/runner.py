"""Run evaluation episodes, append one JSON line per finished episode, resume, parallelize.

- Results go to `out_dir/results.jsonl` (`results-shard{i}-of-{n}.jsonl` for a shard), one line per
  episode, written by one process as episodes finish; an interrupt loses at most the episodes in flight.
- A rerun with the same output skips finished episodes (a crashed episode is retried); the run cuts a
  half-written last line of its own file before appending. A folder holding results of other settings is
  refused (`rvq.eval.results.check_resume`), and a second run on the same file is refused (a lock).
- An episode that raises is recorded with `error` (the traceback) and the run goes on.
- `workers > 1`: processes take whole tasks (one env per task) from a queue. Each process builds its
  policy (checking checkpoint identities) before it creates any env.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rvq.envs import make_env
from rvq.eval.config import EvalConfig
from rvq.eval.results import (CONFIG_FILE, RunLock, append_record, check_resume, episode_key, read_results,
                              repair_torn_tail)

PolicyFactory = Callable[[EvalConfig], Any]


def build_policy(cfg: EvalConfig):
    from rvq.policies import NoopPolicy, ReplayPolicy, TokenPolicy

    if cfg.policy in ("rsd", "main"):
        return TokenPolicy.from_dir(cfg.checkpoints, mode=cfg.policy, device=cfg.device, exact=cfg.exact,
                                    flip_gripper=cfg.flip_gripper, trust_remote_code=cfg.trust_remote_code,
                                    tau=cfg.tau, max_grid_distance=cfg.max_grid_distance)
    if cfg.policy == "replay":
        return ReplayPolicy(cfg.demos)
    if cfg.policy == "expert":
        from rvq.expert import ScriptedExpert

        if cfg.roundtrip_tokenizer:
            from rvq.expert.roundtrip import TokenizedExpert
            from rvq.tokenizer import ActionTokenizer

            return TokenizedExpert(ScriptedExpert(), ActionTokenizer.from_checkpoint(cfg.roundtrip_tokenizer))
        return ScriptedExpert()
    return NoopPolicy()


def plan(cfg: EvalConfig, done: set[tuple[str, int, int]]) -> list[tuple[int, list[int]]]:
    """(task, trials) groups of this shard not yet finished. Shards split the flat episode list round-robin."""
    index, count = cfg.shard
    episodes = [(task, trial) for task in cfg.tasks for trial in range(cfg.trials)]
    mine = [e for i, e in enumerate(episodes) if i % count == index and (cfg.suite, *e) not in done]
    groups: dict[int, list[int]] = {}
    for task, trial in mine:
        groups.setdefault(task, []).append(trial)
    return sorted(groups.items())


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
            "error": None, "video": None, "seconds": 0.0}


def run_episode(env, policy, cfg: EvalConfig, task: int, trial: int, video: Path | None) -> dict[str, Any]:
    """One episode: reset to the trial's initial state, act in open-loop chunks until success or max steps."""
    record = episode_record(cfg, task, trial, env)
    start = time.perf_counter()
    frames: list[np.ndarray] = []
    try:
        obs = env.reset(trial)
        if hasattr(policy, "attach_env"):
            policy.attach_env(env)  # privileged state (the scripted expert)
        policy.reset(env.instruction, task, trial)
        max_steps = cfg.max_steps or env.max_steps
        queue: list[np.ndarray] = []
        success = False
        while record["steps"] < max_steps:
            if video is not None and "agentview" in obs:
                frames.append(_upright(obs["agentview"]))
            if not queue:
                queue = list(policy.act(obs))
            obs, success = env.step(queue.pop(0))
            record["steps"] += 1
            if success:
                break
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
    return record


def _run_groups(cfg: EvalConfig, groups, emit: Callable[[dict[str, Any]], None], policy) -> None:
    for task, trials in groups:
        try:
            env = make_env(cfg.env, cfg.suite, task, render=cfg.render)
        except Exception:  # noqa: BLE001 - every episode of the task is recorded as an error
            error = traceback.format_exc()
            for trial in trials:
                emit({**episode_record(cfg, task, trial), "error": error})
            continue
        try:
            for trial in trials:
                video = None
                if trial < cfg.videos:
                    video = Path(cfg.out_dir) / "videos" / f"{cfg.suite}--task{task}--trial{trial}"
                emit(run_episode(env, policy, cfg, task, trial, video))
        finally:
            env.close()


def _share_cores(workers: int) -> None:
    """Give each of `workers` processes its share of the cores for torch's intra-op threads. By default every
    process takes all cores; two workers on two cores then spin against each other (measured: a 14 ms main-only
    decode took ~700 ms)."""
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def _worker(cfg: EvalConfig, tasks: "mp.Queue", results: "mp.Queue", factory: PolicyFactory, parent: int) -> None:
    def put(record: dict[str, Any]) -> None:
        results.put(record)
        if os.getppid() != parent:  # the run was killed: stop after this episode instead of running on
            raise SystemExit(f"eval worker {os.getpid()}: parent {parent} is gone")

    try:
        _share_cores(cfg.workers)
        policy = factory(cfg)  # identities checked before this process starts any simulator
        for group in iter(tasks.get, None):
            _run_groups(cfg, [group], put, policy)
    except Exception:  # noqa: BLE001 - reported to the parent
        results.put({"worker_error": traceback.format_exc()})
    finally:
        results.put({"worker_done": os.getpid()})


def run_eval(cfg: EvalConfig, factory: PolicyFactory = build_policy, progress: bool = True) -> Path:
    """Run (or resume) the episodes of `cfg`; returns the results file.

    The results file is locked for the run (a second run on it is refused), and a folder holding results made
    with other result-changing settings (`EvalConfig.result_settings`) is refused rather than mixed."""
    cfg.validate()
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / cfg.results_name
    with RunLock(path):
        settings = cfg.result_settings()
        check_resume(out, settings)
        cfg.identity = settings["policy_identity"]
        config_path = out / CONFIG_FILE
        tmp = config_path.with_name(f"{CONFIG_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**cfg.to_dict(), "result_settings": settings}, indent=2))
        tmp.replace(config_path)  # shards of one run share the folder: written whole, never half
        repair_torn_tail(path)  # this run owns the file: a line cut by a killed run is removed
        done = {episode_key(r) for r in read_results(path) if r.get("error") is None}
        _run_planned(cfg, plan(cfg, done), path, factory, progress)
    return path


def _run_planned(cfg: EvalConfig, groups, path: Path, factory: PolicyFactory, progress: bool) -> None:
    total = sum(len(t) for _, t in groups)
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=f"eval {cfg.suite} [{cfg.row_name}]", disable=not progress)

    def emit(record: dict[str, Any]) -> None:
        append_record(path, record)
        bar.update(1)
        bar.set_postfix(success=record["success"])

    if not groups:
        bar.close()
        return
    if cfg.workers == 1:
        _run_groups(cfg, groups, emit, factory(cfg))  # the policy is built before any simulator starts
    else:
        ctx = mp.get_context("spawn")
        tasks, results = ctx.Queue(), ctx.Queue()
        for group in groups:
            tasks.put(group)
        workers = [ctx.Process(target=_worker, args=(cfg, tasks, results, factory, os.getpid()), daemon=True)
                   for _ in range(min(cfg.workers, len(groups)))]
        for _ in workers:
            tasks.put(None)
        for w in workers:
            w.start()
        finished, errors = 0, []
        while finished < len(workers):
            message = results.get()
            if "worker_done" in message:
                finished += 1
            elif "worker_error" in message:
                errors.append(message["worker_error"])
            else:
                emit(message)
        for w in workers:
            w.join()
        if errors:
            bar.close()
            raise RuntimeError("evaluation worker failed before finishing its tasks:\n" + errors[0])
    bar.close()
