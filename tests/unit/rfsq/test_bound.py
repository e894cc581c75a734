"""Certified completion intervals (`rvq.rfsq.bound`): every completion of a prefix of codes decodes inside the
interval, for every tokenizer architecture that decodes from codes; the interval tightens with depth."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rvq.rfsq import NotDecodableError, TokenizerConfig, build_tokenizer_model
from rvq.rfsq.bound import PrefixIntervals
from tests.unit.rfsq.helpers import fit_smooth_actions, smooth_actions

ARCHITECTURES = {
    "robust cascade": {},
    "robust single": {"cascade": False},
    "robust single, seed architecture": {"cascade": False, "linear_skip": False, "coarse_decoder": False},
    "naive": {"quantizer": "naive"},
}


def tokenizer(name: str, layers: int, levels: int, seed: int, train_steps: int = 0):
    torch.manual_seed(seed)
    config = TokenizerConfig(num_layers=layers, num_levels=levels, hidden_dim=8, mlp_dim=32, layer0_warmup=2,
                             **ARCHITECTURES[name])
    model = build_tokenizer_model(config)
    if train_steps:
        return fit_smooth_actions(model, train_steps, seed)
    model.train()
    with torch.no_grad():
        for step in range(3):
            model(smooth_actions(32, seed=seed + step))
    return model.eval()


@pytest.mark.parametrize("name", ARCHITECTURES)
@given(seed=st.integers(0, 2**16), layers=st.integers(3, 6), levels=st.integers(3, 8), data=st.data())
def test_every_completion_decodes_inside_the_interval(name: str, seed: int, layers: int, levels: int, data) -> None:
    model = tokenizer(name, layers, levels, seed)
    x = smooth_actions(4, seed=seed + 100) * 1.2  # a little beyond the calibration data too
    codes = model.encode(x)
    k = data.draw(st.integers(0, layers), label="known layers")
    lo, hi = model.completion_interval(codes[..., :k])
    assert lo.shape == hi.shape == x.shape and bool((lo <= hi).all())
    gen = torch.Generator().manual_seed(seed)
    tail = codes[..., k:]
    completions = [tail, torch.zeros_like(tail), torch.full_like(tail, levels - 1)]
    completions += [torch.randint(0, levels, tail.shape, generator=gen) for _ in range(8)]
    if k == 0:  # layer 0 unknown too: its edge codes widen the later layers most
        completions += [torch.cat([torch.full_like(tail[..., :1], edge), torch.randint(0, levels, tail[..., 1:].shape,
                                                                                       generator=gen)], dim=-1)
                        for edge in (0, levels - 1)]
    with torch.no_grad():
        for completion in completions:
            full = model.decode_from_indices(torch.cat([codes[..., :k], completion], dim=-1))
            assert bool(((full >= lo) & (full <= hi)).all()), f"k={k}: {float((lo - full).max())}, " \
                                                              f"{float((full - hi).max())}"


@pytest.mark.parametrize("name", ["robust cascade", "robust single"])
def test_robust_interval_shrinks_with_depth_and_is_tight_at_full_depth(name: str) -> None:
    model = tokenizer(name, 6, 7, seed=3, train_steps=30)
    codes = model.encode(smooth_actions(8, seed=5))
    widths = []
    for k in range(1, 7):
        lo, hi = model.completion_interval(codes[..., :k])
        widths.append(float((hi - lo).amax()))
    assert all(b < a for a, b in zip(widths[1:], widths[2:])), widths  # from layer 2 on, every layer halves or better
    assert widths[-1] < 1e-4  # all layers known: only the float slack is left
    assert widths[2] < widths[1] / 3


def test_naive_bound_stays_wide_its_later_layers_could_add_a_grid_step_each() -> None:
    model = tokenizer("naive", 6, 7, seed=3)
    codes = model.encode(smooth_actions(8, seed=5))
    lo1, hi1 = model.completion_interval(codes[..., :1])
    lo5, hi5 = model.completion_interval(codes[..., :5])
    assert float((hi5 - lo5).amax()) > 0.1 and float((hi1 - lo1).amax()) > float((hi5 - lo5).amax())


def test_refusals() -> None:
    model = tokenizer("robust single", 4, 5, seed=0)
    with pytest.raises(ValueError, match="codes have 5 layers"):
        model.completion_interval(torch.zeros(1, 8, 8, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="out of range"):
        model.completion_interval(torch.full((1, 8, 8, 2), 5, dtype=torch.long))
    model.decoder[1] = torch.nn.GELU()  # not monotone: no box maps to the interval of its ends
    with pytest.raises(NotImplementedError, match="GELU"):
        model.completion_interval(torch.zeros(1, 8, 8, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="eval mode"):
        PrefixIntervals(tokenizer("robust single", 4, 5, seed=0).train())
    layernorm = build_tokenizer_model(TokenizerConfig(quantizer="layernorm", num_layers=4, hidden_dim=8)).eval()
    with pytest.raises(NotDecodableError):
        layernorm.completion_interval(torch.zeros(1, 8, 8, 2, dtype=torch.long))


@pytest.mark.parametrize("name", ["robust cascade", "robust single", "naive"])
def test_the_intervals_prefix_is_the_models_decode_bit_for_bit(name: str) -> None:
    model = tokenizer(name, 6, 7, seed=2, train_steps=10)
    codes = model.encode(smooth_actions(5, seed=9))
    intervals = PrefixIntervals(model)
    for k in range(1, 7):
        prefix, lo, hi = intervals(codes[..., :k])
        assert torch.equal(prefix, model.decode_from_indices(codes[..., :k]))  # what the policy runs
        assert bool((lo <= prefix).all() and (prefix <= hi).all())
    assert intervals(codes[..., :0])[0] is None
