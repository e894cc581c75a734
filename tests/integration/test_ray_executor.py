"""`--executor ray` on a local Ray instance (the `ray` extra, installed by the nox sessions): the same records as
the inline run, and a killed actor's episode requeued, on the mock env."""

from __future__ import annotations

from pathlib import Path

import pytest

from mocks.fault_policies import FaultyPolicyFactory
from rvq.eval import EvalConfig, run_eval
from rvq.eval.results import read_results

ray = pytest.importorskip("ray")


def cfg(out: Path, **kw) -> EvalConfig:
    settings = dict(suite="libero_spatial", tasks=[0, 1], trials=2, policy="noop", env="mock", max_steps=16,
                    out_dir=str(out), render=False, device="cpu")
    return EvalConfig(**{**settings, **kw})


def outcome(records: list[dict]) -> list[tuple]:
    return sorted((r["task"], r["trial"], r["success"], r["steps"], r["error"]) for r in records)


def test_ray_matches_inline_and_survives_a_killed_actor(tmp_path: Path) -> None:
    inline = read_results(run_eval(cfg(tmp_path / "inline"), progress=False))
    factory = FaultyPolicyFactory(kill_trials={1}, once_dir=str(tmp_path / "once"))
    on_ray = read_results(run_eval(cfg(tmp_path / "ray", executor="ray", workers=2), factory=factory,
                                   progress=False))
    assert outcome(on_ray) == outcome(inline)  # every episode once, none lost to the two killed actors
    assert len(list((tmp_path / "once").iterdir())) == 2
    assert not ray.is_initialized()  # the local instance it started is shut down


def test_a_stopped_ray_actor_is_killed_at_the_stall_timeout_and_its_episode_requeued(tmp_path: Path) -> None:
    """SIGSTOP leaves an actor alive and silent: the driver's step-count questions go unanswered, so past
    `stall_timeout` it is killed and replaced, and its episode runs again."""
    factory = FaultyPolicyFactory(stop_trials={1}, once_dir=str(tmp_path / "once"))
    records = read_results(run_eval(cfg(tmp_path / "ray", executor="ray", workers=2, stall_timeout=3.0),
                                    factory=factory, progress=False))
    assert outcome(records) == outcome(read_results(run_eval(cfg(tmp_path / "inline"), progress=False)))
    assert sorted(p.name for p in (tmp_path / "once").iterdir()) == ["stopped-task0-trial1", "stopped-task1-trial1"]


def test_ray_refuses_more_workers_than_the_cluster_has_cpus(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="CPUs asked for"):
        run_eval(cfg(tmp_path / "big", executor="ray", workers=512, trials=50, tasks=list(range(10))), progress=False)
