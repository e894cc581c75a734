"""scripts/continuous_baseline.py and scripts/ensemble_main_eval.py: the pieces their closed-loop numbers rest on."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mocks.generate_mock_checkpoints import generate
from mocks.libero_files import write_mock_env_demos
from rvq.data.phase2 import build_phase2_data, load_phase2_data
from rvq.envs.mock_env import mock_state_features
from rvq.models import MainConfig, MainModel, TokenSpace
from rvq.rsd.decode import greedy_decode, speculative_decode
from rvq.tokenizer import ActionTokenizer

sys.path.insert(0, str(Path(__file__).parents[2] / "scripts"))
import continuous_baseline as cb  # noqa: E402
import ensemble_main_eval as ens  # noqa: E402


@pytest.fixture(scope="module")
def phase2(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("p2")
    generate(root / "ck", seed=0, tokenizer_steps=10)
    write_mock_env_demos(root / "demos", "libero_object", num_tasks=2, trials=4, steps=30)
    tokenizer = ActionTokenizer.from_checkpoint(root / "ck" / "tokenizer")
    return load_phase2_data(build_phase2_data([root / "demos"], tokenizer, mock_state_features("libero_object"),
                                              root / "p2.h5", progress=False))


def test_regressor_learns_the_demo_actions_and_keeps_raw_units(phase2) -> None:
    torch.manual_seed(0)
    cfg = cb.RegressionConfig(width=64, depth=2, dropout=0.0)
    chunk, dim = phase2.actions.shape[1:]
    model = cb.ChunkRegressor(phase2.feature_dim, chunk, dim, cfg)
    model.fit_stats(phase2)
    steps = phase2.actions[phase2.valid]
    torch.testing.assert_close(model.action_mean, steps.mean(0))
    before = cb.held_out_mse(model, phase2, "l1")
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    valid = phase2.valid.float()
    for _ in range(300):
        model.train()
        loss = cb.regression_loss(model, phase2.features, phase2.actions, valid, "l1")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = cb.held_out_mse(model, phase2, "l1")
    assert after["action_mse_raw"] < 0.5 * before["action_mse_raw"], (before, after)
    by_position_dim = torch.tensor(after["action_mse_by_position_dim"])
    assert by_position_dim.shape == (chunk, dim)
    weights = phase2.valid.float().sum(0) / phase2.valid.float().sum()  # positions weighted by their valid steps
    assert abs(float((by_position_dim.mean(1) * weights).sum()) - after["action_mse_raw"]) < 1e-6
    from rvq.envs import MockLiberoEnv

    features = mock_state_features("libero_object")
    obs = MockLiberoEnv("libero_object", 0).reset(0)
    chunk = cb.RegressionPolicy(features, model).act(obs)
    raw = model(features.features([obs]))[0].detach().double().numpy()
    assert chunk.shape == (chunk.shape[0], 7) and set(np.unique(chunk[:, -1])) <= {-1.0, 1.0}
    np.testing.assert_allclose(chunk[:, :-1], raw[:, :-1], rtol=1e-6)
    np.testing.assert_array_equal(chunk[:, -1], np.where(raw[:, -1] > 0, 1.0, -1.0))


def test_first_episodes_per_task_keeps_whole_episodes(phase2) -> None:
    subset = cb.first_episodes_per_task(phase2, 2)
    for task in (0, 1):
        episodes = sorted(phase2.episode[phase2.task == task].unique().tolist())
        assert sorted(subset.episode[subset.task == task].unique().tolist()) == episodes[:2]
    assert len(subset) == int(np.isin(phase2.episode.numpy(), subset.episode.unique().numpy()).sum())
    with pytest.raises(SystemExit, match="fewer than 5"):
        cb.first_episodes_per_task(phase2, 5)


def test_ensemble_of_copies_decodes_as_its_member_and_rsd_stays_exact() -> None:
    torch.manual_seed(0)
    tokens = TokenSpace(chunk_size=2, hidden_dim=4, num_layers=4, num_levels=5)
    one = MainModel(MainConfig(12, tokens, width=32, depth=1, heads=4)).eval()
    other = MainModel(MainConfig(12, tokens, width=32, depth=1, heads=4)).eval()
    features = torch.randn(16, 12)
    torch.testing.assert_close(greedy_decode(ens.MainEnsemble([one, one]), features), greedy_decode(one, features))
    pair = ens.MainEnsemble([one, other]).eval()
    assert not torch.equal(greedy_decode(pair, features), greedy_decode(one, features))  # a real mix
    from rvq.models import DraftConfig, DraftModel

    draft = DraftModel(DraftConfig(12, tokens, num_draft_layers=2, width=16)).eval()
    codes, _ = speculative_decode(draft, pair, features, exact=True)
    torch.testing.assert_close(codes, greedy_decode(pair, features))
    with pytest.raises(ValueError, match="share the token space"):
        ens.MainEnsemble([one, MainModel(MainConfig(12, TokenSpace(2, 4, 4, 7), width=32, depth=1, heads=4))])
