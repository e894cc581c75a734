"""A policy service: one process owns the token policy (one model copy on its device) and serves the simulator
workers, batching their requests (dynamic batching: it takes what has arrived, waiting at most `max_wait_ms` for
more, up to `max_batch`).

Each worker gets a `ServedPolicy` (the `Policy` interface: it keeps its episode's statistics, sends observations,
waits for chunks) on a connection made for it alone: requests go out and answers come back on it, so a worker killed
in the middle of a message breaks only its own connection (a queue shared by all would stay locked by it and starve the
others), and a replacement worker gets a new one. Batches run padded to `max_batch`
(`TokenPolicy.act_batch(pad_to=...)`), so an episode's actions do not depend on which requests shared its batch: a
served run equals an unserved one.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import queue
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from multiprocessing import connection as mp_connection
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from rvq.eval.config import EvalConfig
from rvq.eval.results import EvalStopped
from rvq.policies.token_policy import EpisodeStats

SERVED_POLICIES = ("rsd", "main")  # the expert and replay read the simulator's state: they stay in the worker
BEAT_S = 1.0  # the service tells the parent it is alive at least this often (seconds) while not inside a batch


def receive_or_none(conn: Connection) -> Any:
    """The next message on `conn`, or None when its other end is gone (a worker that exited, or was killed in the
    middle of a message: every writing end closed, so the read ends instead of waiting for the rest)."""
    try:
        return conn.recv()
    except (EOFError, OSError, pickle.UnpicklingError):
        return None


def _gather(links: Connection, workers: list[Connection], max_batch: int,
            max_wait_s: float) -> tuple[list[tuple[Connection, dict[str, Any]]], bool]:
    """One batch of requests: what has arrived, waiting up to `BEAT_S` for the first and `max_wait_s` after it, up
    to `max_batch` (a worker has one request in flight at most). New workers' connections arrive on `links`;
    returns (batch, stop) where stop: the parent asked the service to end."""
    batch: list[tuple[Connection, dict[str, Any]]] = []
    deadline = None
    while len(batch) < max_batch:
        wait_s = BEAT_S if deadline is None else max(0.0, deadline - time.monotonic())
        ready = mp_connection.wait([links, *workers], timeout=wait_s)
        if not ready:
            break
        for conn in ready:
            if conn is links:
                link = receive_or_none(links)
                if link is None:
                    return batch, True
                workers.append(link)
            elif len(batch) < max_batch:
                request = receive_or_none(conn)
                if request is None:  # its worker is gone
                    workers.remove(conn)
                    conn.close()
                else:
                    batch.append((conn, request))
        if batch and deadline is None:
            deadline = time.monotonic() + max_wait_s
    return batch, False


def _serve(cfg: EvalConfig, factory, links: Connection, control: "mp.Queue", max_batch: int,
           max_wait_s: float) -> None:
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
    workers: list[Connection] = []
    stop, beat = False, time.monotonic()
    while not stop:
        if time.monotonic() - beat >= BEAT_S:  # idle or serving: alive and not stuck in a batch
            control.put(("beat", None))
            beat = time.monotonic()
        batch, stop = _gather(links, workers, max_batch, max_wait_s)
        if not batch:
            continue
        sizes[len(batch)] += 1
        now = time.monotonic()
        waits += [now - request["sent"] for _, request in batch]
        try:
            answers = policy.act_batch([r["obs"] for _, r in batch], [r["instruction"] for _, r in batch],
                                       pad_to=max_batch)
            replies = [(answer, None) for answer in answers]
        except Exception:  # noqa: BLE001 - each asking episode records the error
            replies = [(None, traceback.format_exc())] * len(batch)
        for (conn, _), reply in zip(batch, replies):
            try:
                conn.send(reply)
            except OSError:  # its worker died while waiting
                if conn in workers:
                    workers.remove(conn)
                conn.close()
    control.put(("stats", {"batches": sum(sizes.values()), "batch_sizes": dict(sorted(sizes.items())),
                           "requests": sum(k * v for k, v in sizes.items()), "max_batch": max_batch,
                           "mean_queue_ms": float(np.mean(waits) * 1e3) if waits else None}))


class RemotePolicy:
    """The `Policy` interface for a policy that runs elsewhere: keeps the episode's instruction and statistics;
    `_ask(obs)` returns the chunk and the decoding step's statistics (the local service's queues, a Ray actor)."""

    def __init__(self, mode: str) -> None:
        self.name, self.mode = mode, mode
        self.instruction = ""
        self.stats = EpisodeStats(mode)

    def _ask(self, obs: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        raise NotImplementedError

    def reset(self, instruction: str, task_id: int, trial: int) -> None:
        self.instruction, self.stats = instruction, EpisodeStats(self.mode)

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        chunk, step = self._ask(obs)
        self.stats.add(step)
        return chunk

    def episode_stats(self) -> dict[str, Any]:
        return self.stats.to_dict()


class ServedPolicy(RemotePolicy):
    """A worker's handle on the local service: a connection of its own, requests out and answers back."""

    def __init__(self, mode: str, conn: Connection, timeout_s: float | None):
        super().__init__(mode)
        self.conn, self.timeout_s = conn, timeout_s

    def _ask(self, obs: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        try:
            self.conn.send({"obs": obs, "instruction": self.instruction, "sent": time.monotonic()})
            if not self.conn.poll(self.timeout_s):
                raise RuntimeError(f"no answer from the policy service in {self.timeout_s:g} s")
            answer, error = self.conn.recv()
        except (EOFError, OSError):
            raise RuntimeError("the policy service closed this worker's connection (it is gone)") from None
        if error is not None:
            raise RuntimeError(f"the policy service failed on this request:\n{error}")
        return answer


@dataclass
class ServedPolicyFactory:
    """A picklable policy factory for one worker: its `ServedPolicy` on `conn`, the worker's end of a connection
    made for it alone (so a worker killed in the middle of a message harms no other worker's)."""

    mode: str
    conn: Connection
    timeout_s: float | None

    def __call__(self, cfg: EvalConfig) -> ServedPolicy:
        return ServedPolicy(self.mode, self.conn, self.timeout_s)

    def release(self) -> None:
        """Close the parent's copy of the worker's end once the worker has its own (then the worker's exit closes
        the connection for the service)."""
        self.conn.close()


class PolicyService:
    """The parent's handle: starts the service process, connects each worker to it, stops it, keeps its stats."""

    def __init__(self, cfg: EvalConfig, factory, max_batch: int, max_wait_ms: float,
                 ctx: Any = None) -> None:
        self.cfg = cfg
        self.ctx = ctx or mp.get_context("spawn")
        self.control = self.ctx.Queue()
        links, self.links = self.ctx.Pipe(duplex=False)  # the parent hands the service each worker's connection
        self.stats: dict[str, Any] = {}
        self.process = self.ctx.Process(target=_serve, daemon=True, args=(
            cfg, factory, links, self.control, max_batch, max_wait_ms / 1e3))
        self.process.start()
        links.close()
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

    def connect(self) -> ServedPolicyFactory:
        """A new worker's policy factory, on a connection of its own (the service's end is sent to the service;
        call `release()` on the factory once the worker has started)."""
        service_end, worker_end = self.ctx.Pipe()
        self.links.send(service_end)
        service_end.close()
        return ServedPolicyFactory(self.cfg.policy, worker_end, self.cfg.episode_timeout)

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
            self.links.send(None)
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
        self.control.cancel_join_thread()
        self.links.close()
