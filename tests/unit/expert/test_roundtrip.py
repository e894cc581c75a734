"""Closed-loop tokenizer study: the expert wrapped in a tokenizer round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rvq.data import ActionNormalizer
from rvq.expert.roundtrip import TokenizedExpert
from rvq.rfsq import ActionRFSQAE
from rvq.tokenizer import ActionTokenizer


def _tokenizer(quantizer: str) -> ActionTokenizer:
    torch.manual_seed(0)
    model = ActionRFSQAE(quantizer=quantizer)
    model.train()
    with torch.no_grad():  # calibrate the robust quantizer's scales on data like the actions below
        for _ in range(50):
            model(torch.rand(64, 8, 7) * 2 - 1)
    normalizer = ActionNormalizer.fit(np.random.default_rng(0).uniform(-1, 1, (200, 7)))
    return ActionTokenizer(model.eval(), normalizer)


class _ConstantExpert:
    name = "expert"

    def attach_env(self, env) -> None:
        self.env = env

    def reset(self, instruction, task_id, trial) -> None:
        pass

    def act(self, obs):
        return np.array([[0.5, -0.25, 0.1, 0.0, 0.0, 0.0, 1.0]])

    def episode_stats(self):
        return {"phase": "down"}


def test_tokenized_expert_executes_the_round_tripped_action() -> None:
    tokenizer = _tokenizer("robust")
    policy = TokenizedExpert(_ConstantExpert(), tokenizer)
    policy.attach_env(object())
    policy.reset("x", 0, 0)
    executed = policy.act({})
    assert executed.shape == (1, 7) and executed[0, 6] in (-1.0, 1.0)
    chunk = torch.as_tensor(np.tile(_ConstantExpert().act({}), (8, 1))[None], dtype=torch.float32)
    np.testing.assert_allclose(executed[0, :6], tokenizer.roundtrip(chunk)[0, 0, :6].numpy(), rtol=1e-6)
    stats = policy.episode_stats()
    assert stats["roundtrip_quantizer"] == "robust" and stats["phase"] == "down"
    # the recorded change is the round trip's own: the mean |executed - expert| over the arm's 6 dims
    change = float(np.abs(executed[0, :6] - _ConstantExpert().act({})[0, :6]).mean())
    assert stats["mean_abs_action_change"] == pytest.approx(change, rel=1e-6)
