"""Hypothesis properties of the action tokenizer (issue: tokenizer foundation)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from rvq.rfsq import ActionRFSQAE, NotDecodableError
from tests.unit.rfsq.helpers import calibrated, smooth_actions

finite = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def action_batches(draw: st.DrawFn, elements: st.SearchStrategy = finite) -> torch.Tensor:
    batch = draw(st.integers(1, 4))
    chunk = draw(st.integers(1, 9))
    values = draw(arrays("float32", (batch, chunk, 7), elements=elements))
    return torch.from_numpy(values)


@pytest.mark.parametrize("quantizer", ["naive", "robust"])
@given(x=action_batches(), seed=st.integers(0, 2**16))
def test_decode_of_encode_equals_forward(quantizer: str, x: torch.Tensor, seed: int) -> None:
    torch.manual_seed(seed)
    model = calibrated(quantizer, smooth_actions(64, seed=seed))
    with torch.no_grad():
        recon, codes = model(x)
        decoded = model.decode_from_indices(model.encode(x))
    assert codes.shape == (x.shape[0], x.shape[1], 16, 8) and codes.dtype == torch.int64
    assert int(codes.min()) >= 0 and int(codes.max()) < 7
    assert torch.equal(codes, model.encode(x))
    assert (decoded - recon).abs().max().item() <= 1e-5


@given(x=action_batches(st.floats(-10, 10, allow_nan=False, allow_infinity=False, width=32)))
def test_eval_output_does_not_depend_on_the_batch(x: torch.Tensor) -> None:
    """Within ten times LIBERO's action range: far beyond it the latent's rounding (batched and single matmuls round
    differently, about 1e-6 of the values) can carry a latent across a grid boundary, a code and its grid step with
    it (seen once in CI on actions of 1e4)."""
    model = calibrated("robust", smooth_actions(64))
    with torch.no_grad():
        z = model.encode_latent(x)
        # the quantizer is elementwise given the latent: exactly batch-independent
        codes = model.quantizer.encode(z)
        assert torch.equal(codes, torch.cat([model.quantizer.encode(z[i : i + 1]) for i in range(x.shape[0])]))
        # end to end, only BLAS rounding of batched vs single matmuls may differ
        together = model(x)[0]
        alone = torch.cat([model(x[i : i + 1])[0] for i in range(x.shape[0])])
    assert torch.allclose(together, alone, atol=1e-4)


def test_robust_layers_normalized_and_all_effective_naive_dead() -> None:
    """Property 2: the contrast between robust (every layer effective) and naive (dead layers)."""
    data = smooth_actions(512, seed=1)
    robust, naive = calibrated("robust", data), calibrated("naive", data)
    z = robust.encode_latent(data).detach()
    rms = [r.pow(2).mean().sqrt().item() for r in robust.quantizer.residuals(z)]
    normalized = robust.quantizer.normalized_residuals(z)
    for layer in range(1, 8):
        assert 0.8 < normalized[layer].std().item() < 1.2, (layer, normalized[layer].std().item())
    # layer 0 is range-calibrated: nothing on the calibration data falls outside its grid cells
    reach = robust.quantizer.grid_std_range() * 7 / 6
    assert normalized[0].abs().max().item() <= reach * (1 + 1e-5)
    assert 0.3 < normalized[0].std().item() <= 1.05
    for layer in range(8):  # each layer cuts the residual RMS at least 4x (a uniform residual: 7x)
        assert rms[layer + 1] < rms[layer] / 4, (layer, rms)

    z_naive = naive.encode_latent(data).detach()
    naive_rms = [r.pow(2).mean().sqrt().item() for r in naive.quantizer.residuals(z_naive)]
    assert naive_rms[1] < naive_rms[0]
    for layer in range(1, 8):  # dead: after layer 0 nothing changes
        assert naive_rms[layer + 1] == pytest.approx(naive_rms[1], rel=1e-6)
    assert rms[8] < naive_rms[8] / 1000


@given(
    z=arrays("float32", (64, 16), elements=st.floats(-1, 1, width=32)),
    calibration=st.sampled_from(["uniform", "narrow", "none"]),
    k=st.integers(1, 8),
)
def test_latent_error_bound(z, calibration: str, k: int) -> None:
    """Property 3: |z - decode(encode(z)[..., :k])| <= relu(|z - c0| - a0 n/(n-1)) + a_{k-1}/(n-1)."""
    z = torch.from_numpy(z)
    model = ActionRFSQAE(quantizer="robust")
    quantizer = model.quantizer
    if calibration != "none":
        quantizer.train()
        spread = 1.0 if calibration == "uniform" else 0.2
        with torch.no_grad():
            quantizer(torch.rand(256, 16) * 2 * spread - spread)
    quantizer.eval()
    codes = quantizer.encode(z)
    error = (z - quantizer.decode(codes[..., :k])).abs()
    bound = quantizer.latent_error_bound(z, num_layers=k)
    assert bool((error <= bound + 4e-7).all()), (error - bound).max()


def test_bound_is_tight_enough_to_matter() -> None:
    """On in-range latents the 8-layer bound is a tiny fraction of the first grid step."""
    quantizer = ActionRFSQAE(quantizer="robust").quantizer.eval()
    z = torch.rand(128, 16) * 1.8 - 0.9
    assert quantizer.latent_error_bound(z).max().item() < 1e-5


@given(x=action_batches())
def test_coarse_decoding_every_k(x: torch.Tensor) -> None:
    model = calibrated("robust", smooth_actions(64))
    codes = model.encode(x)
    assert codes[..., :3].shape == (x.shape[0], x.shape[1], 16, 3)
    for k in range(1, 9):
        assert model.decode_from_indices(codes[..., :k]).shape == x.shape


def test_coarse_error_decreases_with_k_for_robust() -> None:
    """Property 5: latent error (mean over a batch) strictly decreases as more layers are decoded."""
    data = smooth_actions(256, seed=3)
    model = calibrated("robust", data)
    z = model.encode_latent(data).detach()
    codes = model.quantizer.encode(z)
    errors = [(model.quantizer.decode(codes[..., :k]) - z).pow(2).mean().item() for k in range(1, 9)]
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    with torch.no_grad():
        action_errors = [(model.decode_from_indices(codes[..., :k]) - model(data)[0]).pow(2).mean().item()
                         for k in range(1, 9)]
    assert action_errors[-1] == pytest.approx(0.0, abs=1e-10)
    assert action_errors[0] > action_errors[3] > action_errors[-1]


def test_layernorm_variant_forward_only() -> None:
    data = smooth_actions(32)
    model = calibrated("layernorm", data)
    recon, codes = model(data)
    assert recon.shape == data.shape and codes.shape == (32, 8, 16, 8)
    with pytest.raises(NotDecodableError, match="per-token normalization"):
        model.decode_from_indices(codes)


def test_seed_api_flags() -> None:
    assert ActionRFSQAE(use_layernorm=True).config.quantizer == "robust"
    assert ActionRFSQAE(use_layernorm=False).config.quantizer == "naive"
    assert ActionRFSQAE(quantizer="layernorm").decodable is False


def test_straight_through_gradients_reach_the_encoder() -> None:
    model = ActionRFSQAE().train()
    recon, _ = model(smooth_actions(16))
    recon.pow(2).mean().backward()
    assert model.encoder[0].weight.grad is not None and model.encoder[0].weight.grad.abs().sum() > 0


def test_calibration_under_no_grad_and_frozen_in_eval() -> None:
    model = ActionRFSQAE().train()
    with torch.no_grad():
        model(smooth_actions(32))
    steps = int(model.quantizer.calibration_steps)
    assert steps == 1
    before = model.quantizer.scale.clone()
    model.eval()
    with torch.no_grad():
        model(smooth_actions(32, seed=5) * 0.1)
    assert torch.equal(before, model.quantizer.scale)
    assert int(model.quantizer.calibration_steps) == steps


def test_narrow_calibration_never_clips_the_tanh_range() -> None:
    """Edge cells of layer 0 widen later layers: a latent anywhere in (-1, 1) is still reconstructed
    to the last layer's precision, even when layer 0 was calibrated on a much narrower range."""
    quantizer = ActionRFSQAE(quantizer="robust").quantizer.train()
    with torch.no_grad():
        quantizer(torch.rand(512, 16) * 0.2 - 0.1)
    quantizer.eval()
    z = torch.rand(4096, 16) * 1.998 - 0.999
    error = (z - quantizer.decode(quantizer.encode(z))).abs()
    assert error.max().item() < 1e-4
    inner = (z.abs() < 0.05)
    assert error[inner].max().item() < 1e-6
