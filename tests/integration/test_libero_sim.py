"""A short episode in the real LIBERO simulator (hf-libero, robosuite 1.4, MuJoCo, EGL rendering).

Skipped with a reason when LIBERO is not installed, except under `nox -s mock_integration`, which
installs it and sets RVQ_REQUIRE_LIBERO=1 so that a broken set-up fails instead of skipping.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from rvq.envs.suites import NOOP_ACTION

if importlib.util.find_spec("libero") is None:
    if os.environ.get("RVQ_REQUIRE_LIBERO") == "1":
        raise RuntimeError("RVQ_REQUIRE_LIBERO=1 but LIBERO is not installed (rvq setup-libero --install)")
    pytest.skip("LIBERO is not installed (pip install -e '.[libero]' && rvq setup-libero --install)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def env():
    from rvq.envs.libero_env import LiberoEnv

    env = LiberoEnv("libero_spatial", 0)
    yield env
    env.close()


def test_observation_and_image_contract(env) -> None:
    from libero.libero import benchmark

    task = benchmark.get_benchmark_dict()["libero_spatial"]().get_task(0)
    assert env.instruction == task.language and env.max_steps == 220 and env.num_trials == 50
    obs = env.reset(0)
    for key in ("agentview", "wrist"):
        assert obs[key].shape == (256, 256, 3) and obs[key].dtype == np.uint8
        assert obs[key].std() > 5  # a rendered scene, not a blank buffer
    assert obs["state"].shape == (8,) and np.isfinite(obs["state"]).all()
    assert 0.5 < obs["state"][2] < 1.5  # the end effector is above the table
    assert obs["instruction"] == task.language


def test_success_is_the_env_predicate(env, monkeypatch) -> None:
    env.reset(1)
    for _ in range(3):
        obs, success = env.step(NOOP_ACTION)
        assert success is False and success == bool(env.env.check_success())
    monkeypatch.setattr(env.env, "check_success", lambda: True)
    _, success = env.step(NOOP_ACTION)
    assert success is True
    with pytest.raises(ValueError, match="action must be 7 finite values"):
        env.step(np.zeros(6))


def test_episode_runner_in_the_simulator(env, tmp_path: Path) -> None:
    from rvq.eval import EvalConfig
    from rvq.eval.runner import run_episode
    from rvq.policies import NoopPolicy

    cfg = EvalConfig(suite="libero_spatial", tasks=[0], trials=1, policy="noop", out_dir=str(tmp_path), max_steps=8)
    record = run_episode(env, NoopPolicy(), cfg, 0, 2, tmp_path / "videos" / "spatial--task0--trial2")
    assert record["error"] is None, record["error"]
    assert record["steps"] == 8 and record["success"] is False
    assert Path(record["video"]).name == "spatial--task0--trial2--failure.mp4" and Path(record["video"]).stat().st_size > 0
