"""`TokenSpace`: the one place that converts between the chunk, positions and layer-rows layouts of codes."""

from __future__ import annotations

import pytest
import torch

from rvq.models import TokenSpace

TOKENS = TokenSpace(chunk_size=3, hidden_dim=4, num_layers=5, num_levels=7)


def _chunk_codes() -> torch.Tensor:
    return torch.randint(0, 7, (2, 3, 4, 5), generator=torch.Generator().manual_seed(0))


def test_positions_are_ordered_chunk_step_then_latent() -> None:
    codes = _chunk_codes()
    positions = TOKENS.chunk_to_positions(codes)
    assert list(positions.shape) == [2, 12, 5]
    assert torch.equal(positions[:, 1 * 4 + 2], codes[:, 1, 2])  # position p = c * H + h
    assert torch.equal(TOKENS.positions_to_chunk(positions), codes)


def test_layer_rows_round_trip_and_agree_with_positions() -> None:
    codes = _chunk_codes()
    rows = TOKENS.chunk_to_rows(codes)
    assert list(rows.shape) == [2, 5, 12]
    assert torch.equal(rows[:, 3], TOKENS.chunk_to_positions(codes)[..., 3])
    assert torch.equal(TOKENS.rows_to_chunk(rows), codes)
    assert torch.equal(TOKENS.rows_to_positions(rows), TOKENS.chunk_to_positions(codes))
    # a prefix of layers keeps its layout (what a draft emits)
    assert torch.equal(TOKENS.rows_to_chunk(rows[:, :2]), codes[..., :2])


@pytest.mark.parametrize(
    "convert, shape",
    [("chunk_to_positions", (2, 4, 3, 5)), ("positions_to_chunk", (2, 13, 5)), ("chunk_to_rows", (2, 12, 5)),
     ("rows_to_chunk", (2, 5, 11)), ("rows_to_positions", (2, 12))],
)
def test_a_grid_of_another_shape_is_refused(convert: str, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"codes \["):
        getattr(TOKENS, convert)(torch.zeros(shape, dtype=torch.long))
