"""`TokenizerConfig.cascade`: layer 0 a one-layer FSQ autoencoder of its own, layers 1..L-1 on its action residual."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rvq.rfsq import (ActionRFSQAE, CascadeRFSQAE, TokenizerConfig, build_tokenizer_model, read_tokenizer,
                      save_tokenizer, tokenizer_identity)
from rvq.rfsq.cascade import RESIDUAL_QUANTILE
from tests.unit.rfsq.helpers import fit_smooth_actions, smooth_actions

WARMUP = 3
# the ninth pass's cascade: layer 0 trained alone for a warm-up, then fixed; the residual stage with its MLP encoder
NINTH_PASS = {"layer0_share": 0.0, "linear_inverse": False, "encoder_mlp": True}


def trained(seed: int = 0, steps: int = 6, **config) -> CascadeRFSQAE:
    """A cascade after `WARMUP` layer-0 steps and `steps - WARMUP` residual steps (weights and buffers move)."""
    torch.manual_seed(seed)
    model = build_tokenizer_model(TokenizerConfig(cascade=True, layer0_warmup=WARMUP, **{**NINTH_PASS, **config}))
    return fit_smooth_actions(model, steps, seed, batch=32)


def test_robust_builds_the_cascade_recipe_by_default_and_the_plain_model_refuses_a_cascade() -> None:
    model = build_tokenizer_model(TokenizerConfig())
    assert isinstance(model, CascadeRFSQAE)
    recipe = model.config
    assert (recipe.cascade, recipe.layer0_share, recipe.linear_inverse, recipe.encoder_mlp) == (True, 0.5, True, False)
    assert recipe == TokenizerConfig().resolved() == TokenizerConfig.from_dict(TokenizerConfig().to_dict())
    assert (model.stage1.config.linear_inverse, model.stage1.config.encoder_mlp) == (True, False)  # the linear stage
    for single in (TokenizerConfig(cascade=False), TokenizerConfig(quantizer="naive"),
                   TokenizerConfig(quantizer="layernorm"), TokenizerConfig(num_layers=2)):
        built = build_tokenizer_model(single)
        assert isinstance(built, ActionRFSQAE) and not built.config.cascade
        assert (built.config.layer0_share, built.config.linear_inverse, built.config.encoder_mlp) == (0.0, False, True)
    assert not ActionRFSQAE.from_config(TokenizerConfig()).config.cascade  # unset: the single model is no cascade
    with pytest.raises(ValueError, match="CascadeRFSQAE"):
        ActionRFSQAE.from_config(TokenizerConfig(cascade=True))


@pytest.mark.parametrize("options, expected", [
    ({"hidden_dim": 4}, (True, False, True)),  # the linear stage cannot invert a 7-d action from 4 latents
    ({"linear_skip": False}, (True, False, True)),  # nor exist without the linear paths
    ({"quantizer": "naive", "cascade": True}, (True, True, False)),  # an explicit cascade takes the recipe's stage
    ({"encoder_mlp": True}, (True, True, True)),  # a set field is kept, the unset ones resolved
    ({"num_layers": 2, "coarse_decoder": False}, (True, True, False)),
])
def test_the_recipe_resolves_only_unset_fields_and_only_to_what_the_model_can_build(options: dict, expected) -> None:
    config = TokenizerConfig(**options).resolved()
    assert (config.cascade, config.linear_inverse, config.encoder_mlp) == expected
    assert config.resolved() is config
    assert TokenizerConfig(**options).to_dict() == config.to_dict()  # a checkpoint names what it built


@pytest.mark.parametrize("options, match", [
    ({"quantizer": "layernorm"}, "decode from codes"),
    ({"num_layers": 2}, "num_layers >= 3"),
    ({"num_layers": 1, "coarse_decoder": False}, "num_layers >= 2"),
])
def test_configs_a_cascade_cannot_build_are_refused(options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TokenizerConfig(cascade=True, **options)


def test_a_two_layer_cascade_without_a_coarse_decoder_is_allowed() -> None:
    model = build_tokenizer_model(TokenizerConfig(cascade=True, num_layers=2, coarse_decoder=False))
    assert model.stage1.num_layers == 1


def test_training_without_a_layer0_phase_is_refused() -> None:
    model = build_tokenizer_model(TokenizerConfig(cascade=True, layer0_share=0.0)).train()
    with pytest.raises(ValueError, match="layer0_warmup"):
        model(smooth_actions(4))


def test_layer0_phase_trains_layer0_alone_then_only_the_residual_stage_trains() -> None:
    torch.manual_seed(0)
    model = build_tokenizer_model(TokenizerConfig(cascade=True, layer0_warmup=1, **NINTH_PASS)).train()
    x = smooth_actions(16)

    def grads_after_one_step() -> tuple[bool, bool]:
        model.zero_grad(set_to_none=True)
        (model(x)[0] - x).pow(2).mean().backward()
        stage0 = any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.stage0.parameters())
        stage1 = any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.stage1.parameters())
        return stage0, stage1

    assert grads_after_one_step() == (True, False)  # layer 0's phase: its reconstruction alone
    calibrated_before = int(model.stage1.quantizer.calibration_steps)
    assert calibrated_before == 0  # its codes came from the residual stage in eval mode: no calibration
    assert grads_after_one_step() == (False, True)  # then layer 0 is fixed
    assert int(model.stage1.quantizer.calibration_steps) == 1
    assert int(model.training_forwards) == 2


def stages_with_gradient(model: CascadeRFSQAE, x: torch.Tensor, rows: slice = slice(None)) -> tuple[bool, bool]:
    """Which stages a training step's reconstruction error over `x[rows]` sends a gradient to."""
    model.zero_grad(set_to_none=True)
    (model(x)[0][rows] - x[rows]).pow(2).mean().backward()
    return tuple(any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in stage.parameters())
                 for stage in (model.stage0, model.stage1))


