"""Small builders shared by the tokenizer tests."""

from __future__ import annotations

import torch

from rvq.rfsq import ActionRFSQAE


def calibrated(quantizer: str, data: torch.Tensor, steps: int = 1, **kwargs) -> ActionRFSQAE:
    """A tokenizer whose quantizer was calibrated on `data: [B, C, 7]` (weights stay at init)."""
    model = ActionRFSQAE(quantizer=quantizer, **kwargs)
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model(data)
    return model.eval()


def fit_smooth_actions(model: torch.nn.Module, steps: int, seed: int, batch: int = 64) -> torch.nn.Module:
    """`model` after `steps` Adam steps (lr 1e-2) on `smooth_actions` batches, returned in eval mode."""
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(steps):
        x = smooth_actions(batch, seed=seed + step)
        loss = (model(x)[0] - x).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def smooth_actions(batch: int, chunk: int = 8, dim: int = 7, seed: int = 0) -> torch.Tensor:
    """Random-walk action chunks `[batch, chunk, dim]` in roughly [-1, 1], gripper ±1."""
    gen = torch.Generator().manual_seed(seed)
    steps = torch.randn(batch, chunk, dim, generator=gen) * 0.15
    x = (torch.randn(batch, 1, dim, generator=gen) * 0.5 + steps.cumsum(dim=1)).clamp(-1, 1)
    x[..., -1] = torch.sign(torch.randn(batch, 1, generator=gen)).expand(batch, chunk)
    return x
