"""`linear_inverse` and `encoder_mlp`: an exactly invertible linear path through the tokenizer (issue 14)."""

from __future__ import annotations

import pytest
import torch

from rvq.rfsq import ActionRFSQAE, TokenizerConfig, load_tokenizer, save_tokenizer
from tests.unit.rfsq.helpers import calibrated, smooth_actions


def full_depth_error(model: ActionRFSQAE, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float(((model.decode_from_indices(model.encode(x)) - x) ** 2).mean())


@pytest.mark.parametrize("encoder_mlp", [True, False])
def test_an_untrained_linear_inverse_model_decodes_any_action_exactly(encoder_mlp: bool) -> None:
    torch.manual_seed(0)
    train = smooth_actions(64)
    model = calibrated("robust", train, linear_inverse=True, encoder_mlp=encoder_mlp)
    held_out = 2.5 * smooth_actions(32, seed=1)  # beyond the calibration data's range
    assert full_depth_error(model, train) < 1e-9
    assert full_depth_error(model, held_out) < 1e-9
    with torch.no_grad():  # the prefixes are not exact: the test can tell the two apart
        assert float(((model.decode_from_indices(model.encode(train)[..., :2]) - train) ** 2).mean()) > 1e-6
    torch.manual_seed(0)
    plain = calibrated("robust", train, encoder_mlp=encoder_mlp)
    assert full_depth_error(plain, train) > 1e-3  # without the option an untrained model is far from exact


def test_training_moves_the_zero_initialized_mlps_and_keeps_forward_equal_to_decode() -> None:
    torch.manual_seed(0)
    x = smooth_actions(64)
    model = ActionRFSQAE(linear_inverse=True, layer0_warmup=0, quantize_dropout=0.5)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(3):
        recon, _ = model(x)
        loss = ((recon - x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    for name in ("encoder.2.weight", "decoder.2.weight", "coarse_decoder.2.weight"):
        assert model.get_parameter(name).abs().sum() > 0, name  # the zero start is not a frozen one
    model.eval()
    with torch.no_grad():
        recon, codes = model(x)
        assert torch.equal(recon, model.decode_from_indices(codes))


def test_a_linear_encoder_has_no_mlp_and_round_trips_through_a_checkpoint(tmp_path) -> None:
    torch.manual_seed(0)
    x = smooth_actions(16)
    model = calibrated("robust", x, encoder_mlp=False, linear_inverse=True)
    assert not any(name.startswith("encoder.") for name, _ in model.named_parameters())
    save_tokenizer(tmp_path / "tok", model)
    loaded = load_tokenizer(tmp_path / "tok")
    assert (loaded.config.encoder_mlp, loaded.config.linear_inverse) == (False, True)
    with torch.no_grad():
        assert torch.equal(loaded.decode_from_indices(loaded.encode(x)), model.decode_from_indices(model.encode(x)))


def test_the_options_need_the_linear_paths_and_old_configs_load_without_them() -> None:
    with pytest.raises(ValueError, match="linear_inverse=True needs the linear paths: set linear_skip=True"):
        TokenizerConfig(linear_skip=False, linear_inverse=True)
    with pytest.raises(ValueError, match="encoder_mlp=False needs the linear paths"):
        TokenizerConfig(linear_skip=False, encoder_mlp=False)
    with pytest.raises(ValueError, match="linear_inverse needs hidden_dim >= action_dim"):
        TokenizerConfig(hidden_dim=4, action_dim=7, linear_inverse=True)
    old = {k: v for k, v in TokenizerConfig().to_dict().items() if k not in ("encoder_mlp", "linear_inverse")}
    legacy = TokenizerConfig.from_dict(old)
    assert (legacy.encoder_mlp, legacy.linear_inverse) == (True, False)


def test_a_half_precision_model_decodes_finite_actions() -> None:
    torch.manual_seed(0)
    x = smooth_actions(16)
    model = calibrated("robust", x, linear_inverse=True).to(torch.bfloat16)
    with torch.no_grad():
        out = model.decode_from_indices(model.encode(x.to(torch.bfloat16)))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert float(((out.float() - x) ** 2).mean()) < 1e-2  # bf16's precision, not atanh's infinity
