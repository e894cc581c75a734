"""Evaluation workers and torch's threads: W worker processes decoding side by side, each letting torch take every
core (torch's default) vs each taking its share (`rvq.eval.runner.share_cores`, what the runner does). Measured
in one run, printed as a ratio. The main head has the study's size (139-d state features, width 256, 2 blocks)."""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import time

import pytest

WORKERS = 2
CALLS = 60


def _decode_loop(share: bool, workers: int, start, results) -> None:
    import torch

    from rvq.eval.runner import share_cores
    from rvq.models import MainConfig, MainModel, TokenSpace
    from rvq.rsd import greedy_decode

    if share:
        share_cores(workers)
    torch.manual_seed(0)
    main = MainModel(MainConfig(139, TokenSpace(), 256, 2, 4, 0.0)).eval()
    features = torch.randn(1, 139)
    with torch.inference_mode():
        greedy_decode(main, features)  # warm-up
        start.wait()
        times = []
        for _ in range(CALLS):
            t0 = time.perf_counter()
            greedy_decode(main, features)
            times.append((time.perf_counter() - t0) * 1e3)
    results.put(statistics.median(times))


def _run(share: bool) -> float:
    ctx = mp.get_context("spawn")
    start, results = ctx.Barrier(WORKERS), ctx.Queue()
    procs = [ctx.Process(target=_decode_loop, args=(share, WORKERS, start, results)) for _ in range(WORKERS)]
    for p in procs:
        p.start()
    medians = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    return statistics.mean(medians)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs at least 2 cores to oversubscribe")
def test_workers_sharing_cores_vs_torch_default(benchmark) -> None:
    rounds = {"default": [], "shared": []}

    def measure() -> None:
        for name, share in (("default", False), ("shared", True)):  # interleaved: same machine state for both
            rounds[name].append(_run(share))

    benchmark.pedantic(measure, rounds=2, iterations=1)
    default, shared = statistics.median(rounds["default"]), statistics.median(rounds["shared"])
    print(f"\n{WORKERS} workers on {os.cpu_count()} cores, median ms per main-only decode: torch default "
          f"{default:.1f}, shared {shared:.1f}; default / shared = {default / shared:.2f}x")
