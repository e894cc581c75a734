"""Protocol constants, task parsing, the observation contract, and the mock env's determinism."""

from __future__ import annotations

import numpy as np
import pytest

from rvq.envs import MAX_STEPS, MockLiberoEnv, check_observation, make_env, parse_tasks
from rvq.envs.observation import quat_to_axis_angle
from rvq.envs.suites import NOOP_ACTION


def test_protocol_constants() -> None:
    assert MAX_STEPS == {"libero_spatial": 220, "libero_object": 280, "libero_goal": 300, "libero_10": 520,
                         "libero_90": 400}
    assert NOOP_ACTION.tolist() == [0, 0, 0, 0, 0, 0, -1]


def test_parse_tasks() -> None:
    assert parse_tasks(None, "libero_goal") == list(range(10))
    assert parse_tasks("0,3,3,5", "libero_spatial") == [0, 3, 5]
    assert parse_tasks("2-4", "libero_90") == [2, 3, 4]
    with pytest.raises(ValueError, match="libero_spatial has tasks 0..9; got \\[10\\]"):
        parse_tasks("10", "libero_spatial")
    with pytest.raises(ValueError, match="unknown suite"):
        parse_tasks("0", "libero_100")
    with pytest.raises(ValueError, match="cannot parse"):
        parse_tasks("a", "libero_10")


def test_quat_to_axis_angle() -> None:
    half = np.sqrt(0.5)
    np.testing.assert_allclose(quat_to_axis_angle(np.array([0, 0, half, half])), [0, 0, np.pi / 2], atol=1e-12)
    np.testing.assert_allclose(quat_to_axis_angle(np.array([0, 0, 0, 1.0])), [0, 0, 0])


def test_mock_env_contract_determinism_and_expert() -> None:
    env = make_env("mock", "libero_spatial", 3)
    obs = env.reset(5)
    check_observation(obs, resolution=64)
    again = MockLiberoEnv("libero_spatial", 3).reset(5)
    assert all(np.array_equal(obs[k], again[k]) for k in ("agentview", "wrist", "state"))
    assert not np.array_equal(env.target_for(5), env.target_for(6))
    success = False
    for action in env.expert_actions(5):
        obs, success = env.step(action)
        if success:
            break
    assert success
    env.reset(5)
    assert not any(env.step(NOOP_ACTION)[1] for _ in range(30))  # doing nothing never succeeds
    with pytest.raises(ValueError, match="action must be 7 finite values"):
        env.step(np.array([np.nan] * 7))
    with pytest.raises(ValueError, match="trial 50"):
        env.reset(50)
    with pytest.raises(ValueError, match="unknown env kind"):
        make_env("gym", "libero_spatial", 0)


def test_observation_contract_violations_are_named() -> None:
    obs = MockLiberoEnv("libero_goal", 0).reset(0)
    with pytest.raises(KeyError, match="wrist"):
        check_observation({k: v for k, v in obs.items() if k != "wrist"})
    with pytest.raises(ValueError, match="'agentview' must be"):
        check_observation({**obs, "agentview": obs["agentview"].astype(np.float32)})
    with pytest.raises(ValueError, match="expected 256x256"):
        check_observation(obs, resolution=256)
    with pytest.raises(ValueError, match="'state'"):
        check_observation({**obs, "state": np.zeros(7)})


def test_registry_envs_follow_the_env_contract_and_the_benchmark_spec() -> None:
    from rvq.envs import ENVS, LIBERO, Env, make_env

    assert set(ENVS) == {"libero", "mock"} and all(entry.benchmark is LIBERO for entry in ENVS.values())
    env = make_env("mock", "libero_object", 2)
    assert isinstance(env, MockLiberoEnv)
    for name in Env.__annotations__:
        assert hasattr(env, name), name
    assert env.max_steps == LIBERO.max_steps["libero_object"] and env.num_trials == LIBERO.trials_per_task
    obs, success = env.step(np.asarray(LIBERO.noop_action))
    assert success is False and obs["state"].shape == (8,)


