"""Policies: gripper binarization, no-op, replay, and the token policy (its bundle checks: test_bundle.py)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from mocks.generate_mock_checkpoints import generate
from mocks.libero_files import write_mock_env_demos
from rvq.envs import MockLiberoEnv
from rvq.backbones.preprocess import resize_image
from rvq.policies import NoopPolicy, ReplayPolicy, TokenPolicy, binarize_gripper
from rvq.rsd import greedy_decode


def test_binarize_gripper() -> None:
    chunk = np.zeros((8, 7))
    chunk[:, 6] = np.linspace(-1, 1, 8)
    out = binarize_gripper(chunk)
    assert set(out[:, 6]) == {-1.0, 1.0} and out[0, 6] == -1 and out[-1, 6] == 1
    # OpenVLA-family outputs: gripper in [0, 1], 1 = open; OpenVLA-OFT splits at 0.5, then inverts
    openvla = np.zeros((4, 7))
    openvla[:, 6] = [0.0, 0.3, 0.7, 1.0]
    assert binarize_gripper(openvla, flip_sign=True)[:, 6].tolist() == [1.0, 1.0, -1.0, -1.0]
    assert np.array_equal(out[:, :6], chunk[:, :6])
    with pytest.raises(ValueError, match=r"\[C, 7\]"):
        binarize_gripper(np.zeros((8, 6)))
    with pytest.raises(ValueError, match="NaN"):
        binarize_gripper(np.full((8, 7), np.nan))


def test_noop_and_replay(tmp_path: Path) -> None:
    assert (NoopPolicy().act({})[:, 6] == -1).all()
    write_mock_env_demos(tmp_path, "libero_spatial", num_tasks=2, trials=3)
    policy, env = ReplayPolicy(tmp_path), MockLiberoEnv("libero_spatial", 1)
    obs = env.reset(2)
    policy.reset(env.instruction, 1, 2)
    success = False
    for _ in range(10):
        for action in policy.act(obs):
            obs, success = env.step(action)
            if success:
                break
        if success:
            break
    assert success
    with pytest.raises(ValueError, match="no file with the instruction 'x'"):
        policy.reset("x", 5, 0)


def test_replay_finds_the_task_file_by_instruction_not_by_name_order(tmp_path: Path) -> None:
    """libero_object's file names sort in another order than its tasks: task 1's demo must be task 1's file."""
    files = write_mock_env_demos(tmp_path, "libero_spatial", num_tasks=2, trials=1)
    for path, prefix in zip(sorted(files), ("b_", "a_")):  # task 0's file now sorts after task 1's
        path.rename(path.with_name(prefix + path.name))
    with h5py.File(tmp_path / ("b_" + sorted(files)[0].name), "r+") as f:  # the mock tasks' demos are alike: mark 0's
        f["data/demo_0/actions"][:, :3] *= 0.5
    env = MockLiberoEnv("libero_spatial", 1)
    policy = ReplayPolicy(tmp_path)
    policy.reset(env.instruction, 1, 0)
    with h5py.File(tmp_path / ("a_" + sorted(files)[1].name), "r") as f:
        assert np.allclose(policy.actions, f["data/demo_0/actions"][()], atol=1e-6)  # stored float32
    with h5py.File(tmp_path / ("b_" + sorted(files)[0].name), "r") as f:
        assert not np.allclose(policy.actions, f["data/demo_0/actions"][()], atol=1e-6)
    copy = tmp_path / ("c_" + sorted(files)[1].name)  # two files of one task: which to play is not guessed
    copy.write_bytes((tmp_path / ("a_" + sorted(files)[1].name)).read_bytes())
    with pytest.raises(ValueError, match="2 files"):
        ReplayPolicy(tmp_path).reset(env.instruction, 1, 0)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mock_checkpoints")
    generate(out, seed=0, tokenizer_steps=20)
    return out


