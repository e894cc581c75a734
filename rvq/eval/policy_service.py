"""A policy service: one process owns the token policy (one model copy on its device) and serves the simulator
workers, batching their requests (dynamic batching: it takes what has arrived, waiting at most `max_wait_ms` for
more, up to `max_batch`).

Each worker gets a `ServedPolicy` (the `Policy` interface: it keeps its episode's statistics, sends observations,
waits for chunks) on a channel of its own. Batches run padded to `max_batch` (`TokenPolicy.act_batch(pad_to=...)`),
so an episode's actions do not depend on which requests shared its batch: a served run equals an unserved one.
Requests and answers carry the asking policy's id and a sequence number, so a worker that replaces a dead one on
the same channel never reads an answer meant for its predecessor.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import time
import traceback
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from rvq.eval.config import EvalConfig
from rvq.eval.results import EvalStopped

SERVED_POLICIES = ("rsd", "main")  # the expert and replay read the simulator's state: they stay in the worker
BEAT_S = 1.0  # the service tells the parent it is alive at least this often (seconds) while not inside a batch


def _serve(cfg: EvalConfig, factory, requests: "mp.Queue", channels: list, control: "mp.Queue",
           max_batch: int, max_wait_s: float) -> None:
    try:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, cfg.workers)))
        policy = factory(cfg)
    except Exception:  # noqa: BLE001 - the parent stops the run with this traceback
        control.put(("fatal", traceback.format_exc()))
        return
    control.put(("ready", os.getpid()))
    sizes: Counter[int] = Counter()
    waits: list[float] = []
    stop, beat = False, time.monotonic()
    while not stop:
        if time.monotonic() - beat >= BEAT_S:  # idle or serving: alive and not stuck in a batch
            control.put(("beat", None))
            beat = time.monotonic()
        try:
            first = requests.get(timeout=BEAT_S)
        except queue.Empty:
            continue
        if first is None:
            break
        batch = [first]
        deadline = time.monotonic() + max_wait_s
        while len(batch) < max_batch:
            try:
                item = requests.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                stop = True
                break
            batch.append(item)
        sizes[len(batch)] += 1
        now = time.monotonic()
        waits += [now - item["sent"] for item in batch]
        try:
            answers = policy.act_batch([item["obs"] for item in batch], [item["instruction"] for item in batch],
                                       pad_to=max_batch)
            replies = [(item["id"], item["seq"], answer, None) for item, answer in zip(batch, answers)]
        except Exception:  # noqa: BLE001 - each asking episode records the error
            error = traceback.format_exc()
            replies = [(item["id"], item["seq"], None, error) for item in batch]
        for item, reply in zip(batch, replies):
            channels[item["channel"]].put(reply)
    control.put(("stats", {"batches": sum(sizes.values()), "batch_sizes": dict(sorted(sizes.items())),
                           "requests": sum(k * v for k, v in sizes.items()), "max_batch": max_batch,
                           "mean_queue_ms": float(np.mean(waits) * 1e3) if waits else None}))


class RemotePolicy:
    """The `Policy` interface for a policy that runs elsewhere: keeps the episode's instruction and statistics;
    `_ask(obs)` returns the chunk and the decoding step's statistics (the local service's queues, a Ray actor)."""

    def __init__(self, mode: str) -> None:
        from rvq.policies.token_policy import EpisodeStats

        self.name, self.mode = mode, mode
        self.instruction = ""
        self.stats = EpisodeStats(mode)

    def _ask(self, obs: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        raise NotImplementedError

    def reset(self, instruction: str, task_id: int, trial: int) -> None:
        from rvq.policies.token_policy import EpisodeStats

        self.instruction, self.stats = instruction, EpisodeStats(self.mode)

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        chunk, step = self._ask(obs)
        self.stats.add(step)
        return chunk

    def episode_stats(self) -> dict[str, Any]:
        return self.stats.to_dict()


class ServedPolicy(RemotePolicy):
    """A worker's handle on the local service: requests on the shared queue, answers on its channel."""

    def __init__(self, mode: str, requests: "mp.Queue", answers: "mp.Queue", channel: int, timeout_s: float | None):
        super().__init__(mode)
        self.requests, self.answers, self.channel, self.timeout_s = requests, answers, channel, timeout_s
        self.id, self.seq = uuid.uuid4().hex, 0

    def _ask(self, obs: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        self.seq += 1
        self.requests.put({"id": self.id, "seq": self.seq, "channel": self.channel, "obs": obs,
                           "instruction": self.instruction, "sent": time.monotonic()})
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        while True:
            try:
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                ident, seq, answer, error = self.answers.get(timeout=wait)
            except queue.Empty:
                raise RuntimeError(f"no answer from the policy service in {self.timeout_s:g} s") from None
            if (ident, seq) != (self.id, self.seq):
                continue  # meant for a worker that died on this channel before it was answered
            if error is not None:
                raise RuntimeError(f"the policy service failed on this request:\n{error}")
            return answer


@dataclass
class ServedPolicyFactory:
    """A picklable policy factory for one worker: builds its `ServedPolicy` on channel `channel`."""

    mode: str
    requests: Any
    answers: Any
    channel: int
    timeout_s: float | None

    def __call__(self, cfg: EvalConfig) -> ServedPolicy:
        return ServedPolicy(self.mode, self.requests, self.answers, self.channel, self.timeout_s)


class PolicyService:
    """The parent's handle: starts the service process, hands out channel factories, stops it, keeps its stats."""

    def __init__(self, cfg: EvalConfig, factory, channels: int, max_batch: int, max_wait_ms: float,
                 ctx: Any = None) -> None:
        self.cfg = cfg
        self.ctx = ctx or mp.get_context("spawn")
        self.requests, self.control = self.ctx.Queue(), self.ctx.Queue()
        self.channels = [self.ctx.Queue() for _ in range(channels)]
        self.stats: dict[str, Any] = {}
        self.process = self.ctx.Process(target=_serve, daemon=True, args=(
            cfg, factory, self.requests, self.channels, self.control, max_batch, max_wait_ms / 1e3))
        self.process.start()
        while True:
            try:
                kind, payload = self.control.get(timeout=1.0)
                break
            except queue.Empty:
                if not self.process.is_alive():
                    raise EvalStopped(f"the policy service died while starting (exit code "
                                       f"{self.process.exitcode})") from None
        if kind == "fatal":
            self.process.join(timeout=5)
            raise EvalStopped.from_traceback("the policy service could not start", payload)
        self.last_beat = time.monotonic()

    def factory(self, channel: int) -> ServedPolicyFactory:
        return ServedPolicyFactory(self.cfg.policy, self.requests, self.channels[channel], channel,
                                   self.cfg.episode_timeout)

    def alive(self) -> bool:
        return self.process.is_alive()

    def _read_control(self, wait_s: float = 0.0) -> None:
        """Take the service's messages (beats, its final stats), waiting up to `wait_s` for the first."""
        try:
            while True:
                kind, payload = self.control.get(timeout=wait_s) if wait_s else self.control.get_nowait()
                wait_s = 0.0
                self.last_beat = time.monotonic()
                if kind == "stats":
                    self.stats = payload
        except queue.Empty:
            return

    def silent_for(self) -> float:
        """Seconds since the service last said anything (a beat comes at least every `BEAT_S` outside a batch)."""
        self._read_control()
        return time.monotonic() - self.last_beat

    def close(self) -> dict[str, Any]:
        """Stop the service (killed when it does not stop within 30 s: stopped or hung) and return its stats. Its
        queues are not flushed at exit: a stopped reader would keep this process from ever exiting."""
        if self.process.is_alive() and self.silent_for() < 30:
            self.requests.put(None)
            deadline = time.monotonic() + 30
            while not self.stats and self.process.is_alive() and time.monotonic() < deadline:
                self._read_control(wait_s=0.5)
            self._read_control()
            self.process.join(timeout=10)
        self.kill()
        return self.stats

    def kill(self) -> None:
        """Kill the service if it still runs (SIGKILL also ends a stopped process) and let this process exit
        without flushing the service's queues."""
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=10)
        for q in (self.requests, self.control, *self.channels):
            q.cancel_join_thread()
