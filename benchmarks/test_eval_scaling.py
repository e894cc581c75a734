"""Evaluation throughput against simulator workers, measured side by side in one run and printed as ratios.

(a) The mock env with a per-step sleep (standing in for a slow simulator: many cores or GPU rendering) at 1, 2, 4,
    8 and 16 local process workers, about 6 episodes per worker. Two rates: steady (each worker's episodes over its
    own busy span, from its first episode's start to its last one's end, summed over workers: worker start-up and
    the idle tail excluded) and the run's (all episodes over the span from the first start to the last end); the
    whole wall time, start-up included, beside them. Target: steady rate >= 0.9x linear.
(b) The real simulator, physics only, the scripted expert, at 1 and 2 workers (needs LIBERO; CPU-bound).
(c) The policy service at 4 workers (mock checkpoints, RSD): its batch-size distribution, and the cost per request
    (the workers' time per chunk against the same policy inline).
(d) Peak resident memory (this process and its children) at 1 worker inline, 4 workers with one policy service,
    and 4 workers each loading the policy.
Every run's episode time is split into env creation, reset, policy and env steps (the records' `timing`).
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rvq.eval import EvalConfig, run_eval
from rvq.eval.results import read_results

STEP_MS = 20.0
MAX_STEPS = 40  # + 10 settling steps: ~1 s of sleep per episode
WORKERS = (1, 2, 4, 8, 16)


def _measure(cfg: EvalConfig) -> dict:
    wall = time.perf_counter()
    records = read_results(run_eval(cfg, progress=False))
    wall = time.perf_counter() - wall
    assert all(r["error"] is None for r in records)
    span = max(r["finished_at"] for r in records) - min(r["finished_at"] - r["seconds"] for r in records)
    steady = 0.0
    for pid in {r["worker"] for r in records}:
        mine = [r for r in records if r["worker"] == pid]
        busy = max(r["finished_at"] for r in mine) - min(r["finished_at"] - r["seconds"] for r in mine)
        steady += len(mine) / busy
    split = {key: sum(r["timing"][key] for r in records) / len(records) for key in records[0]["timing"]}
    return {"episodes": len(records), "per_min": 60 * len(records) / span, "steady_per_min": 60 * steady,
            "wall_s": wall, "split": split, "records": records}


def _split(m: dict) -> str:
    return " / ".join(f"{m['split'][k]:.2f}" for k in ("env_create_s", "reset_s", "policy_s", "env_step_s"))


def test_mock_env_episodes_per_minute_vs_workers(tmp_path: Path, benchmark) -> None:
    rows = []

    def run() -> None:
        for workers in WORKERS:
            trials = math.ceil(6 * workers / 10)
            cfg = EvalConfig(suite="libero_spatial", tasks=list(range(10)), trials=trials, policy="noop", env="mock",
                             render=False, max_steps=MAX_STEPS, workers=workers, mock_step_latency_ms=STEP_MS,
                             out_dir=str(tmp_path / f"w{workers}-{time.monotonic_ns()}"))
            rows.append((workers, _measure(cfg)))

    benchmark.pedantic(run, rounds=1, iterations=1)
    base, base_run = rows[0][1]["steady_per_min"], rows[0][1]["per_min"]
    print(f"\n(a) mock env, {STEP_MS:g} ms per step, noop policy, local process workers")
    print("| workers | episodes | steady episodes/min | vs linear | run episodes/min | vs linear | wall incl. start-up (s) "
          "| create / reset / policy / step (s per episode) |")
    print("|---|---|---|---|---|---|---|---|")
    for workers, m in rows:
        print(f"| {workers} | {m['episodes']} | {m['steady_per_min']:.1f} | {m['steady_per_min'] / (base * workers):.2f} "
              f"| {m['per_min']:.1f} | {m['per_min'] / (base_run * workers):.2f} | {m['wall_s']:.1f} | {_split(m)} |")


@pytest.mark.skipif(importlib.util.find_spec("libero") is None, reason="LIBERO is not installed")
def test_real_simulator_physics_only_one_vs_two_workers(tmp_path: Path, benchmark) -> None:
    rows = []

    def run() -> None:
        for workers in (1, 2):
            cfg = EvalConfig(suite="libero_object", tasks=[0, 1], trials=3, policy="expert", env="libero",
                             render=False, workers=workers, out_dir=str(tmp_path / f"sim-w{workers}"))
            rows.append((workers, _measure(cfg)))

    benchmark.pedantic(run, rounds=1, iterations=1)
    base = rows[0][1]["per_min"]
    print("\n(b) real LIBERO, physics only, scripted expert, libero_object tasks 0-1 x 3 trials")
    print("| workers | episodes/min | vs linear | wall (s) | create / reset / policy / step (s per episode) |")
    print("|---|---|---|---|---|")
    for workers, m in rows:
        print(f"| {workers} | {m['per_min']:.1f} | {m['per_min'] / (base * workers):.2f} | {m['wall_s']:.1f} | "
              f"{_split(m)} |")


def test_policy_service_batches_and_cost_per_request(tmp_path: Path, benchmark) -> None:
    ckpt = tmp_path / "ck"
    subprocess.run([sys.executable, "mocks/generate_mock_checkpoints.py", "--output-dir", str(ckpt)], check=True,
                   capture_output=True)
    common = dict(suite="libero_spatial", tasks=[0, 1, 2, 3], trials=2, policy="rsd", checkpoints=str(ckpt),
                  env="mock", render=True, max_steps=MAX_STEPS, mock_step_latency_ms=STEP_MS, device="cpu")
    results = {}

    def run() -> None:
        results["inline"] = _measure(EvalConfig(**common, out_dir=str(tmp_path / "inline")))
        results["served"] = _measure(EvalConfig(**common, workers=4, out_dir=str(tmp_path / "served")))

    benchmark.pedantic(run, rounds=1, iterations=1)
    stats = json.loads((tmp_path / "served" / "results.policy_service.json").read_text())

    def per_chunk_ms(m: dict) -> float:
        chunks = sum(r["policy_stats"]["chunks"] for r in m["records"])
        return 1e3 * sum(r["timing"]["policy_s"] for r in m["records"]) / chunks

    inline_ms, served_ms = per_chunk_ms(results["inline"]), per_chunk_ms(results["served"])
    print("\n(c) policy service, 4 workers, mock checkpoints (tiny LLaVA backbone + RSD heads), batches padded to 4")
    print(f"batch sizes {stats['batch_sizes']} over {stats['batches']} batches, {stats['requests']} requests; "
          f"mean queueing {stats['mean_queue_ms']:.1f} ms")
    print(f"policy time per chunk seen by a worker: inline {inline_ms:.1f} ms, served {served_ms:.1f} ms "
          f"(+{served_ms - inline_ms:.1f} ms per request: queueing, IPC, the padded batch)")
    print(f"episodes/min: inline {results['inline']['per_min']:.1f}, served x4 {results['served']['per_min']:.1f}")


def _peak_rss(run) -> dict:
    """Run `run()` while sampling the resident memory of this process and all its descendants every 50 ms."""
    import threading

    import psutil

    me, peak, stop = psutil.Process(), {"total": 0, "processes": 0, "largest_child": 0}, threading.Event()

    def sample() -> None:
        while not stop.is_set():
            rss = {}
            for proc in [me, *me.children(recursive=True)]:
                try:
                    rss[proc.pid] = proc.memory_info().rss
                except psutil.Error:
                    pass
            total = sum(rss.values())
            if total > peak["total"]:
                children = [v for pid, v in rss.items() if pid != me.pid]
                peak.update(total=total, processes=len(rss), largest_child=max(children, default=0))
            stop.wait(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        run()
    finally:
        stop.set()
        thread.join()
    return peak


def test_peak_memory_with_and_without_the_policy_service(tmp_path: Path, benchmark) -> None:
    ckpt = tmp_path / "ck"
    subprocess.run([sys.executable, "mocks/generate_mock_checkpoints.py", "--output-dir", str(ckpt)], check=True,
                   capture_output=True)
    common = dict(suite="libero_spatial", tasks=[0, 1, 2, 3], trials=1, policy="rsd", checkpoints=str(ckpt),
                  env="mock", render=True, max_steps=16, device="cpu")
    rows = []

    def run() -> None:
        for name, kw in (("1 worker, inline", {"workers": 1}),
                         ("4 workers, one policy service", {"workers": 4, "policy_service": "on"}),
                         ("4 workers, a policy each", {"workers": 4, "policy_service": "off"})):
            cfg = EvalConfig(**common, **kw, out_dir=str(tmp_path / name.replace(" ", "_").replace(",", "")))
            rows.append((name, _peak_rss(lambda: run_eval(cfg, progress=False))))

    benchmark.pedantic(run, rounds=1, iterations=1)
    print("\n(d) peak resident memory, this process and its children (mock checkpoints: tiny LLaVA backbone + heads)")
    print("| run | processes at the peak | peak total (MB) | largest child (MB) |")
    print("|---|---|---|---|")
    for name, peak in rows:
        print(f"| {name} | {peak['processes']} | {peak['total'] / 2**20:.0f} | {peak['largest_child'] / 2**20:.0f} |")
