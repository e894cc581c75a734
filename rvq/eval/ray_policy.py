"""Token policies on Ray: R policy actors shared by every simulator actor (`--executor ray --policy-replicas R`).

A policy actor holds one model copy on the device it asks Ray for (`num_gpus=1` when the policy runs on CUDA, so Ray
places it on a GPU node; simulator actors ask for CPUs only) and batches the simulator actors' requests as the local
policy service does (`rvq.eval.policy_service`): it takes what has arrived, waits at most `service_max_wait_ms` for
more, up to `service_max_batch`, and runs the batch padded to that size, so an episode's actions do not depend on its
batch mates. Simulator actor i asks replica i mod R.

What Ray provides: the actor is an async actor (`max_concurrency` calls at once on one event loop), so concurrent
requests meet in one queue and the batch runs in a thread while the loop keeps taking requests; `max_restarts` /
`max_task_retries` restart an actor that died and retry the calls that were in flight on it (a policy's answer is a
function of its request, so a retried request returns what the lost one would have: no episode lost or duplicated).
Ray Serve's `@serve.batch` does the same batching but needs Ray Serve's HTTP stack (starlette, fastapi, uvicorn)
installed on every node for a queue an async actor gives in a few lines; Serve's replicas and routing are not needed
for R fixed replicas.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from rvq.eval.config import EvalConfig
from rvq.eval.policy_service import RemotePolicy

POLICY_RESTARTS = 3  # a policy actor that dies is restarted this many times, its calls in flight retried


class PolicyActor:
    """One replica: the token policy and its batching queue. Ray runs it as an async actor."""

    def __init__(self, cfg: EvalConfig, factory: Any, max_batch: int, max_wait_s: float, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.policy = factory(cfg)
        self.max_batch, self.max_wait_s = max_batch, max_wait_s
        self.queue: asyncio.Queue | None = None
        self.sizes: Counter[int] = Counter()
        self.waits: list[float] = []

    async def act(self, obs: dict[str, Any], instruction: str) -> tuple[np.ndarray, dict[str, Any]]:
        """One request: the chunk and the decoding step's statistics for this observation."""
        if self.queue is None:  # made on the actor's event loop, with the loop that drains it
            self.queue = asyncio.Queue()
            self._batches = asyncio.get_running_loop().create_task(self._serve())
        answer = asyncio.get_running_loop().create_future()
        await self.queue.put((obs, instruction, answer, time.monotonic()))
        return await answer

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.max_wait_s
            while len(batch) < self.max_batch:
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), max(0.0, deadline - loop.time())))
                except asyncio.TimeoutError:
                    break
            now = time.monotonic()
            self.sizes[len(batch)] += 1
            self.waits += [now - sent for *_, sent in batch]
            try:
                answers = await asyncio.to_thread(self.policy.act_batch, [b[0] for b in batch], [b[1] for b in batch],
                                                  pad_to=self.max_batch)
            except Exception as exc:  # noqa: BLE001 - each asking episode records the error
                for *_, answer, _ in batch:
                    answer.set_exception(exc)
                continue
            for (*_, answer, _), result in zip(batch, answers):
                answer.set_result(result)

    def stats(self) -> dict[str, Any]:
        """Batch sizes and queueing so far (since this replica last started)."""
        import ray

        return {"batches": sum(self.sizes.values()), "batch_sizes": dict(sorted(self.sizes.items())),
                "requests": sum(k * v for k, v in self.sizes.items()), "max_batch": self.max_batch,
                "mean_queue_ms": float(np.mean(self.waits) * 1e3) if self.waits else None,
                "node": ray.get_runtime_context().get_node_id()}


class RayServedPolicy(RemotePolicy):
    """A simulator actor's handle on its policy replica."""

    def __init__(self, mode: str, replica: Any) -> None:
        super().__init__(mode)
        self.replica = replica

    def _ask(self, obs: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        import ray

        return ray.get(self.replica.act.remote(obs, self.instruction))


@dataclass
class RayServedPolicyFactory:
    """A picklable policy factory for one simulator actor: a handle on its replica."""

    mode: str
    replica: Any

    def __call__(self, cfg: EvalConfig) -> RayServedPolicy:
        return RayServedPolicy(self.mode, self.replica)


def replica_resources(cfg: EvalConfig) -> dict[str, float]:
    """What a policy actor asks Ray for: a CPU, and a GPU when the policy runs on CUDA."""
    return {"num_cpus": 1, "num_gpus": 1 if str(cfg.device).startswith("cuda") else 0}


def start_replicas(cfg: EvalConfig, factory: Any, simulators: int) -> list[Any]:
    """The run's policy actors: `cfg.policy_replicas` of them, each asking for one GPU when the policy runs on CUDA
    (else one CPU), batching up to `service_max_batch` (default: the simulators a replica serves). Returns once every
    replica has built its policy."""
    import ray

    replicas = cfg.policy_replicas
    max_batch = cfg.service_max_batch or max(1, -(-simulators // replicas))
    actor = ray.remote(PolicyActor).options(**replica_resources(cfg), max_concurrency=max(64, 4 * max_batch),
                                            max_restarts=POLICY_RESTARTS, max_task_retries=POLICY_RESTARTS)
    handles = [actor.remote(cfg, factory, max_batch, cfg.service_max_wait_ms / 1e3, 1) for _ in range(replicas)]
    ray.get([h.stats.remote() for h in handles])  # built (a factory that fails raises here)
    return handles
