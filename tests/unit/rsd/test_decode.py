"""RSD engine: exact mode equals main-only greedy decoding for any draft; acceptance, passes, stats;
relaxed mode; refusals before decoding."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rvq.models import DraftModel, TokenSpace
from rvq.rsd import RSDSummary, ScriptedDraft, forced_proposal, greedy_decode, speculative_decode, token_departure
from tests.unit.models.helpers import small_draft, small_main


def FixedDraft(like: DraftModel, codes: torch.Tensor) -> ScriptedDraft:
    return ScriptedDraft(like, codes)


@given(
    seed=st.integers(0, 2**16),
    batch=st.integers(1, 5),
    layers=st.integers(1, 6),
    levels=st.integers(2, 7),
    draft_layers=st.integers(1, 6),
    oracle_layers=st.integers(0, 6),
)
def test_exact_mode_returns_greedy_tokens_for_any_draft(seed, batch, layers, levels, draft_layers, oracle_layers) -> None:
    tokens = TokenSpace(chunk_size=2, hidden_dim=3, num_layers=layers, num_levels=levels)
    k = min(draft_layers, layers)
    main = small_main(tokens=tokens, seed=seed, dtype=torch.float64)
    draft = small_draft(tokens=tokens, layers=k, seed=seed + 1, dtype=torch.float64)
    features = torch.randn(batch, 12, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    greedy = greedy_decode(main, features)
    assert greedy.shape == (batch, 2, 3, layers)
    # A random draft, and a draft that is right on its first `oracle_layers` layers then wrong.
    codes, stats = speculative_decode(draft, main, features)
    assert torch.equal(codes, greedy)
    assert stats.main_passes == max(1, layers - int(stats.accepted.min()))
    proposal = greedy.clone()
    wrong_from = min(oracle_layers, k)
    proposal[..., wrong_from:] = (proposal[..., wrong_from:] + 1) % levels
    codes, stats = speculative_decode(FixedDraft(draft, proposal), main, features)
    assert torch.equal(codes, greedy)
    assert stats.accepted.tolist() == [wrong_from] * batch
    assert stats.main_passes == max(1, layers - wrong_from)  # verification is one pass


def test_acceptance_and_passes_per_sample_in_a_batch() -> None:
    main = small_main()
    draft = small_draft()
    features = torch.randn(4, 12)
    greedy = greedy_decode(main, features)
    proposal = greedy.clone()
    proposal[1, 0, 0, 2] = (proposal[1, 0, 0, 2] + 1) % 4  # sample 1: layer 2 wrong at one position
    proposal[2, :, :, 0] = (proposal[2, :, :, 0] + 1) % 4  # sample 2: layer 0 wrong
    proposal[3, 1, 2, 1] = (proposal[3, 1, 2, 1] + 1) % 4  # sample 3: layer 1 wrong
    codes, stats = speculative_decode(FixedDraft(draft, proposal), main, features)
    assert torch.equal(codes, greedy)
    assert stats.accepted.tolist() == [3, 2, 0, 1]
    assert stats.layer_acceptance() == [0.75, 0.5, 0.25]
    assert stats.main_passes == 5  # the slowest sample (0 accepted) needs all 5 layers
    assert stats.agreement[1].tolist()[2] == pytest.approx(5 / 6)
    summary = RSDSummary()
    summary.add(stats)
    summary.add(stats)
    assert summary.to_dict()["chunks"] == 8 and summary.to_dict()["acceptance_rate"] == pytest.approx(0.5)


def test_full_acceptance_saves_k_main_passes() -> None:
    main = small_main()
    features = torch.randn(3, 12)
    greedy = greedy_decode(main, features)
    _, stats = speculative_decode(FixedDraft(small_draft(), greedy), main, features)
    assert stats.accepted.tolist() == [3, 3, 3] and stats.main_passes == 5 - 3
    _, stats = speculative_decode(FixedDraft(small_draft(), greedy), main, features, num_draft_layers=2)
    assert stats.main_passes == 5 - 2 and stats.proposed_layers == 2


def test_relaxed_mode_accepts_near_misses_and_reports_departure() -> None:
    main = small_main()
    features = torch.randn(2, 12)
    greedy = greedy_decode(main, features)
    proposal = greedy.clone()
    proposal[:, 0, 0, 0] = (proposal[:, 0, 0, 0] + 1) % 4  # 1 of 6 positions of layer 0 differs
    draft = FixedDraft(small_draft(), proposal)
    exact_codes, exact_stats = speculative_decode(draft, main, features)
    assert exact_stats.accepted.tolist() == [0, 0] and torch.equal(exact_codes, greedy)
    relaxed, stats = speculative_decode(draft, main, features, exact=False, tau=0.8)
    assert (stats.accepted >= 1).all() and not stats.exact
    assert stats.agreement[:, 0].tolist() == pytest.approx([5 / 6, 5 / 6])
    assert torch.equal(relaxed[..., 0], proposal[..., 0])  # the accepted draft layer is kept (lossy)
    departure = token_departure(relaxed, greedy)
    assert departure["layer_mismatch"][0] == pytest.approx(1 / 6) and departure["chunk_mismatch"] == 1.0
    assert token_departure(exact_codes, greedy)["token_mismatch"] == 0.0
    _, stats = speculative_decode(draft, main, features, exact=False, tau=0.9)
    assert stats.accepted.tolist() == [0, 0]
    _, stats = speculative_decode(draft, main, features, exact=False, tau=1.0, max_grid_distance=3)
    assert (stats.accepted >= 1).all()


def test_bad_input_raises_before_decoding() -> None:
    main, draft = small_main(), small_draft()
    with pytest.raises(ValueError, match="features have 11 dims, the main model reads 12"):
        speculative_decode(draft, main, torch.randn(2, 11))
    with pytest.raises(ValueError, match=r"features must be \[B, D\]"):
        greedy_decode(main, torch.randn(12))
    with pytest.raises(ValueError, match="NaN"):
        greedy_decode(main, torch.full((1, 12), float("nan")))
    with pytest.raises(ValueError, match="different token spaces"):
        speculative_decode(small_draft(tokens=TokenSpace(2, 3, 6, 4)), main, torch.randn(1, 12))
    with pytest.raises(ValueError, match="num_draft_layers must be in"):
        speculative_decode(draft, main, torch.randn(1, 12), num_draft_layers=4)
    with pytest.raises(ValueError, match="tau"):
        speculative_decode(draft, main, torch.randn(1, 12), exact=False, tau=0.0)
    with pytest.raises(ValueError, match=r"num_draft_layers must be an integer in \[1, 3\], got 2.7"):
        speculative_decode(draft, main, torch.randn(1, 12), num_draft_layers=2.7)
    with pytest.raises(ValueError, match="the first argument is a MainModel, not a draft head"):
        speculative_decode(main, draft, torch.randn(1, 12))
    with pytest.raises(ValueError, match="main must be a main head"):
        greedy_decode(draft, torch.randn(1, 12))
    with pytest.raises(ValueError, match="relaxed-mode rule: pass exact=False"):
        speculative_decode(draft, main, torch.randn(1, 12), max_grid_distance=1)
    for bad in (-1, 2.5):
        with pytest.raises(ValueError, match="max_grid_distance must be a whole number of grid steps"):
            speculative_decode(draft, main, torch.randn(1, 12), exact=False, max_grid_distance=bad)
    with pytest.raises(ValueError, match="floating point"):
        greedy_decode(main, torch.ones(1, 12, dtype=torch.long))


def test_forced_proposal_gives_all_or_nothing_acceptance() -> None:
    main = small_main()
    features = torch.randn(4, 12)
    greedy = greedy_decode(main, features)
    proposal = forced_proposal(greedy, torch.tensor([True, False, True, False]), num_levels=4)
    codes, stats = speculative_decode(ScriptedDraft(small_draft(), proposal), main, features)
    assert stats.accepted.tolist() == [3, 0, 3, 0] and torch.equal(codes, greedy)
    with pytest.raises(ValueError, match="do not fit batch"):
        speculative_decode(ScriptedDraft(small_draft(), proposal[:2]), main, features)
