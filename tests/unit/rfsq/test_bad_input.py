"""Property 6: bad input raises ValueError naming the problem."""

from __future__ import annotations

import pytest
import torch

from rvq.rfsq import ActionRFSQAE


@pytest.fixture
def model() -> ActionRFSQAE:
    return ActionRFSQAE().eval()


@pytest.mark.parametrize("value, word", [(float("nan"), "NaN"), (float("inf"), "inf")])
def test_non_finite_actions(model: ActionRFSQAE, value: float, word: str) -> None:
    x = torch.zeros(2, 8, 7)
    x[1, 3, 2] = value
    with pytest.raises(ValueError, match=word):
        model.encode(x)
    with pytest.raises(ValueError, match=r"\(1, 3, 2\)"):
        model(x)


def test_wrong_rank(model: ActionRFSQAE) -> None:
    with pytest.raises(ValueError, match="rank 3"):
        model.encode(torch.zeros(8, 7))


def test_wrong_action_dim(model: ActionRFSQAE) -> None:
    with pytest.raises(ValueError, match="size 6 at dim 2, expected 7"):
        model.encode(torch.zeros(2, 8, 6))


def test_integer_actions(model: ActionRFSQAE) -> None:
    with pytest.raises(ValueError, match="floating-point"):
        model.encode(torch.zeros(2, 8, 7, dtype=torch.int64))


def test_codes_wrong_dtype(model: ActionRFSQAE) -> None:
    with pytest.raises(ValueError, match="integer tensor"):
        model.decode_from_indices(torch.zeros(2, 8, 16, 8))


@pytest.mark.parametrize("bad", [-1, 7])
def test_codes_out_of_range(model: ActionRFSQAE, bad: int) -> None:
    codes = torch.zeros(2, 8, 16, 8, dtype=torch.int64)
    codes[0, 0, 0, 0] = bad
    with pytest.raises(ValueError, match=r"out of range.*\[0, 7\)"):
        model.decode_from_indices(codes)


def test_codes_too_many_layers(model: ActionRFSQAE) -> None:
    with pytest.raises(ValueError, match="9 layers; this tokenizer decodes 1..8"):
        model.decode_from_indices(torch.zeros(2, 8, 16, 9, dtype=torch.int64))


def test_codes_zero_layers(model: ActionRFSQAE) -> None:
    with pytest.raises(ValueError, match="0 layers"):
        model.decode_from_indices(torch.zeros(2, 8, 16, 0, dtype=torch.int64))


def test_codes_wrong_hidden(model: ActionRFSQAE) -> None:
    with pytest.raises(ValueError, match="size 15 at dim 2, expected 16"):
        model.decode_from_indices(torch.zeros(2, 8, 15, 8, dtype=torch.int64))


def test_bad_config() -> None:
    with pytest.raises(ValueError, match="unknown quantizer 'fancy'"):
        ActionRFSQAE(quantizer="fancy")
    with pytest.raises(ValueError, match="num_levels must be >= 2"):
        ActionRFSQAE(num_levels=1)
    with pytest.raises(ValueError, match="with num_layers=1 set coarse_decoder=False"):
        ActionRFSQAE(num_layers=1)
