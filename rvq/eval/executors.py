"""Where evaluation episodes run: one interface, three executors.

- `inline`: this process, one episode after another (`--workers 1`).
- `process`: local spawn processes, each an `EpisodeRunner` (token policies: one `PolicyService` process holds the
  model and batches the workers' requests; `policy_service`) (policy built once, env reused within a task); the
  parent hands out single episodes, preferring the task a worker's env already holds, so episodes of one task
  run on many workers. A worker that dies (segfault, OOM kill, `kill -9`) is detected, replaced, and its episode
  requeued; an episode that has killed `max_worker_deaths` workers is recorded as an error. An episode past
  `episode_timeout` is stopped (its worker killed and replaced when it does not stop by itself) and recorded as
  an error. Workers report their steps (a heartbeat at least every `HEARTBEAT_S` while stepping); one holding an
  episode that reports nothing for `stall_timeout` (stopped, deadlocked) is killed and its episode requeued, as
  for a death. The policy service beats too; a service silent for `stall_timeout` stops the run (one line).
- `ray`: the same on Ray actors (`rvq.eval.ray_executor`, the optional `ray` extra), on a local instance or an
  existing cluster (`--ray-address`).

The parent is the only writer of the results file: executors hand every finished record to `emit`, once.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import multiprocessing.connection as mp_connection
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rvq.eval.config import EvalConfig
from rvq.eval.policy_service import PolicyService, receive_or_none
from rvq.eval.progress import EvalProgress
from rvq.eval.ray_executor import RayExecutor
from rvq.eval.results import EvalStopped
from rvq.eval.runner import Episode, EpisodeRunner, PolicyFactory, share_cores
from rvq.eval.scheduler import HEARTBEAT_S, POLL_S, Emit, Scheduler, hard_deadline

STEP_EVERY = 10  # a worker reports its episode's steps every this many env steps (and every HEARTBEAT_S)
MAX_START_FAILURES = 3  # workers that die before they are ready: the run stops instead of restarting forever


class Executor(Protocol):
    def run(self, episodes: list[Episode], emit: Emit, progress: EvalProgress) -> None:
        """Run every episode and `emit` its record exactly once."""


def make_executor(cfg: EvalConfig, factory: PolicyFactory) -> Executor:
    kind = cfg.executor_kind
    if kind == "inline":
        return InlineExecutor(cfg, factory)
    if kind == "process":
        return ProcessExecutor(cfg, factory)

    return RayExecutor(cfg, factory)


class InlineExecutor:
    """Episodes in this process. The timeout is checked between env steps only (a hung simulator call cannot be
    interrupted in-process: use worker processes for that)."""

    def __init__(self, cfg: EvalConfig, factory: PolicyFactory) -> None:
        self.cfg, self.factory = cfg, factory

    def run(self, episodes: list[Episode], emit: Emit, progress: EvalProgress) -> None:
        runner = EpisodeRunner(self.cfg, self.factory)
        try:
            for task, trial in episodes:
                emit(runner.run(task, trial, on_step=lambda steps: progress.step(0, steps)), 0)
        finally:
            runner.close()


def _process_worker(wid: int, cfg: EvalConfig, factory: PolicyFactory, inbox: "mp.Queue", outbox: Any,
                    parent: int) -> None:
    """A spawn worker: build the runner, say ready, run the episodes the parent sends until it sends None. `outbox`
    is this worker's own pipe to the parent: a worker killed in the middle of a message can garble only its own pipe
    (a queue shared by all workers stays locked by a writer killed mid-write, and every other worker's messages with
    it)."""
    try:
        share_cores(cfg.workers)
        runner = EpisodeRunner(cfg, factory)
    except Exception:  # noqa: BLE001 - the parent stops the run with this traceback
        outbox.send(("fatal", wid, traceback.format_exc()))
        return
    outbox.send(("ready", wid, os.getpid()))

    last = time.monotonic()

    def on_step(steps: int) -> None:
        nonlocal last
        if steps % STEP_EVERY == 0 or time.monotonic() - last >= HEARTBEAT_S:
            outbox.send(("step", wid, steps))
            last = time.monotonic()

    try:
        for task, trial in iter(inbox.get, None):
            outbox.send(("done", wid, runner.run(task, trial, on_step)))
            if os.getppid() != parent:  # the run was killed: stop after this episode instead of running on
                raise SystemExit(f"eval worker {os.getpid()}: parent {parent} is gone")
    finally:
        runner.close()


@dataclass
class _Slot:
    process: Any
    inbox: Any
    messages: Any  # the parent's end of the worker's pipe
    pid: int | None = None
    ready: bool = False
    episode: Episode | None = None
    started: float = 0.0
    seen: float = 0.0  # when it last said anything (ready, a step, a record)
    task: int | None = None


class ProcessExecutor:
    def __init__(self, cfg: EvalConfig, factory: PolicyFactory) -> None:
        self.cfg, self.factory = cfg, factory
        self.ctx = mp.get_context("spawn")
        self.service_stats: dict[str, Any] = {}  # batch sizes and queueing of the policy service, when one ran

    def run(self, episodes: list[Episode], emit: Emit, progress: EvalProgress) -> None:
        sched = Scheduler(self.cfg, episodes, emit)
        slots: dict[int, _Slot] = {}
        counter = iter(range(1 << 30))
        start_failures = 0
        workers = min(self.cfg.workers, len(episodes))
        stall = self.cfg.stall_timeout
        service = None
        if self.cfg.serves_policy:
            service = PolicyService(self.cfg, self.factory, self.cfg.service_max_batch or workers,
                                    self.cfg.service_max_wait_ms, self.ctx)

        def start() -> None:
            wid, inbox = next(counter), self.ctx.Queue()
            receive, send = self.ctx.Pipe(duplex=False)
            factory = service.connect() if service is not None else self.factory
            process = self.ctx.Process(target=_process_worker, daemon=True,
                                       args=(wid, self.cfg, factory, inbox, send, os.getpid()))
            process.start()
            send.close()  # the worker holds the only writing end: its exit reads as the pipe's end
            if service is not None:
                factory.release()  # likewise its end of the connection to the service
            slots[wid] = _Slot(process, inbox, receive)

        def handle(message: tuple) -> None:
            kind, wid, payload = message
            slot = slots.get(wid)
            if kind == "fatal":
                raise EvalStopped.from_traceback("evaluation worker could not start", payload)
            if slot is None:
                return  # from a worker already given up on (killed at its timeout)
            slot.seen = time.monotonic()
            if kind == "ready":
                slot.ready, slot.pid = True, payload
            elif kind == "step":
                progress.step(wid, payload)
            elif kind == "done" and slot.episode is not None:
                sched.finish(slot.episode, payload, wid)
                slot.episode = None

        def drain(wait_s: float) -> None:
            """Wait up to `wait_s` for a message, then take whatever else is already there and return at once (a
            freed worker gets its next episode without waiting out the poll interval). A pipe whose worker is gone
            (or that a killed worker left mid-message) is closed; the process check then handles the worker."""
            while True:
                pipes = {s.messages: s for s in slots.values() if not s.messages.closed}
                ready = mp_connection.wait(list(pipes), timeout=wait_s) if pipes else []
                if not ready:
                    return
                for pipe in ready:
                    message = receive_or_none(pipe)
                    if message is None:
                        pipe.close()
                        continue
                    handle(message)
                wait_s = 0.0

        def retire(wid: int) -> None:
            slot = slots.pop(wid)
            slot.messages.close()
            if slot.process.is_alive():
                slot.process.kill()
            slot.process.join(timeout=5)
            progress.in_flight.pop(wid, None)

        def kill(slot: _Slot) -> None:
            slot.process.kill()
            slot.process.join(timeout=5)

        try:
            for _ in range(workers):
                start()
            while sched.pending or any(s.episode is not None for s in slots.values()):
                if service is not None and not service.alive():
                    raise EvalStopped(f"the policy service died (exit code {service.process.exitcode}); the "
                                      f"finished episodes are kept, rerun to resume")
                if service is not None and stall is not None and service.silent_for() > stall:
                    service.kill()
                    raise EvalStopped(f"the policy service (pid {service.process.pid}) made no progress for "
                                      f"{stall:g} s (--stall-timeout: stopped or hung); it was killed, the finished "
                                      f"episodes are kept, rerun to resume")
                for wid, slot in slots.items():
                    if slot.ready and slot.episode is None and sched.pending:
                        others = [o.task for o in slots.values() if o is not slot and o.task is not None]
                        slot.episode = sched.take(slot.task, others)
                        slot.task, slot.started = slot.episode[0], time.monotonic()
                        slot.seen = slot.started
                        slot.inbox.put(slot.episode)
                drain(POLL_S)
                now = time.monotonic()
                for wid, slot in list(slots.items()):
                    if not slot.process.is_alive():
                        drain(0.5)  # a record it sent just before exiting is still in the pipe
                        if slot.episode is not None:
                            why = f"evaluation worker {slot.pid} died (exit code {slot.process.exitcode})"
                            sched.worker_died(slot.episode, why, slot.pid, now - slot.started, wid)
                        elif not slot.ready:
                            start_failures += 1
                            if start_failures >= MAX_START_FAILURES:
                                raise EvalStopped(f"{start_failures} evaluation workers died before they were "
                                                  f"ready (last exit code {slot.process.exitcode})")
                        retire(wid)
                        if sched.pending:
                            start()
                    elif (slot.episode is not None and stall is not None and now - slot.seen > stall
                          and (service is None or service.silent_for() <= stall)):  # else the service is stalled
                        kill(slot)
                        drain(0.1)
                        if slot.episode is not None:
                            why = (f"evaluation worker {slot.pid} made no progress for {stall:g} s (--stall-timeout: "
                                   f"stopped or hung) and was killed")
                            sched.worker_died(slot.episode, why, slot.pid, now - slot.started, wid)
                        retire(wid)
                        if sched.pending:
                            start()
                    elif (slot.episode is not None and self.cfg.episode_timeout is not None
                          and now - slot.started > hard_deadline(self.cfg.episode_timeout)):
                        kill(slot)
                        drain(0.1)  # it may have finished just now
                        if slot.episode is not None:
                            sched.timed_out(slot.episode, slot.pid, now - slot.started, wid)
                        retire(wid)
                        if sched.pending:
                            start()
        finally:
            for slot in slots.values():
                slot.inbox.put(None)
            # workers get 10 s in all to finish; none when the service they wait on is gone
            deadline = time.monotonic() + (10 if service is None or service.alive() else 0)
            for wid in list(slots):
                slots[wid].process.join(timeout=max(0.0, deadline - time.monotonic()))
                retire(wid)
            if service is not None:
                self.service_stats = service.close()
                stats_path = Path(self.cfg.out_dir) / f"{Path(self.cfg.results_name).stem}.policy_service.json"
                stats_path.write_text(json.dumps(self.service_stats, indent=2))
