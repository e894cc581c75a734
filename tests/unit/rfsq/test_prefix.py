"""Prefix-decodable training (quantize dropout inside the model's training-mode forward)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rvq.rfsq import ActionRFSQAE, TokenizerConfig
from tests.unit.rfsq.helpers import fit_smooth_actions, smooth_actions


def prefix_trained(seed: int, quantize_dropout: float = 1.0, steps: int = 5, **config) -> ActionRFSQAE:
    """A robust tokenizer after a few optimizer steps with quantize dropout (weights and buffers move)."""
    torch.manual_seed(seed)
    model = ActionRFSQAE(quantizer="robust", quantize_dropout=quantize_dropout, **config)
    return fit_smooth_actions(model, steps, seed)


@given(seed=st.integers(0, 2**16), batch=st.integers(1, 8))
def test_prefix_training_leaves_decode_equal_to_forward_in_eval(seed: int, batch: int) -> None:
    model = prefix_trained(seed)
    x = smooth_actions(batch, seed=seed + 100)
    with torch.no_grad():
        recon, codes = model(x)
        assert torch.equal(model.decode_from_indices(codes), recon)  # bit for bit: no dropout in eval mode
        assert torch.equal(model(x)[0], recon)


@given(seed=st.integers(0, 2**16), k=st.integers(1, 8))
def test_every_prefix_of_a_prefix_trained_model_decodes_within_its_bound(seed: int, k: int) -> None:
    model = prefix_trained(seed)
    z = model.encode_latent(smooth_actions(16, seed=seed + 7)).detach()
    codes = model.quantizer.encode(z)
    error = (z - model.quantizer.decode(codes[..., :k])).abs()
    assert bool((error <= model.quantizer.latent_error_bound(z, num_layers=k) + 4e-7).all())


def test_training_forward_reconstructs_each_chunk_from_its_drawn_prefix() -> None:
    model = prefix_trained(0, steps=1).train()
    x = smooth_actions(6)
    keep = torch.tensor([1, 2, 3, 5, 7, 8])
    with torch.no_grad():
        z = model.encode_latent(x)
        z_hat, codes = model.quantizer(z, keep_layers=keep)  # calibrates, then the buffers are what decode uses
        model.eval()
        for b, k in enumerate(keep.tolist()):
            expected = model.quantizer.decode(codes[b : b + 1, ..., :k])[0]
            assert torch.allclose(z_hat[b], expected, atol=1e-6), (b, k)
    assert torch.equal(codes, model.quantizer.encode(z))  # codes: always all layers


def test_dropout_draws_prefixes_at_the_configured_rate() -> None:
    torch.manual_seed(0)
    model = ActionRFSQAE(quantize_dropout=0.5)
    keep = model._prefix_lengths(20000, torch.device("cpu"))
    truncated = keep < 8
    assert truncated.float().mean().item() == pytest.approx(0.5, abs=0.02)
    assert set(keep[truncated].tolist()) == set(range(1, 8))  # k uniform in 1..L-1
    assert ActionRFSQAE(quantize_dropout=0.0, coarse_decoder=False)._prefix_lengths(4, torch.device("cpu")) is None


def test_quantize_dropout_is_validated_and_old_configs_mean_no_dropout_no_skip() -> None:
    with pytest.raises(ValueError, match="quantize_dropout must be in"):
        TokenizerConfig(quantize_dropout=1.5)
    legacy = TokenizerConfig.from_dict({"quantizer": "robust"})  # a checkpoint from before these fields
    assert legacy.quantize_dropout == 0.0 and legacy.linear_skip is False
    assert "encoder_skip.weight" not in ActionRFSQAE.from_config(legacy).state_dict()
    assert "encoder_skip.weight" in ActionRFSQAE().state_dict()


def test_a_checkpoint_naming_a_removed_option_loads_at_its_neutral_value_and_is_refused_at_another() -> None:
    neutral = {"quantizer": "robust", "prefix_conditioned": False, "prefix_weighting": "uniform",
               "prefix_encoder_grad": 1.0, "compand_tails": False, "layer0_quantile": 0.0, "grid_std_range": None}
    assert TokenizerConfig.from_dict(neutral) == TokenizerConfig.from_dict({"quantizer": "robust"})
    for name, value in [("prefix_conditioned", True), ("prefix_weighting", "inverse"), ("prefix_encoder_grad", 0.1),
                        ("compand_tails", True), ("layer0_quantile", 0.02), ("grid_std_range", 1.5)]:
        with pytest.raises(ValueError, match=f"removed from rvq: {{'{name}'.*docs/decisions.md"):
            TokenizerConfig.from_dict({**neutral, name: value})
    with pytest.raises(TypeError):  # not a field any more
        TokenizerConfig(prefix_conditioned=True)


def trained_and_decoded_views(model: ActionRFSQAE, x: torch.Tensor, keep: torch.Tensor):
    """The training forward's reconstruction with prefixes `keep` `[B]`, checked chunk by chunk against decoding its
    first k codes in eval mode; returns `(codes, [(b, k, decoded from codes)])`."""
    with torch.no_grad():
        model.train()
        z_hat, codes = model.quantizer(model.encode_latent(x), keep_layers=keep)
        trained_view = model.decode_latent(z_hat, keep)
        model.eval()
        decoded = []
        for b, k in enumerate(keep.tolist()):
            from_codes = model.decode_from_indices(codes[b : b + 1, ..., :k])[0]
            assert torch.allclose(trained_view[b], from_codes, atol=1e-5), (b, k)
            decoded.append((b, k, from_codes))
    return codes, decoded


def test_coarse_decoder_decodes_layer_0_alone_in_training_and_from_codes_and_nothing_else() -> None:
    model = prefix_trained(2, steps=1, coarse_decoder=True)
    with torch.no_grad():  # a coarse decoder that differs visibly from the full one
        for parameter in [*model.coarse_decoder.parameters(), *model.coarse_decoder_skip.parameters()]:
            parameter.add_(torch.randn_like(parameter))
    x = smooth_actions(6, seed=4)
    codes, decoded = trained_and_decoded_views(model, x, torch.tensor([1, 2, 3, 1, 7, 8]))
    with torch.no_grad():
        for b, k, from_codes in decoded:
            z_k = model.quantizer.decode(codes[b : b + 1, ..., :k])
            full_decoder = model.decoder(z_k) + model.decoder_skip(z_k)
            if k == 1:
                assert torch.allclose(from_codes, model.coarse_decoder(z_k)[0] + model.coarse_decoder_skip(z_k)[0])
                assert not torch.allclose(from_codes, full_decoder[0], atol=1e-3)
            else:
                assert torch.allclose(from_codes, full_decoder[0], atol=1e-6)
        recon, codes = model(x)  # eval mode: all layers, the full decoder
        assert torch.equal(model.decode_from_indices(codes), recon)


def test_a_one_layer_tokenizer_without_coarse_decoder_decodes_codes_as_its_forward() -> None:
    model = prefix_trained(5, quantize_dropout=0.2, steps=5, num_layers=1, coarse_decoder=False)
    x = smooth_actions(4, seed=9)
    with torch.no_grad():
        recon, codes = model(x)
        assert codes.shape[-1] == 1
        assert torch.equal(model.decode_from_indices(codes), recon)


def test_an_untrained_coarse_decoder_starts_as_the_full_decoder() -> None:
    model = ActionRFSQAE(coarse_decoder=True).eval()
    z = torch.rand(3, 8, 16) * 2 - 1
    assert torch.equal(model.decode_latent(z, 1), model.decode_latent(z, 2))
    assert {"coarse_decoder.0.weight", "coarse_decoder_skip.weight"} <= set(model.state_dict())
    assert not any(k.startswith("coarse") for k in ActionRFSQAE(coarse_decoder=False).state_dict())


@given(seed=st.integers(0, 2**16), batch=st.integers(1, 8))
def test_coarse_decoder_and_warmup_leave_decode_equal_to_forward_in_eval(seed: int, batch: int) -> None:
    model = prefix_trained(seed, quantize_dropout=0.5, steps=4, coarse_decoder=True, layer0_warmup=2)
    x = smooth_actions(batch, seed=seed + 100)
    with torch.no_grad():
        recon, codes = model(x)
        assert torch.equal(model.decode_from_indices(codes), recon)


def test_layer0_warmup_keeps_one_layer_for_the_first_forwards_and_resumes_from_the_state_dict() -> None:
    torch.manual_seed(0)
    model = ActionRFSQAE(quantize_dropout=0.0, layer0_warmup=3).train()
    cpu = torch.device("cpu")
    seen = []
    for _ in range(5):
        seen.append(model._prefix_lengths(4, cpu))
        model(smooth_actions(4))  # a training forward: the quantizer counts it
    assert [None if k is None else k.tolist() for k in seen] == [[1] * 4] * 3 + [None, None]
    resumed = ActionRFSQAE(quantize_dropout=0.0, layer0_warmup=4).train()
    resumed.load_state_dict(model.state_dict())  # 5 forwards seen: past a warm-up of 4
    assert resumed._prefix_lengths(4, cpu) is None
    model.eval()
    with torch.no_grad():
        model(smooth_actions(4))  # eval forwards are not counted
    assert int(model.quantizer.calibration_steps) == 5


def test_coarse_decoder_and_warmup_are_validated() -> None:
    untrainable = ActionRFSQAE(coarse_decoder=True, quantize_dropout=0.0).train()
    with pytest.raises(ValueError, match="coarse_decoder is trained only on chunks decoded from layer 0"):
        untrainable(smooth_actions(2))
    with torch.no_grad():  # a loaded model of this config still decodes (inference needs no training option)
        untrainable.eval()(smooth_actions(2))
    ActionRFSQAE(coarse_decoder=True, quantize_dropout=0.0, layer0_warmup=10).train()(smooth_actions(2))
    with pytest.raises(ValueError, match="layer0_warmup must be >= 0"):
        TokenizerConfig(layer0_warmup=-1)
    legacy = TokenizerConfig.from_dict({"quantizer": "robust"})
    assert legacy.coarse_decoder is False and legacy.layer0_warmup == 0
    from rvq.baselines.residual_fsq import ResidualFSQAE

    for options in ({"coarse_decoder": True}, {"layer0_warmup": 5}):
        with pytest.raises(ValueError, match="ResidualFSQ drops layers itself"):
            ResidualFSQAE(TokenizerConfig(**options))
