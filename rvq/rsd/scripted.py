"""`ScriptedDraft`: a draft that proposes given codes, for tests and benchmarks of forced acceptance.

It runs a real `DraftModel` first, so its cost is the real draft's cost, then returns one-hot
logits of the scripted codes. `set_codes` changes the proposal between calls.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rvq.models.draft import DraftModel


class ScriptedDraft(nn.Module):
    def __init__(self, draft: DraftModel, codes: torch.Tensor | None = None) -> None:
        super().__init__()
        self.draft = draft
        self.config = draft.config
        self.codes = codes

    @property
    def feature_dim(self) -> int:
        return self.draft.feature_dim

    @property
    def num_draft_layers(self) -> int:
        return self.draft.num_draft_layers

    def set_codes(self, codes: torch.Tensor) -> None:
        """codes `[B, C, H, >=k]`: the layers to propose."""
        self.codes = codes

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features `[B, D]` → one-hot logits `[B, k, P, levels]` of the scripted codes."""
        logits = self.draft(features)
        if self.codes is None:
            raise RuntimeError("ScriptedDraft has no codes: call set_codes first")
        k = self.num_draft_layers
        if self.codes.shape[0] != features.shape[0] or self.codes.shape[-1] < k:
            raise ValueError(f"scripted codes {list(self.codes.shape)} do not fit batch {features.shape[0]}, k={k}")
        rows = self.config.tokens.chunk_to_rows(self.codes[..., :k].to(logits.device))  # [B, k, P]
        return F.one_hot(rows, self.config.tokens.num_levels).to(logits.dtype)


def forced_proposal(greedy_codes: torch.Tensor, accept: torch.Tensor, num_levels: int) -> torch.Tensor:
    """Greedy codes `[B, C, H, L]` with layer 0 changed where `accept [B]` is false: the draft is then
    fully accepted on `accept` rows and fully rejected (0 layers) on the others."""
    proposal = greedy_codes.clone()
    reject = ~accept.to(torch.bool).to(proposal.device)
    proposal[reject, ..., 0] = (proposal[reject, ..., 0] + 1) % num_levels
    return proposal
