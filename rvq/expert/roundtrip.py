"""The closed-loop tokenizer study: the expert's actions pass through a tokenizer round trip before
they are executed, so success rates show what the tokenizer's reconstruction error does in closed loop.

Each expert action `a` (closed loop, one per step) is tokenized as a constant chunk `[C, 7]` of `a`,
decoded, and the first decoded action is executed (gripper binarized to ±1). The seed's per-token
LayerNorm quantizer is decoded from its codes the way the seed did (statistics lost), since codes are
all a token policy ever has.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rvq.policies.base import binarize_gripper
from rvq.tokenizer import ActionTokenizer


class TokenizedExpert:
    """Wraps `ScriptedExpert`: same interface, actions round-tripped through `tokenizer`."""

    name = "expert"

    def __init__(self, expert, tokenizer: ActionTokenizer) -> None:
        self.expert, self.tokenizer = expert, tokenizer
        self.chunk_size = tokenizer.tokens.chunk_size
        self.deviation: list[float] = []

    def attach_env(self, env) -> None:
        self.expert.attach_env(env)

    def reset(self, instruction: str, task_id: int, trial: int) -> None:
        self.expert.reset(instruction, task_id, trial)
        self.deviation = []

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        action = self.expert.act(obs)  # [1, 7]
        chunk = torch.as_tensor(np.tile(action, (self.chunk_size, 1))[None], dtype=torch.float32)
        executed = self.tokenizer.roundtrip(chunk)[0, :1].numpy().astype(np.float64)
        self.deviation.append(float(np.abs(executed[0, :6] - action[0, :6]).mean()))
        return binarize_gripper(executed)

    def episode_stats(self) -> dict[str, Any]:
        return {**self.expert.episode_stats(), "roundtrip_quantizer": self.tokenizer.quantizer,
                "mean_abs_action_change": float(np.mean(self.deviation)) if self.deviation else None}