def test_with_a_layer0_share_both_stages_train_from_the_first_step() -> None:
    torch.manual_seed(0)
    model = build_tokenizer_model(TokenizerConfig(cascade=True, layer0_share=0.5)).train()  # no warm-up needed
    x = smooth_actions(64)
    for _ in range(3):
        assert stages_with_gradient(model, x) == (True, True)
    assert int(model.training_forwards) == 3 and int(model.stage1.quantizer.calibration_steps) == 3


def test_each_chunk_trains_one_stage_and_the_share_sets_how_many_train_layer0() -> None:
    torch.manual_seed(0)
    model = build_tokenizer_model(TokenizerConfig(cascade=True, layer0_share=0.3)).train()
    x = smooth_actions(4000)
    with torch.no_grad():
        recon, codes = model(x)
    layer0_rows = (recon == model.stage0.decode_from_indices(codes[..., :1])).all(dim=2).all(dim=1)
    assert abs(float(layer0_rows.float().mean()) - 0.3) < 0.03
    # one chunk trains one stage per step, layer 0's in about the share of the steps
    outcomes = [stages_with_gradient(model, x[:1]) for _ in range(40)]
    assert set(outcomes) == {(True, False), (False, True)}
    assert 4 <= outcomes.count((True, False)) <= 24


def test_a_layer0_share_after_a_warmup_keeps_layer0_training() -> None:
    torch.manual_seed(0)
    model = build_tokenizer_model(TokenizerConfig(cascade=True, layer0_warmup=1, layer0_share=0.5)).train()
    x = smooth_actions(64)
    assert stages_with_gradient(model, x) == (True, False)  # the warm-up: layer 0 alone
    assert stages_with_gradient(model, x) == (True, True)  # then both, where share 0 fixes layer 0


@pytest.mark.parametrize("options, match", [
    ({"cascade": True, "layer0_share": 1.0}, r"\[0, 1\)"),
    ({"cascade": True, "layer0_share": -0.1}, r"\[0, 1\)"),
    ({"cascade": False, "layer0_share": 0.5}, "set cascade=True"),
    ({"quantizer": "naive", "layer0_share": 0.5}, "set cascade=True"),
])
def test_bad_layer0_shares_are_refused(options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TokenizerConfig(**options)


def test_the_residual_scale_starts_at_the_first_residual_batch_quantile() -> None:
    torch.manual_seed(0)
    model = build_tokenizer_model(TokenizerConfig(cascade=True, layer0_warmup=1, **NINTH_PASS)).train()
    x = smooth_actions(16)
    model(x)
    model(x)
    model.eval()
    with torch.no_grad():
        coarse = model.stage0.decode_from_indices(model.stage0.encode(x))
    expected = torch.quantile((x - coarse).abs().reshape(-1, 7), RESIDUAL_QUANTILE, dim=0)
    torch.testing.assert_close(model.residual_scale, expected)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), batch=st.integers(1, 6))
