"""Ray evaluation with policy actors (issue 50): episodes per minute against simulator actors with one latency-bound
policy replica, and against replicas at 16 simulators, side by side in one run, as ratios to the ideal.

The policy stands in for a GPU (`mocks.fault_policies.LatencyPolicyFactory`: `FIXED_MS` per batch plus
`PER_SAMPLE_MS` per request); the mock env sleeps `STEP_MS` per step. The ideal, set by the policy's batch
throughput: every simulator in lockstep, each chunk costing 8 steps plus one batch of the simulators its replica
serves, so an episode takes chunks x (8 STEP_MS + FIXED_MS + PER_SAMPLE_MS x S / R) + its settling steps.
"Steady" counts each actor's episodes over its own busy span (start-up excluded), as benchmarks/test_eval_scaling.py.
On a 2-core machine the actors are logical CPUs (`num_cpus` 40): they mostly sleep, but 16 Python processes still
share two cores, which is what the ratios at 16 measure beside the policy.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mocks.fault_policies import LatencyPolicyFactory
from rvq.envs.suites import NUM_WAIT_STEPS
from rvq.eval import EvalConfig, run_eval
from rvq.eval.results import read_results

ray = pytest.importorskip("ray")

STEP_MS, FIXED_MS, PER_SAMPLE_MS = 20.0, 50.0, 2.0
MAX_STEPS = 40  # 5 chunks of 8 after the settling steps
RUNS = [(1, 1), (2, 1), (4, 1), (8, 1), (16, 1), (16, 2)]  # (simulator actors, policy replicas)


def _ideal_per_min(simulators: int, replicas: int) -> float:
    chunks = math.ceil(MAX_STEPS / 8)
    per_episode_ms = (chunks * (8 * STEP_MS + FIXED_MS + PER_SAMPLE_MS * simulators / replicas)
                      + NUM_WAIT_STEPS * STEP_MS)
    return simulators * 60e3 / per_episode_ms


def test_episodes_per_minute_against_simulators_and_replicas(tmp_path: Path, benchmark) -> None:
    ckpt = tmp_path / "ck"  # a bundle for the run's identity; the latency policy stands in for its model
    subprocess.run([sys.executable, "mocks/generate_mock_checkpoints.py", "--output-dir", str(ckpt)], check=True,
                   capture_output=True)
    ray.init(num_cpus=40, include_dashboard=False, log_to_driver=False, configure_logging=False)
    rows = []

    def run() -> None:
        for simulators, replicas in RUNS:
            out = tmp_path / f"s{simulators}-r{replicas}"
            cfg = EvalConfig(suite="libero_spatial", tasks=list(range(10)), trials=math.ceil(4 * simulators / 10),
                             policy="main", checkpoints=str(ckpt), env="mock", render=True, max_steps=MAX_STEPS,
                             mock_step_latency_ms=STEP_MS, executor="ray", workers=simulators,
                             policy_replicas=replicas, device="cpu", out_dir=str(out))
            wall = time.perf_counter()
            records = read_results(run_eval(cfg, factory=LatencyPolicyFactory(FIXED_MS, PER_SAMPLE_MS),
                                            progress=False))
            wall = time.perf_counter() - wall
            assert all(r["error"] is None for r in records)
            steady = 0.0
            for worker in {r["worker"] for r in records}:
                mine = [r for r in records if r["worker"] == worker]
                busy = max(r["finished_at"] for r in mine) - min(r["finished_at"] - r["seconds"] for r in mine)
                steady += len(mine) / busy
            stats = json.loads((out / "results.policy_service.json").read_text())["replicas"]
            sizes: dict[str, int] = {}
            for replica in stats:
                for size, count in replica["batch_sizes"].items():
                    sizes[size] = sizes.get(size, 0) + count
            rows.append((simulators, replicas, len(records), 60 * steady, wall, dict(sorted(sizes.items(),
                                                                                          key=lambda kv: int(kv[0])))))

    try:
        benchmark.pedantic(run, rounds=1, iterations=1)
    finally:
        ray.shutdown()
    print(f"\nRay, mock env {STEP_MS:g} ms/step, latency policy {FIXED_MS:g} ms + {PER_SAMPLE_MS:g} ms/request per batch")
    print("| simulator actors | policy replicas | episodes | steady episodes/min | ideal | vs ideal | wall incl. "
          "start-up (s) | batch sizes (size: batches) |")
    print("|---|---|---|---|---|---|---|---|")
    for simulators, replicas, episodes, per_min, wall, sizes in rows:
        ideal = _ideal_per_min(simulators, replicas)
        print(f"| {simulators} | {replicas} | {episodes} | {per_min:.1f} | {ideal:.1f} | {per_min / ideal:.2f} | "
              f"{wall:.1f} | {sizes} |")
