"""Tail companding and quantile-calibrated layer 0 (issue 14 options): exact inverses, decode == forward, every
prefix within its bound, checkpoints that keep them, and old configs that mean neither."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rvq.rfsq import ActionRFSQAE, TokenizerConfig, load_tokenizer, save_tokenizer
from rvq.rfsq.compand import compress_tails, expand_tails
from tests.unit.rfsq.helpers import smooth_actions


def test_compression_is_the_identity_inside_and_exactly_inverted_outside() -> None:
    u = torch.linspace(-50, 50, 100001, dtype=torch.float64)
    y = compress_tails(u)
    torch.testing.assert_close(expand_tails(y), u, rtol=1e-12, atol=1e-12)
    inside = u.abs() <= 1
    assert torch.equal(y[inside], u[inside]) and bool((y[~inside].abs() < u[~inside].abs()).all())
    assert bool((torch.diff(y) > 0).all())  # strictly increasing: no two actions share a compressed value
    assert abs(compress_tails(torch.tensor(7.2)).item() - (1 + 1.9740810260220096)) < 1e-6  # 1 + log(7.2)


def tailed_actions(batch: int, seed: int) -> torch.Tensor:
    """`smooth_actions` with one arm dimension stretched to ±5: rare large values beyond the 99th percentile."""
    x = smooth_actions(batch, seed=seed)
    x[..., 5] = x[..., 5] * 5
    return x


def trained(seed: int, steps: int = 4, **config) -> ActionRFSQAE:
    torch.manual_seed(seed)
    model = ActionRFSQAE(quantizer="robust", quantize_dropout=0.5, compand_tails=True, layer0_quantile=0.02,
                         prefix_weighting="inverse", **config).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(steps):
        x = tailed_actions(64, seed + step)
        loss = (model(x)[0] - x).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), k=st.integers(1, 8))
def test_decode_equals_forward_and_every_prefix_is_within_its_bound(seed: int, k: int) -> None:
    model = trained(seed)
    x = tailed_actions(8, seed + 100)
    with torch.no_grad():
        recon, codes = model(x)
        assert torch.equal(model.decode_from_indices(codes), recon)
        z = model.encode_latent(x)
        error = (z - model.quantizer.decode(codes[..., :k])).abs()
        assert bool((error <= model.quantizer.latent_error_bound(z, num_layers=k) + 4e-7).all())


def test_quantile_layer0_is_narrower_than_the_range_and_tails_fall_in_edge_cells() -> None:
    z = torch.cat([torch.rand(990, 16) * 0.2 - 0.1, torch.full((10, 16), 0.9)])  # a bulk near 0, 1% far tail
    by_range = ActionRFSQAE(quantizer="robust").quantizer.train()
    by_quantile = ActionRFSQAE(quantizer="robust", layer0_quantile=0.02).quantizer.train()
    for quantizer in (by_range, by_quantile):
        quantizer.calibrate_layer(0, z)
    reach = lambda q: q._coverage(q.scale[0])  # noqa: E731  half-width layer 0 covers
    assert bool((reach(by_quantile) < reach(by_range) / 3).all())
    codes = by_quantile.eval().encode(z)[..., 0]
    assert bool((codes[-10:] == by_quantile.num_levels - 1).all())  # the tail: top edge cell
    error = (z - by_quantile.decode(by_quantile.encode(z))).abs()
    assert error.max().item() < 1e-4  # later layers, widened for edge cells, still reach the tail


def test_checkpoints_keep_both_options_and_old_configs_mean_neither(tmp_path) -> None:
    model = trained(3, steps=2)
    save_tokenizer(tmp_path / "t.pt", model)
    loaded = load_tokenizer(tmp_path / "t.pt")
    assert loaded.config.compand_tails and loaded.config.layer0_quantile == 0.02
    x = tailed_actions(4, 9)
    with torch.no_grad():
        assert torch.equal(loaded(x)[0], model(x)[0])
    legacy = TokenizerConfig.from_dict({"quantizer": "robust"})
    assert legacy.compand_tails is False and legacy.layer0_quantile == 0.0
    with pytest.raises(ValueError, match=r"layer0_quantile must be in \[0, 0.5\)"):
        TokenizerConfig(layer0_quantile=0.5)
