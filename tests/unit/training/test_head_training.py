"""Head training: losses use only what the model may see, metrics, resume reproduces an
uninterrupted run, and a tokenizer that did not label the data is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rvq.config_cli import config_from
from rvq.data.phase2 import Phase2Data
from rvq.rfsq import ActionRFSQAE, TokenizerConfig
from rvq.data import ActionNormalizer
from rvq.models import TokenSpace
from rvq.tokenizer import ActionTokenizer
from rvq.training.heads import TrainHeadConfig, build_head, evaluate_head, fit_head, head_logits, head_loss


def _tokenizer() -> ActionTokenizer:
    torch.manual_seed(0)
    model = ActionRFSQAE.from_config(TokenizerConfig(hidden_dim=3, num_layers=4, num_levels=5, chunk_size=2))
    return ActionTokenizer(model, ActionNormalizer.fit(np.random.default_rng(0).uniform(-1, 1, (50, 7))), identity="tok")


def _synthetic(n: int = 240, feature_dim: int = 16, seed: int = 0) -> Phase2Data:
    """Codes are a fixed function of the features (learnable), 12 episodes of 20 steps, 2 tasks."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(n, feature_dim, generator=g)
    projection = torch.randn(feature_dim, 2 * 3 * 4, generator=g)
    codes = torch.bucketize(features @ projection, torch.tensor([-1.5, -0.5, 0.5, 1.5])).reshape(n, 2, 3, 4)
    episode = torch.arange(n) // 20
    return Phase2Data(
        features=features, codes=codes, actions=torch.zeros(n, 2, 7), valid=torch.ones(n, 2, dtype=torch.bool),
        episode=episode, task=episode % 2, step=torch.arange(n) % 20, tokenizer_identity="tok",
        feature_identity="feat", feature_info={}, instructions=["a", "b"], episodes=[str(i) for i in range(12)],
    )


def _cfg(kind: str, **kw) -> TrainHeadConfig:
    base = dict(kind=kind, steps=60, batch_size=32, lr=3e-3, warmup_steps=5, eval_every=30, width=32, depth=1,
                heads=4, dropout=0.0, device="cpu", progress=False)
    return config_from(TrainHeadConfig, **{**base, **kw})


def test_main_loss_does_not_depend_on_the_target_layer_inputs() -> None:
    cfg = _cfg("main")
    data = _synthetic()
    model = build_head(cfg.model_config(16, TokenSpace(2, 3, 4, 5))).eval()
    codes = data.codes[:8]
    logits = head_logits(model, data.features[:8], codes)
    # Layer 0's logits must not change when layer 0's (or any) ground truth changes.
    shuffled = codes.clone()
    shuffled[..., 0] = (shuffled[..., 0] + 1) % 5
    assert torch.equal(head_logits(model, data.features[:8], shuffled)[:, 0], logits[:, 0])
    assert head_loss(logits, codes, model.config.tokens).item() > 0


@pytest.mark.parametrize("kind", ["draft", "main"])
def test_training_learns_a_learnable_mapping_above_chance(kind: str) -> None:
    data = _synthetic()
    train, val = data.split_by_episode(0.25, seed=0)
    cfg = _cfg(kind, steps=150, standardize_features=True)
    model = build_head(cfg.model_config(16, TokenSpace(2, 3, 4, 5)))
    result = fit_head(model, train, val, _tokenizer(), cfg)
    best = result.best
    assert len(best["token_accuracy"]) == (3 if kind == "draft" else 4)
    assert best["token_accuracy"][0] > 0.5 > best["chance_accuracy"]
    assert best["token_accuracy"][0] > best["majority_accuracy"][0] and len(best["majority_accuracy"]) == len(
        best["token_accuracy"])
    assert 0.0 <= min(best["layer_exact_match"]) and max(best["layer_exact_match"]) <= 1.0
    assert np.isfinite(best["action_mse_raw"]) and result.samples_per_second > 0
    by_position_dim = torch.tensor(best["action_mse_by_position_dim"])  # [C, 7]: its valid-weighted mean is the total
    counts = val.valid.float().sum(0)
    assert by_position_dim.shape == (val.actions.shape[1], 7)
    assert float((by_position_dim.mean(1) * counts).sum() / counts.sum()) == pytest.approx(best["action_mse_raw"], rel=1e-4)
    assert 0.0 <= best["gripper_sign_accuracy"] <= 1.0
    again = evaluate_head(result.model, val, _tokenizer(), torch.device("cpu"))
    assert again["loss"] == pytest.approx(best["loss"])
    # standardized (when asked) with the training rows' statistics, not the validation rows
    assert torch.allclose(result.model.standardize.mean, train.features.mean(0).float(), atol=1e-6)


def test_action_error_breakdowns_count_valid_steps_only() -> None:
    from rvq.training.heads import action_mse_by_position_dim, gripper_sign_accuracy

    target = torch.zeros(2, 3, 7)
    target[..., -1] = 1.0
    pred = target.clone()
    pred[0, 1, 2] = 2.0  # error 4 on z at position 1 of row 0
    pred[1, 1, -1] = -1.0  # wrong gripper sign at position 1 of row 1 ...
    pred[1, 2, -1] = -1.0  # ... and at position 2, which is padding
    valid = torch.tensor([[True, True, True], [True, True, False]])
    table = torch.tensor(action_mse_by_position_dim(pred, target, valid))
    assert table[1, 2] == 2.0 and table[1, -1] == 2.0 and table[2].abs().sum() == 0 and table[0].abs().sum() == 0
    assert gripper_sign_accuracy(pred, target, valid) == pytest.approx(4 / 5)


def test_resume_reproduces_an_uninterrupted_run(tmp_path: Path) -> None:
    data = _synthetic()
    train, val = data.split_by_episode(0.25, seed=0)
    tokens = TokenSpace(2, 3, 4, 5)
    cfg = _cfg("main")
    torch.manual_seed(0)
    full = fit_head(build_head(cfg.model_config(16, tokens)), train, val, _tokenizer(), cfg, tmp_path / "full")
    torch.manual_seed(0)
    fit_head(build_head(cfg.model_config(16, tokens)), train, val, _tokenizer(), cfg, tmp_path / "part", stop_at=30)
    resumed_cfg = _cfg("main", resume=str(tmp_path / "part" / "last.pt"))
    torch.manual_seed(0)
    resumed = fit_head(build_head(cfg.model_config(16, tokens)), train, val, _tokenizer(), resumed_cfg, tmp_path / "part")
    for key, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    with pytest.raises(ValueError, match="not a rvq.draft-train-state"):
        fit_head(build_head(_cfg("draft").model_config(16, tokens)), train, val, _tokenizer(),
                 _cfg("draft", resume=str(tmp_path / "part" / "last.pt")))


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        config_from(TrainHeadConfig, kind="medium")
