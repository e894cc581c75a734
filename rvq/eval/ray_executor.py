"""Episodes on Ray actors (`--executor ray`): each simulator actor is an `EpisodeRunner` (env reused within a task),
on a local Ray instance or an existing cluster (`--ray-address`). Token policies (rsd, main) live in
`--policy-replicas` policy actors that batch every simulator's requests (`rvq.eval.ray_policy`); other policies are
built in each simulator actor. The driver keeps the scheduling and is the only writer of the results file; faults
follow `rvq.eval.scheduler.Scheduler` (a dead simulator actor is replaced and its episode requeued; an episode past
the timeout has its actor killed and is recorded as an error; an actor whose step count stops moving for
`stall_timeout` is killed and its episode requeued; a dead policy actor is restarted by Ray and its requests
retried).

Ray is an optional extra (`pip install 'rvq[ray]'`); this module imports it only when a run asks for it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rvq.eval.config import EvalConfig
from rvq.eval.progress import EvalProgress
from rvq.eval.ray_policy import RayServedPolicyFactory, start_replicas
from rvq.eval.results import EvalStopped
from rvq.eval.runner import Episode, EpisodeRunner, PolicyFactory
from rvq.eval.scheduler import HEARTBEAT_S, POLL_S, Emit, Scheduler, hard_deadline


class _EpisodeActor:
    """A simulator actor. Ray runs it with two threads, so `steps` answers while `run` steps an episode: the
    driver's heartbeat (an actor that stops answering, or answers with the same count, makes no progress)."""

    def __init__(self, cfg: EvalConfig, factory: PolicyFactory, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.runner = EpisodeRunner(cfg, factory)
        self.progress = 0  # env steps taken in all episodes so far

    def ready(self) -> int:
        import os

        return os.getpid()

    def steps(self) -> int:
        return self.progress

    def _count(self, steps: int) -> None:
        self.progress += 1

    def run(self, task: int, trial: int) -> dict[str, Any]:
        return self.runner.run(task, trial, self._count)


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
        actor_class = ray.remote(num_cpus=self.cpus_per_worker, max_restarts=0, max_concurrency=2)(_EpisodeActor)
        simulators = min(self.cfg.workers, len(episodes))
        replicas = []
        if self.cfg.serves_policy:
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

        stall = self.cfg.stall_timeout
        heard: dict[int, tuple[float, int]] = {}  # busy actor → (when its step count last moved, that count)
        asked: dict[Any, int] = {}  # `steps` call in flight → actor
        last_asked: dict[int, float] = {}

        def replace(aid: int) -> None:
            ray.kill(actors.pop(aid), no_restart=True)
            heard.pop(aid, None)
            if sched.pending:
                start()

        def listen(now: float) -> None:
            """Ask each busy actor for its step count (one question at a time); a count that moved is progress."""
            pending = set(asked.values())
            for aid in heard:
                if aid not in pending and aid in actors and now - last_asked.get(aid, 0.0) >= HEARTBEAT_S:
                    asked[actors[aid].steps.remote()] = aid
                    last_asked[aid] = now
            answered, _ = ray.wait(list(asked), num_returns=len(asked), timeout=0)
            for ref in answered:
                aid = asked.pop(ref)
                try:
                    count = ray.get(ref)
                except ray.exceptions.RayError:
                    continue  # a dead actor: its episode's call says so
                if aid in heard and count != heard[aid][1]:
                    heard[aid] = (now, count)

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
                    heard[aid] = (time.monotonic(), -1)
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
                    heard.pop(aid, None)
                    idle.append(aid)
                if stall is not None:
                    listen(now)
                for ref, (aid, episode, started) in list(in_flight.items()):
                    if stall is not None and now - heard[aid][0] > stall:
                        del in_flight[ref]
                        sched.worker_died(episode, f"evaluation actor made no progress for {stall:g} s "
                                          f"(--stall-timeout: stopped or hung) and was killed", None,
                                          now - started, aid)
                        replace(aid)
                    elif (self.cfg.episode_timeout is not None
                          and now - started > hard_deadline(self.cfg.episode_timeout)):
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
