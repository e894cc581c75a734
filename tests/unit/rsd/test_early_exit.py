"""Early exit (`rvq.rsd.early_exit_decode` with an `ExitRule`): the layers it decodes are greedy's, and the action it
executes is certified within the tolerance of the full greedy decode's, gripper included."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rvq.data.normalize import ActionNormalizer
from rvq.models import MainConfig, MainModel
from rvq.processors import binarize_gripper
from rvq.rfsq import TokenizerConfig, build_tokenizer_model
from rvq.rsd import ExitRule, ExitSummary, decode_at_depths, early_exit_decode, greedy_decode
from rvq.tokenizer import ActionTokenizer
from tests.unit.rfsq.helpers import fit_smooth_actions, smooth_actions

LAYERS, LEVELS = 5, 5


def make_tokenizer(seed: int, cascade: bool = True) -> ActionTokenizer:
    torch.manual_seed(seed)
    config = TokenizerConfig(num_layers=LAYERS, num_levels=LEVELS, hidden_dim=8, mlp_dim=32, layer0_warmup=2,
                             cascade=cascade)
    model = fit_smooth_actions(build_tokenizer_model(config), 20, seed)
    raw = smooth_actions(256, seed=seed).reshape(-1, 7).numpy() * np.array([0.02, 0.02, 0.03, 0.1, 0.1, 0.2, 1.0])
    return ActionTokenizer(model, ActionNormalizer.fit(raw))


def make_main(tokenizer: ActionTokenizer, seed: int) -> MainModel:
    torch.manual_seed(seed)
    return MainModel(MainConfig(10, tokenizer.tokens, width=32, depth=1, heads=4, dropout=0.0)).eval()


def executed(tokenizer: ActionTokenizer, normalized: torch.Tensor) -> np.ndarray:
    return binarize_gripper(tokenizer.normalizer.unnormalize(normalized).numpy())


@given(seed=st.integers(0, 2**10), cascade=st.booleans(), tolerance=st.sampled_from([1e-4, 1e-3, 1e-2, 0.1, 10.0]))
def test_executed_action_is_certified_within_tolerance_of_full_greedy(seed, cascade, tolerance) -> None:
    tokenizer = make_tokenizer(seed % 4, cascade)
    main = make_main(tokenizer, seed)
    features = torch.randn(6, 10, generator=torch.Generator().manual_seed(seed))
    greedy = greedy_decode(main, features)
    codes, stats = early_exit_decode(main, features, ExitRule(tokenizer, tolerance=tolerance))
    full = executed(tokenizer, tokenizer.decode_normalized(greedy))
    normalized = decode_at_depths(tokenizer, codes, stats)
    early = executed(tokenizer, normalized)
    for b, d in enumerate(stats.depth.tolist()):
        assert torch.equal(codes[b, ..., :d], greedy[b, ..., :d])  # greedy's own layers
        # the rule's decode is the tokenizer's, bit for bit
        assert torch.equal(normalized[b], tokenizer.decode_normalized(codes[b:b + 1, ..., :d])[0])
        assert bool((codes[b, ..., d:] == 0).all())
        gap = np.abs(early[b] - full[b])
        assert gap[:, -1].max() == 0.0  # the binarized gripper never flips
        if d < LAYERS:
            assert stats.bound[b] <= tolerance and gap[:, :-1].max() <= stats.bound[b]
        else:
            assert gap.max() == 0.0 and stats.bound[b] == 0.0
    assert stats.main_passes == int(stats.depth.max())


def test_depth_follows_the_tolerance() -> None:
    tokenizer = make_tokenizer(0)
    main = make_main(tokenizer, 1)
    features = torch.randn(16, 10)
    depths = []
    for tolerance in (1e-6, 1e-3, 1e-2, 1e6):
        _, stats = early_exit_decode(main, features, ExitRule(tokenizer, tolerance=tolerance, gripper_split=None))
        depths.append(float(stats.depth.float().mean()))
    assert depths == sorted(depths, reverse=True) and depths[0] == LAYERS and depths[-1] == 1.0


def test_fixed_depth_stops_there_and_reports_its_bound() -> None:
    tokenizer = make_tokenizer(0)
    main = make_main(tokenizer, 1)
    features = torch.randn(3, 10)
    greedy = greedy_decode(main, features)
    for depth in range(1, LAYERS + 1):
        codes, stats = early_exit_decode(main, features, ExitRule(tokenizer, depth=depth))
        assert stats.depth.tolist() == [depth] * 3 and stats.main_passes == depth
        assert torch.equal(codes[..., :depth], greedy[..., :depth])
        assert bool((stats.bound >= 0).all()) and (depth < LAYERS or bool((stats.bound == 0).all()))
    summary = ExitSummary()
    summary.add(stats)
    assert summary.to_dict()["mean_depth"] == LAYERS and summary.to_dict()["depth_counts"] == {str(LAYERS): 3}
    assert summary.to_dict()["depth_per_chunk"] == [LAYERS] * 3 and summary.to_dict()["bound_per_chunk"] == [0.0] * 3


def test_bad_rules_are_refused() -> None:
    tokenizer = make_tokenizer(0)
    with pytest.raises(ValueError, match="needs a tolerance, a depth or both"):
        ExitRule(tokenizer)
    for bad in (float("nan"), -1e-3, float("inf"), True):
        with pytest.raises(ValueError, match="tolerance must be a finite number >= 0"):
            ExitRule(tokenizer, tolerance=bad)
    for bad in (0, LAYERS + 1, 2.5):
        with pytest.raises(ValueError, match=rf"exit depth must be a whole number of layers in \[1, {LAYERS}\]"):
            ExitRule(tokenizer, depth=bad)
    main = make_main(tokenizer, 1)
    with pytest.raises(ValueError, match="features have 3 dims"):
        early_exit_decode(main, torch.randn(2, 3), ExitRule(tokenizer, depth=1))
    with pytest.raises(ValueError, match="floating point"):
        early_exit_decode(main, torch.ones(2, 10, dtype=torch.long), ExitRule(tokenizer, depth=1))


def test_depths_that_cannot_certify_the_tolerance_are_not_checked_and_nothing_changes() -> None:
    from dataclasses import replace

    tokenizer = make_tokenizer(1)
    main = make_main(tokenizer, 2)
    features = torch.randn(32, 10)
    for tolerance in (1e-4, 1e-3, 1e-2):
        rule = ExitRule(tokenizer, tolerance=tolerance)
        checked_everywhere = replace(rule)
        object.__setattr__(checked_everywhere, "hopeless", frozenset())
        codes, stats = early_exit_decode(main, features, rule)
        _, reference = early_exit_decode(main, features, checked_everywhere)
        assert torch.equal(stats.depth, reference.depth)
        for k in rule.hopeless:  # no chunk could have stopped there
            _, bound, _ = checked_everywhere(greedy_decode(main, features)[..., :k])
            assert bool((bound > tolerance).all())
    assert ExitRule(tokenizer, tolerance=1e-4).hopeless >= ExitRule(tokenizer, tolerance=1e-2).hopeless
    assert len(ExitRule(tokenizer, tolerance=1e-4).hopeless) > 0
