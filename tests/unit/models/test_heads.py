"""Draft and main models: shapes, layer causality (the main model never sees what it predicts),
checkpoints with identities, and refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rvq.models import (DraftConfig, MainConfig, TokenSpace, check_pair, load_draft, load_main, read_draft, read_main,
                        save_head)
from tests.unit.models.helpers import SMALL_TOKENS, small_draft, small_main


def test_default_shapes_match_the_mission() -> None:
    tokens = TokenSpace()
    assert tokens.positions == 128
    draft, main = small_draft(64, tokens), small_main(64, tokens)
    features = torch.randn(2, 64)
    assert draft(features).shape == (2, 3, 128, 7)
    assert main(features).shape == (2, 8, 128, 7)
    assert main(features, torch.randint(0, 7, (2, 128, 8))).shape == (2, 8, 128, 7)


@given(layer=st.integers(0, SMALL_TOKENS.num_layers - 1), seed=st.integers(0, 10_000))
def test_main_logits_of_layer_l_ignore_codes_of_layers_l_and_above(layer: int, seed: int) -> None:
    main = small_main()
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(3, 12, generator=g)
    codes = torch.randint(0, 4, (3, SMALL_TOKENS.positions, SMALL_TOKENS.num_layers), generator=g)
    changed = codes.clone()
    changed[..., layer:] = torch.randint(0, 4, changed[..., layer:].shape, generator=g)
    a, b = main(features, codes), main(features, changed)
    assert torch.equal(a[:, : layer + 1], b[:, : layer + 1])  # bit-identical, not just close
    if layer + 1 < SMALL_TOKENS.num_layers and not torch.equal(codes, changed):
        assert not torch.equal(a[:, layer + 1 :], b[:, layer + 1 :])  # later layers do read them


def test_main_training_mode_is_still_causal() -> None:
    main = small_main().train()
    torch.manual_seed(0)
    features, codes = torch.randn(2, 12), torch.randint(0, 4, (2, 6, 5))
    changed = codes.clone()
    changed[..., 2:] = (changed[..., 2:] + 1) % 4
    torch.manual_seed(1)
    a = main(features, codes)
    torch.manual_seed(1)
    b = main(features, changed)
    assert torch.equal(a[:, :3], b[:, :3])


def test_bad_inputs_raise() -> None:
    main, draft = small_main(), small_draft()
    with pytest.raises(ValueError, match="features has size 5 at dim 1"):
        main(torch.randn(2, 5))
    with pytest.raises(ValueError, match="features must have rank 2"):
        draft(torch.randn(12))
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 4\)"):
        main(torch.randn(2, 12), torch.full((2, 6, 5), 4))
    with pytest.raises(ValueError, match="codes has size"):
        main(torch.randn(2, 12), torch.zeros(2, 7, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="num_draft_layers"):
        DraftConfig(12, SMALL_TOKENS, num_draft_layers=6)
    with pytest.raises(ValueError, match="divisible"):
        MainConfig(12, SMALL_TOKENS, width=30, heads=4)


def test_checkpoints_round_trip_with_identities(tmp_path: Path) -> None:
    draft, main = small_draft(), small_main()
    save_head(tmp_path / "draft.pt", draft, "tok-a", "feat-a", metrics={"acc": 0.5})
    save_head(tmp_path / "main.pt", main, "tok-a", "feat-a")
    draft_checkpoint = read_draft(tmp_path / "draft.pt", tokenizer_identity="tok-a")
    loaded_draft = draft_checkpoint.model
    loaded_main = load_main(tmp_path / "main.pt", feature_identity="feat-a")
    assert not loaded_main.training and loaded_main.feature_dim == 12
    assert draft_checkpoint.metrics == {"acc": 0.5} and draft_checkpoint.tokenizer_identity == "tok-a"
    assert not hasattr(loaded_draft, "tokenizer_identity")  # the file's entries are not module attributes
    features, codes = torch.randn(2, 12), torch.randint(0, 4, (2, 6, 5))
    assert torch.equal(loaded_main(features, codes), main(features, codes))
    assert torch.equal(loaded_draft(features), draft(features))
    check_pair(loaded_draft, loaded_main)


def test_loading_with_the_wrong_tokenizer_or_format_is_refused(tmp_path: Path) -> None:
    save_head(tmp_path / "main.pt", small_main(), "tok-a", "feat-a")
    with pytest.raises(ValueError, match="different tokenizer"):
        load_main(tmp_path / "main.pt", tokenizer_identity="tok-b")
    with pytest.raises(ValueError, match="different feature extractor"):
        load_main(tmp_path / "main.pt", feature_identity="feat-b")
    with pytest.raises(ValueError, match="format is 'rvq.main', expected 'rvq.draft'"):
        load_draft(tmp_path / "main.pt")
    with pytest.raises(FileNotFoundError):
        load_main(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="non-empty hash"):
        save_head(tmp_path / "x.pt", small_main(), "", "feat")


def test_pairs_for_different_tokenizers_or_sizes_are_refused(tmp_path: Path) -> None:
    save_head(tmp_path / "draft.pt", small_draft(), "tok-a", "feat-a")
    save_head(tmp_path / "main.pt", small_main(), "tok-b", "feat-a")
    with pytest.raises(ValueError, match="different tokenizers"):
        check_pair(read_draft(tmp_path / "draft.pt"), read_main(tmp_path / "main.pt"))
    with pytest.raises(ValueError, match="different token spaces"):
        check_pair(small_draft(tokens=TokenSpace(2, 3, 6, 4)), small_main())
    with pytest.raises(ValueError, match="reads 10-d features"):
        check_pair(small_draft(feature_dim=10), small_main())
