"""Run evaluation episodes, append one JSON line per finished episode, resume, parallelize.

- Results go to `out_dir/results.jsonl` (`results-shard{i}-of-{n}.jsonl` for a shard), one line per
  episode, written by one process as episodes finish; an interrupt loses at most the episodes in flight.
- A rerun with the same output skips finished episodes (an errored episode is retried); the run cuts a
  half-written last line of its own file before appending. A folder holding results of other settings is
  refused (`rvq.eval.results.check_resume`), and a second run on the same file is refused (a lock).
- An episode that raises, runs past `episode_timeout` or kills its worker `max_worker_deaths` times is
  recorded with `error` and the run goes on (`rvq.eval.executors`).
- Episodes are scheduled one by one on an executor (`inline`, local `process` workers or `ray` actors); a
  worker keeps its policy and its env between episodes of one task (`EpisodeRunner`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rvq.eval.config import EvalConfig
from rvq.eval.executors import make_executor
from rvq.eval.progress import EvalProgress
from rvq.eval.results import (CONFIG_FILE, RunLock, append_record, check_resume, episode_key, read_results,
                              repair_torn_tail, shard_episodes)
from rvq.eval.runner import Episode, PolicyFactory, build_policy
from rvq.files import write_bytes_atomic


def plan(cfg: EvalConfig, done: set[tuple[str, int, int]]) -> list[Episode]:
    """The (task, trial) episodes of this shard not yet finished, in order. Shards split the flat list round-robin."""
    return [e for e in shard_episodes(cfg.tasks, cfg.trials, *cfg.shard) if (cfg.suite, *e) not in done]


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
        # shards of one run share the folder: written whole, never half
        write_bytes_atomic(config_path, json.dumps({**cfg.to_dict(), "result_settings": settings}, indent=2))
        repair_torn_tail(path)  # this run owns the file: a line cut by a killed run is removed
        done = {episode_key(r) for r in read_results(path) if r.get("error") is None}
        episodes = plan(cfg, done)
        if episodes:
            with EvalProgress(len(episodes), f"eval {cfg.suite} [{cfg.row_name}]", enabled=progress) as bar:
                def emit(record: dict[str, Any], worker: Any = None) -> None:
                    append_record(path, record)
                    bar.episode_done(record, worker)

                make_executor(cfg, factory).run(episodes, emit, bar)
    return path
