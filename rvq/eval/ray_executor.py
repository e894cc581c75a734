"""Episodes on Ray actors (`--executor ray`): each simulator actor is an `EpisodeRunner` (env reused within a task),
on a local Ray instance or an existing cluster (`--ray-address`). Token policies (rsd, main) live in
`--policy-replicas` policy actors that batch every simulator's requests (`rvq.eval.ray_policy`); other policies are
built in each simulator actor. The driver keeps the scheduling and is the only writer of the results file; faults
follow `rvq.eval.executors.Scheduler` (a dead simulator actor is replaced and its episode requeued; an episode past
the timeout has its actor killed and is recorded as an error; a dead policy actor is restarted by Ray and its
requests retried).

Ray is an optional extra (`pip install 'rvq[ray]'`); this module imports it only when a run asks for it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rvq.eval.config import EvalConfig
from rvq.eval.executors import POLL_S, Emit, Scheduler, hard_deadline
from rvq.eval.progress import EvalProgress
from rvq.eval.results import EvalStopped
from rvq.eval.runner import Episode, EpisodeRunner, PolicyFactory


class _EpisodeActor:
    def __init__(self, cfg: EvalConfig, factory: PolicyFactory, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.runner = EpisodeRunner(cfg, factory)

    def ready(self) -> int:
        import os

        return os.getpid()

    def run(self, task: int, trial: int) -> dict[str, Any]:
        return self.runner.run(task, trial)


class RayExecutor:
    def __init__(self, cfg: EvalConfig, factory: PolicyFactory, cpus_per_worker: int = 1) -> None:
        self.cfg, self.factory, self.cpus_per_worker = cfg, factory, cpus_per_worker
        self.service_stats: dict[str, Any] = {}  # per policy replica: batch sizes and queueing

    def run(self, episodes: list[Episode], emit: Emit, progress: EvalProgress) -> None:
        import ray

        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.cfg.ray_address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        resources = ray.cluster_resources()
        cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
        replicas_wanted = self.cfg.policy_replicas if self.cfg.serves_policy else 0  # one CPU each, and a GPU on CUDA
        wanted = min(self.cfg.workers, len(episodes)) * self.cpus_per_worker + replicas_wanted
        problem = None
        if wanted > cpus:
            problem = (f"{wanted} CPUs asked for ({self.cfg.workers} workers x {self.cpus_per_worker}"
                       f"{f' + {replicas_wanted} policy actors' if replicas_wanted else ''}), the Ray cluster has "
                       f"{cpus:g}: use at most {int((cpus - replicas_wanted) // self.cpus_per_worker)} workers")
        elif replicas_wanted and str(self.cfg.device).startswith("cuda") and replicas_wanted > gpus:
            problem = (f"{replicas_wanted} policy actors on CUDA ask for a GPU each, the Ray cluster has {gpus:g} "
                       f"(--policy-replicas)")
        if problem:
            if started_here:
                ray.shutdown()
            raise ValueError(problem)
        actor_class = ray.remote(num_cpus=self.cpus_per_worker, max_restarts=0)(_EpisodeActor)
        simulators = min(self.cfg.workers, len(episodes))
        replicas = []
        if self.cfg.serves_policy:
            from rvq.eval.ray_policy import RayServedPolicyFactory, start_replicas

            try:
                replicas = start_replicas(self.cfg, self.factory, simulators)
            except ray.exceptions.RayActorError as exc:
                if started_here:
                    ray.shutdown()
                raise EvalStopped.from_traceback("policy actor could not start", str(exc)) from exc
        sched = Scheduler(self.cfg, episodes, emit)
        actors: dict[int, Any] = {}
        idle: list[int] = []
        in_flight: dict[Any, tuple[int, Episode, float]] = {}  # result ref → (actor, episode, started)
        last_task: dict[int, int] = {}
        counter = iter(range(1 << 30))

        def start() -> None:
            aid = next(counter)
            factory = (RayServedPolicyFactory(self.cfg.policy, replicas[aid % len(replicas)]) if replicas
                       else self.factory)
            handle = actor_class.remote(self.cfg, factory, self.cpus_per_worker)
            try:
                ray.get(handle.ready.remote())
            except ray.exceptions.RayActorError as exc:
                raise EvalStopped.from_traceback("evaluation actor could not start", str(exc)) from exc
            actors[aid] = handle
            idle.append(aid)

        def replace(aid: int) -> None:
            ray.kill(actors.pop(aid), no_restart=True)
            if sched.pending:
                start()

        try:
            for _ in range(simulators):
                start()
            while sched.pending or in_flight:
                while idle and sched.pending:
                    aid = idle.pop()
                    others = [t for a, t in last_task.items() if a != aid and a in actors]
                    episode = sched.take(last_task.get(aid), others)
                    last_task[aid] = episode[0]
                    in_flight[actors[aid].run.remote(*episode)] = (aid, episode, time.monotonic())
                done, _ = ray.wait(list(in_flight), num_returns=1, timeout=POLL_S)
                now = time.monotonic()
                for ref in done:
                    aid, episode, started = in_flight.pop(ref)
                    try:
                        record = ray.get(ref)
                    except ray.exceptions.RayActorError as exc:
                        sched.worker_died(episode, f"evaluation actor died ({type(exc).__name__})", None,
                                          now - started, aid)
                        replace(aid)
                        continue
                    sched.finish(episode, record, aid)
                    idle.append(aid)
                if self.cfg.episode_timeout is None:
                    continue
                for ref, (aid, episode, started) in list(in_flight.items()):
                    if now - started > hard_deadline(self.cfg.episode_timeout):
                        del in_flight[ref]
                        sched.timed_out(episode, None, now - started, aid)
                        replace(aid)
        finally:
            for handle in actors.values():
                ray.kill(handle, no_restart=True)
            if replicas:
                try:
                    self.service_stats = {"replicas": ray.get([r.stats.remote() for r in replicas], timeout=30)}
                except (ray.exceptions.RayError, TimeoutError) as exc:
                    self.service_stats = {"replicas": None, "error": f"{type(exc).__name__}: {exc}"}
                stats_path = Path(self.cfg.out_dir) / f"{Path(self.cfg.results_name).stem}.policy_service.json"
                stats_path.write_text(json.dumps(self.service_stats, indent=2))
                for handle in replicas:
                    ray.kill(handle, no_restart=True)
            if started_here:
                ray.shutdown()
