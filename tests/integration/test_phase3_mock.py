"""Phase 3 from mock checkpoints on CPU through `rvq eval`: observation → features → RSD tokens (exact
= main-only) → actions → env steps; the JSONL schema; resume after an interruption; crashed episodes;
workers; shards merged by `rvq eval-report`; videos; refusals before any simulator starts; and the
replay positive control."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from mocks.generate_mock_checkpoints import generate
from mocks.libero_files import write_mock_env_demos
from rvq.cli import main
from rvq.eval import EvalConfig, run_eval
from rvq.eval.results import read_results
from rvq.eval.runner import build_policy
from rvq.hub_format import read_payload, write_payload

SCHEMA = {"suite", "task", "task_name", "instruction", "trial", "policy", "label", "checkpoint_identity", "env", "shard",
          "worker", "success", "steps", "error", "video", "policy_stats", "seconds", "finished_at", "timing"}
BASE = ["eval", "--env", "mock", "--suite", "libero_spatial", "--max-steps", "24", "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def checkpoints(mock_bundle: Path) -> Path:
    return mock_bundle


def test_rsd_eval_schema_resume_and_videos(checkpoints: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "eval"
    argv = [*BASE, "--tasks", "0,1", "--trials", "3", "--policy", "rsd", "--checkpoints", str(checkpoints),
            "--out-dir", str(out), "--videos", "1"]
    assert main(argv) == 0
    records = read_results(out / "results.jsonl")
    assert len(records) == 6 and all(set(r) == SCHEMA for r in records)
    for r in records:
        assert r["error"] is None and r["steps"] == 24 and r["success"] is False
        rsd = r["policy_stats"]["rsd"]
        assert rsd["chunks"] == 3 and 0.0 <= rsd["acceptance_rate"] <= 1.0 and rsd["mean_main_passes"] <= 8
        assert r["policy_stats"]["mean_step_ms"] > 0
    videos = sorted(p.name for p in (out / "videos").iterdir())
    assert videos == ["libero_spatial--task0--trial0--failure.mp4", "libero_spatial--task1--trial0--failure.mp4"]
    assert "| rsd | libero_spatial (mock env) | 6 | 0.0%" in capsys.readouterr().out

    # Interrupted run: keep 2 finished episodes and a half-written line, then rerun the same command.
    lines = (out / "results.jsonl").read_text().splitlines()
    (out / "results.jsonl").write_text("\n".join(lines[:2]) + "\n" + lines[2][:40])
    assert main(argv) == 0
    resumed = read_results(out / "results.jsonl")
    assert len(resumed) == 6
    assert sorted((r["task"], r["trial"]) for r in resumed) == [(t, i) for t in (0, 1) for i in range(3)]
    assert resumed[:2] == records[:2]
    assert main(argv) == 0  # nothing left: no new lines
    assert len(read_results(out / "results.jsonl")) == 6


def test_actions_match_main_only_and_stay_in_range(checkpoints: Path, tmp_path: Path) -> None:
    rsd = run_eval(EvalConfig(suite="libero_object", tasks=[4], trials=2, policy="rsd", checkpoints=str(checkpoints),
                              out_dir=str(tmp_path / "rsd"), env="mock", device="cpu", max_steps=16), progress=False)
    main_only = run_eval(EvalConfig(suite="libero_object", tasks=[4], trials=2, policy="main",
                                    checkpoints=str(checkpoints), out_dir=str(tmp_path / "main"), env="mock",
                                    device="cpu", max_steps=16), progress=False)
    # Exact RSD executes the same actions as main-only, so the deterministic mock ends in the same place.
    a, b = read_results(rsd), read_results(main_only)
    assert [(r["success"], r["steps"]) for r in a] == [(r["success"], r["steps"]) for r in b]
    policy = build_policy(EvalConfig(policy="rsd", checkpoints=str(checkpoints), device="cpu"))
    from rvq.envs import MockLiberoEnv

    env = MockLiberoEnv("libero_object", 4)
    obs = env.reset(0)
    policy.reset(env.instruction, 4, 0)
    chunk = policy.act(obs)
    low = np.asarray(policy.tokenizer.normalizer.to_dict()["low"])
    high = np.asarray(policy.tokenizer.normalizer.to_dict()["high"])
    span = high - low
    assert chunk.shape == (8, 7) and np.isfinite(chunk).all()
    assert ((chunk[:, :6] >= low[:6] - span[:6]) & (chunk[:, :6] <= high[:6] + span[:6])).all()
    for action in chunk:
        obs, _ = env.step(action)


def test_shards_workers_and_report(checkpoints: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "shards"
    common = [*BASE, "--tasks", "0-2", "--trials", "2", "--policy", "noop", "--out-dir", str(out)]
    assert main([*common, "--shard", "0", "2", "--workers", "2"]) == 0
    assert main([*common, "--shard", "1", "2"]) == 0
    a = read_results(out / "results-shard0-of-2.jsonl")
    b = read_results(out / "results-shard1-of-2.jsonl")
    assert len(a) == len(b) == 3
    # shard 0 ran in (at most) two worker processes, shard 1 inline in this one
    assert len({r["worker"] for r in a}) <= 2 and os.getpid() not in {r["worker"] for r in a}
    assert {r["worker"] for r in b} == {os.getpid()}
    assert {(r["task"], r["trial"]) for r in a}.isdisjoint({(r["task"], r["trial"]) for r in b})
    capsys.readouterr()
    assert main(["eval-report", str(out), "--out-dir", str(tmp_path / "report")]) == 0
    report = json.loads((tmp_path / "report" / "eval_report.json").read_text())
    assert report["suites"][0]["episodes"] == 6 and report["suites"][0]["success_rate"] == 0.0
    assert len(report["tasks"]) == 3
    assert "| noop | libero_spatial (mock env) | 6 | 0.0%" in capsys.readouterr().out


def test_replay_is_a_positive_control(tmp_path: Path) -> None:
    write_mock_env_demos(tmp_path / "demos", "libero_goal", num_tasks=2, trials=3)
    path = run_eval(EvalConfig(suite="libero_goal", tasks=[0, 1], trials=3, policy="replay",
                               demos=str(tmp_path / "demos"), out_dir=str(tmp_path / "out"), env="mock"),
                    progress=False)
    records = read_results(path)
    assert len(records) == 6 and all(r["success"] for r in records)
    assert all(r["steps"] < 300 for r in records)


def test_crashing_episodes_are_recorded_and_the_run_goes_on(tmp_path: Path) -> None:
    class Flaky:
        name = "flaky"

        def reset(self, instruction, task_id, trial):
            self.trial = trial

        def act(self, obs):
            if self.trial == 1:
                raise RuntimeError("policy exploded")
            return np.tile([0, 0, 0, 0, 0, 0, -1.0], (8, 1))

        def episode_stats(self):
            return {}

    cfg = EvalConfig(suite="libero_10", tasks=[0], trials=3, policy="noop", out_dir=str(tmp_path), env="mock",
                     max_steps=8)
    records = read_results(run_eval(cfg, factory=lambda _: Flaky(), progress=False))
    assert [r["error"] is None for r in records] == [True, False, True]
    assert "policy exploded" in records[1]["error"] and "Traceback" in records[1]["error"]


def test_bad_runs_are_refused_before_any_simulator_starts(checkpoints: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    import rvq.eval.runner as runner

    def no_env(*args, **kwargs):
        raise AssertionError("a simulator was started")

    monkeypatch.setattr(runner, "make_env", no_env)
    other = tmp_path / "other"
    generate(other, seed=1, tokenizer_steps=5)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in ("draft", "main"):  # a folder of the older layout whose heads name another tokenizer
        write_payload(mixed / f"{name}.pt", read_payload(checkpoints / name))
    write_payload(mixed / "tokenizer.pt", read_payload(other / "tokenizer"))
    (mixed / "backbone").symlink_to(checkpoints / "backbone")
    cases = [
        (["--suite", "libero_100"], "unknown suite"),
        (["--tasks", "12"], "has tasks 0..9"),
        (["--policy", "rsd"], "needs --checkpoints"),
        (["--policy", "rsd", "--checkpoints", str(tmp_path / "missing")], "policy folder not found"),
        (["--policy", "rsd", "--checkpoints", str(mixed)], "different tokenizer"),
        (["--policy", "teleop"], "unknown policy"),
        (["--trials", "51"], "trials must be in"),
        (["--shard", "2", "2"], "shard must be"),
    ]
    for extra, message in cases:
        argv = ["eval", "--env", "mock", "--no-progress", "--out-dir", str(tmp_path / "x"), *extra]
        assert main(argv) == 2, extra
        assert message in capsys.readouterr().err, extra


def test_orphaned_worker_stops_after_its_current_episode(tmp_path: Path) -> None:
    # A worker whose parent is gone (killed run) must not keep simulating the rest of its episodes.
    import multiprocessing
    import queue

    from rvq.eval.executors import _process_worker

    cfg = EvalConfig(suite="libero_spatial", tasks=[0], trials=3, policy="noop", out_dir=str(tmp_path), env="mock",
                     device="cpu", max_steps=4)
    inbox = queue.Queue()
    receive, outbox = multiprocessing.Pipe(duplex=False)  # the worker's own pipe to the parent, as the executor's
    for trial in range(3):
        inbox.put((0, trial))
    inbox.put(None)
    with pytest.raises(SystemExit, match="parent .* is gone"):
        _process_worker(0, cfg, build_policy, inbox, outbox, parent=-1)
    messages = []
    while receive.poll():
        messages.append(receive.recv())
    assert messages[0][0] == "ready"
    assert [m[2]["trial"] for m in messages if m[0] == "done"] == [0]


def test_padded_batches_are_batch_invariant(checkpoints: Path) -> None:
    from rvq.envs import MockLiberoEnv

    policy = build_policy(EvalConfig(policy="rsd", checkpoints=str(checkpoints), device="cpu"))
    observations = [MockLiberoEnv("libero_spatial", task).reset(trial) for task, trial in ((0, 0), (1, 3), (2, 5))]
    texts = ["reach the target", "move to the left", "reach the target"]
    together = policy.act_batch(observations, texts, pad_to=4)
    for i, (obs, text) in enumerate(zip(observations, texts)):
        alone = policy.act_batch([obs], [text], pad_to=4)[0]
        assert np.array_equal(alone[0], together[i][0])
        assert torch_equal(alone[1]["rsd"].accepted, together[i][1]["rsd"].accepted)
    with pytest.raises(ValueError, match="larger than pad_to"):
        policy.act_batch(observations, texts, pad_to=2)


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_policy_service_serves_the_workers_and_matches_the_inline_run(checkpoints: Path, tmp_path: Path) -> None:
    common = dict(suite="libero_spatial", tasks=[0, 1], trials=2, policy="rsd", checkpoints=str(checkpoints),
                  env="mock", device="cpu", max_steps=16, render=True)
    inline = read_results(run_eval(EvalConfig(**common, out_dir=str(tmp_path / "inline")), progress=False))
    served_cfg = EvalConfig(**common, out_dir=str(tmp_path / "served"), workers=2, service_max_wait_ms=20.0)
    served = read_results(run_eval(served_cfg, progress=False))

    def outcome(records):
        return sorted((r["task"], r["trial"], r["success"], r["steps"], r["error"],
                       r["policy_stats"]["rsd"]["layer_acceptance"]) for r in records)

    assert outcome(served) == outcome(inline)
    stats = json.loads((tmp_path / "served" / "results.policy_service.json").read_text())
    assert stats["requests"] == sum(r["policy_stats"]["chunks"] for r in served) == 4 * 2
    assert set(stats["batch_sizes"]) <= {"1", "2"} and stats["max_batch"] == 2
