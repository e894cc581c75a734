"""The main head's incremental passes (`MainModel.extend` over a `LayerCache`): a layer's logits are the same bits
however the layers are split into passes, and equal the fused training pass to float rounding."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rvq.models import MainConfig, MainModel, TokenSpace
from rvq.models.layer_cache import row_linear


@st.composite
def splits(draw: st.DrawFn, layers: int) -> list[int]:
    """A split of `layers` layers into passes: the rows each pass computes, in order."""
    rows, left = [], layers
    while left:
        rows.append(draw(st.integers(1, left)))
        left -= rows[-1]
    return rows


@given(seed=st.integers(0, 2**16), batch=st.integers(1, 4), layers=st.integers(1, 6), levels=st.integers(2, 7),
       width_heads=st.sampled_from([(16, 2), (32, 4), (48, 3), (64, 8)]), depth=st.integers(1, 3), data=st.data())
def test_any_split_into_passes_gives_the_same_logits(seed, batch, layers, levels, width_heads, depth, data) -> None:
    width, heads = width_heads
    tokens = TokenSpace(chunk_size=2, hidden_dim=3, num_layers=layers, num_levels=levels)
    torch.manual_seed(seed)
    main = MainModel(MainConfig(9, tokens, width=width, depth=depth, heads=heads, dropout=0.0)).eval()
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(batch, 9, generator=gen)
    codes = torch.randint(0, levels, (batch, tokens.positions, layers), generator=gen)
    with torch.inference_mode():
        context = main.encode_features(features)
        one_pass = main.extend(main.start_cache(context), codes, layers)  # [B, L, P, levels]
        cache = main.start_cache(context)
        split = data.draw(splits(layers))
        pieces = torch.cat([main.extend(cache, codes, rows) for rows in split], dim=1)
        fused = main.logits_from_context(context, codes)
    assert cache.filled == layers
    assert one_pass.shape == (batch, layers, tokens.positions, levels)
    assert torch.equal(pieces, one_pass), f"split {split}"
    torch.testing.assert_close(one_pass, fused, atol=1e-5, rtol=1e-5)


def test_a_layer_reads_only_the_codes_of_layers_before_it() -> None:
    tokens = TokenSpace(chunk_size=2, hidden_dim=3, num_layers=4, num_levels=5)
    main = MainModel(MainConfig(9, tokens, width=32, depth=2, heads=4, dropout=0.0)).eval()
    features = torch.randn(2, 9)
    codes = torch.randint(0, 5, (2, tokens.positions, 4))
    changed = codes.clone()
    changed[..., 2:] = (changed[..., 2:] + 1) % 5
    with torch.inference_mode():
        context = main.encode_features(features)
        a = main.extend(main.start_cache(context), codes, 4)
        b = main.extend(main.start_cache(context), changed, 4)
    assert torch.equal(a[:, :3], b[:, :3])  # layers 0..2 read codes of layers 0..1 only
    assert not torch.equal(a[:, 3], b[:, 3])


def test_a_truncated_cache_recomputes_the_layers_it_forgot() -> None:
    tokens = TokenSpace(chunk_size=2, hidden_dim=3, num_layers=5, num_levels=4)
    main = MainModel(MainConfig(9, tokens, width=32, depth=2, heads=4, dropout=0.0)).eval()
    features = torch.randn(3, 9)
    right = torch.randint(0, 4, (3, tokens.positions, 5))
    wrong = right.clone()
    wrong[..., 1:] = (wrong[..., 1:] + 1) % 4  # a rejected proposal from layer 1 on
    with torch.inference_mode():
        context = main.encode_features(features)
        reference = main.extend(main.start_cache(context), right, 5)
        cache = main.start_cache(context)
        main.extend(cache, wrong, 4)
        cache.truncate(2)  # layers 0, 1 read codes of layer 0 only: still valid
        redone = main.extend(cache, right, 3)
    assert torch.equal(redone, reference[:, 2:])
    with pytest.raises(ValueError, match="cannot truncate"):
        cache.truncate(6)


def test_bad_passes_are_refused() -> None:
    tokens = TokenSpace(chunk_size=2, hidden_dim=3, num_layers=3, num_levels=4)
    main = MainModel(MainConfig(9, tokens, width=32, depth=1, heads=4, dropout=0.0)).eval()
    with torch.inference_mode():
        cache = main.start_cache(main.encode_features(torch.randn(2, 9)))
        with pytest.raises(ValueError, match="codes are missing"):
            main.extend(cache, None, 2)
        with pytest.raises(ValueError, match="computes 1..3 layers, got 4"):
            main.extend(cache, torch.zeros(2, 6, 3, dtype=torch.long), 4)
        with pytest.raises(ValueError, match="codes hold 1 layers"):
            main.extend(cache, torch.zeros(2, 6, 1, dtype=torch.long), 3)
        with pytest.raises(ValueError, match="codes has size 1 at dim 0"):
            main.extend(cache, torch.zeros(1, 6, 3, dtype=torch.long), 2)


def test_row_linear_rows_do_not_depend_on_how_many_are_computed() -> None:
    layer = torch.nn.Linear(256, 768)
    x = torch.randn(24, 256)
    together = row_linear(x, layer)
    assert all(torch.equal(row_linear(x[i:i + 1], layer), together[i:i + 1]) for i in range(24))
    torch.testing.assert_close(together, layer(x), atol=1e-5, rtol=1e-5)