def test_decode_equals_forward_in_eval_and_every_prefix_is_a_stage_sum(seed: int, batch: int) -> None:
    model = trained(seed)
    x = smooth_actions(batch, seed=seed + 100)
    with torch.no_grad():
        recon, codes = model(x)
        assert codes.shape == (batch, 8, 16, 8) and codes.dtype == torch.int64
        assert torch.equal(model.decode_from_indices(codes), recon)  # bit for bit
        assert torch.equal(model.decode_from_indices(codes[..., :1]),
                           model.stage0.decode_from_indices(codes[..., :1]))  # k = 1: the one-layer tokenizer
        for k in (2, 5, 8):
            expected = (model.stage0.decode_from_indices(codes[..., :1])
                        + model.stage1.decode_from_indices(codes[..., 1:k]) * model.residual_scale)
            assert torch.equal(model.decode_from_indices(codes[..., :k]), expected)


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**16), batch=st.integers(1, 6))
def test_the_default_recipe_decodes_as_its_forward_and_every_prefix_is_a_stage_sum(seed: int, batch: int) -> None:
    torch.manual_seed(seed)
    model = fit_smooth_actions(build_tokenizer_model(TokenizerConfig()), 6, seed, batch=32)  # robust: a cascade
    x = smooth_actions(batch, seed=seed + 100)
    with torch.no_grad():
        recon, codes = model(x)
        assert torch.equal(model.decode_from_indices(codes), recon)  # bit for bit: no share drawn in eval mode
        coarse = model.stage0.decode_from_indices(codes[..., :1])
        for k in range(2, 9):
            expected = coarse + model.stage1.decode_from_indices(codes[..., 1:k]) * model.residual_scale
            assert torch.equal(model.decode_from_indices(codes[..., :k]), expected)


def test_finer_prefixes_reconstruct_better_after_training() -> None:
    model = trained(steps=60)
    x = smooth_actions(64, seed=999)
    with torch.no_grad():
        codes = model.encode(x)
        errors = [float((model.decode_from_indices(codes[..., :k]) - x).pow(2).mean()) for k in (1, 2, 8)]
    assert errors[1] < errors[0] and errors[2] < errors[1], errors


@pytest.mark.parametrize("codes, match", [
    (torch.zeros(2, 8, 16, 3), "integer"),
    (torch.full((2, 8, 16, 3), 7), "out of range"),
    (torch.zeros(2, 8, 16, 9, dtype=torch.int64), "decodes 1..8"),
    (torch.zeros(2, 8, 15, 2, dtype=torch.int64), "hidden_dim"),
])
def test_bad_codes_are_refused(codes: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        trained().decode_from_indices(codes)


def test_save_and_read_give_the_same_cascade(tmp_path: Path) -> None:
    model = trained()
    x = smooth_actions(4, seed=7)
    with torch.no_grad():
        recon, codes = model(x)
    save_tokenizer(tmp_path / "tok", model)
    loaded = read_tokenizer(tmp_path / "tok")
    assert isinstance(loaded.model, CascadeRFSQAE)
    assert torch.equal(loaded.model.residual_scale, model.residual_scale)
    with torch.no_grad():
        assert torch.equal(loaded.model.decode_from_indices(codes), recon)
    assert tokenizer_identity(model) == tokenizer_identity(tmp_path / "tok") == loaded.identity


def test_train_tokenizer_writes_a_cascade_that_action_tokenizer_reads(tmp_path: Path) -> None:
    from rvq.config_cli import config_from
    from rvq.tokenizer import ActionTokenizer
    from rvq.training.tokenizer import TrainTokenizerConfig, train_tokenizer

    cfg = config_from(TrainTokenizerConfig, cascade=True, steps=8, eval_every=4, batch_size=32, device="cpu",
                      progress=False, out_dir=str(tmp_path / "run"))
    report = train_tokenizer(cfg)
    assert "cascade" in (tmp_path / "run" / "report.md").read_text().splitlines()[0]
    assert len(report["best"]["mse_by_layers"]) == 8 and report["best"]["decode_matches_forward"]
    tokenizer = ActionTokenizer.from_checkpoint(report["checkpoint"])
    assert isinstance(tokenizer.model, CascadeRFSQAE)
    raw = torch.randn(2, 8, 7) * 0.1
    codes = tokenizer.encode(raw)
    assert codes.shape == (2, 8, 16, 8)
    assert tokenizer.decode(codes).shape == (2, 8, 7)
