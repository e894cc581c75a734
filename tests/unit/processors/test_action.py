"""Action steps: unnormalize with the bound statistics only, the gripper binarized over a batch of chunks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rvq.data import ActionNormalizer
from rvq.processors import BinarizeGripper, Unnormalize, binarize_gripper, gripper_flip, libero_action_steps


def _normalizer() -> ActionNormalizer:
    return ActionNormalizer.fit(np.random.default_rng(0).uniform(-2, 2, (256, 7)))


def test_unnormalize_needs_bound_statistics() -> None:
    normalized = torch.rand(2, 8, 7) * 2 - 1
    with pytest.raises(RuntimeError, match="no action statistics bound"):
        Unnormalize()(normalized)
    normalizer = _normalizer()
    torch.testing.assert_close(Unnormalize(normalizer)(normalized), normalizer.unnormalize(normalized))
    assert Unnormalize(normalizer).config() == {}  # the statistics live in the tokenizer part, not the declaration


def test_libero_action_steps_equal_unnormalize_then_binarize() -> None:
    normalizer = _normalizer()
    normalized = torch.rand(3, 8, 7) * 2 - 1
    for flip in (False, True):
        steps = libero_action_steps(flip).replace(Unnormalize, normalizer=normalizer)
        out = steps(normalized)
        assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == (3, 8, 7)
        for i in range(3):  # per chunk, what the policy did before the steps were declared
            np.testing.assert_array_equal(out[i], binarize_gripper(normalizer.unnormalize(normalized[i]).numpy(), flip))
        assert gripper_flip(steps) is flip
    assert set(np.unique(out[..., -1])) <= {-1.0, 1.0}


def test_binarize_refuses_bad_chunks() -> None:
    with pytest.raises(ValueError, match=r"must be \[C, 7\]"):
        BinarizeGripper()(np.zeros((8, 6)))
    with pytest.raises(ValueError, match="NaN"):
        BinarizeGripper()(np.full((2, 8, 7), np.nan))