def test_token_policy_rsd_equals_main_only_and_gives_raw_chunks(checkpoints: Path) -> None:
    rsd = TokenPolicy.from_dir(checkpoints, mode="rsd", device="cpu")
    main_only = TokenPolicy.from_dir(checkpoints, mode="main", device="cpu")
    env = MockLiberoEnv("libero_object", 2)
    obs = env.reset(0)
    rsd.reset(env.instruction, 2, 0)
    main_only.reset(env.instruction, 2, 0)
    chunk = rsd.act(obs)
    assert chunk.shape == (8, 7) and chunk.dtype == np.float64
    assert np.array_equal(chunk, main_only.act(obs))  # exact RSD: the same tokens, so the same actions
    assert set(np.unique(chunk[:, 6])) <= {-1.0, 1.0}
    stats = rsd.episode_stats()
    assert stats["chunks"] == 1 and stats["rsd"]["chunks"] == 1 and "rsd" not in main_only.episode_stats()
    # the declared steps (turn, resize) then the bare extractor: what the extractor itself did before
    turned = resize_image(np.ascontiguousarray(obs["agentview"][::-1, ::-1]), 224)
    features = rsd.features.source([turned], [env.instruction])
    expected = rsd.tokenizer.decode(greedy_decode(rsd.main, features))[0].numpy()
    np.testing.assert_array_equal(chunk[:, :6], expected[:, :6])


def test_token_policy_early_exit_records_depth_and_bound_and_runs_from_the_protocol(checkpoints: Path,
                                                                                     tmp_path: Path) -> None:
    from rvq.eval import EvalConfig, run_eval
    from rvq.eval.results import read_results

    full = TokenPolicy.from_dir(checkpoints, mode="main", device="cpu")
    loose = TokenPolicy.from_dir(checkpoints, mode="main", device="cpu", exit_tolerance=1e6)
    fixed = TokenPolicy.from_dir(checkpoints, mode="main", device="cpu", exit_depth=2)
    env = MockLiberoEnv("libero_object", 2)
    obs = env.reset(0)
    for policy in (full, loose, fixed):
        policy.reset(env.instruction, 2, 0)
    reference = full.act(obs)
    loose.act(obs)
    fixed.act(obs)
    assert "exit" not in full.episode_stats() and full.episode_stats()["mean_main_passes"] == 8
    assert fixed.episode_stats()["mean_main_passes"] == 2
    exits = loose.episode_stats()["exit"]
    assert exits["chunks"] == 1 and exits["mean_depth"] < 8 and exits["max_bound"] <= 1e6
    assert fixed.episode_stats()["exit"]["mean_depth"] == 2 and fixed.episode_stats()["exit"]["mean_main_passes"] == 2
    tight = TokenPolicy.from_dir(checkpoints, mode="main", device="cpu", exit_tolerance=1e-12)
    tight.reset(env.instruction, 2, 0)
    assert np.array_equal(tight.act(obs), reference)  # nothing certifies 1e-12 before the full depth
    assert tight.episode_stats()["exit"]["depth_counts"] == {"8": 1}
    with pytest.raises(ValueError, match="early exit decodes with the main head alone"):
        TokenPolicy.from_dir(checkpoints, mode="rsd", device="cpu", exit_tolerance=1e-3)

    def cfg(**kwargs) -> EvalConfig:
        return EvalConfig(suite="libero_object", tasks=[2], trials=1, policy="main", checkpoints=str(checkpoints),
                          env="mock", max_steps=16, device="cpu", out_dir=str(tmp_path / "eval"), **kwargs)

    record, = read_results(run_eval(cfg(exit_depth=1), progress=False))
    assert record["error"] is None and record["policy_stats"]["exit"]["mean_depth"] == 1
    with pytest.raises(ValueError, match=r"exit_depth: 1 there, absent now"):
        run_eval(cfg(), progress=False)
    with pytest.raises(ValueError, match="apply to policy 'main'"):
        EvalConfig(policy="rsd", checkpoints=str(checkpoints), env="mock", exit_tolerance=1e-3).validate()
    for bad in (float("nan"), -1.0):
        with pytest.raises(ValueError, match="exit_tolerance must be a finite number >= 0"):
            cfg(exit_tolerance=bad).validate()
    assert cfg(exit_tolerance=0.0).validate().exit_tolerance is None  # 0: every layer, the lossless reference
