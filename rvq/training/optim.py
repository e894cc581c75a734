"""AdamW with weight decay on matrices only, and the warm-up/cosine schedule from `transformers`.

Decay pulls weights toward zero. That regularizes the matrices that multiply inputs, but on a LayerNorm gain it
shrinks the normalized signal, on a bias it shifts an offset for no reason, and on an embedding it pulls rarely
seen rows (codes, layers) toward zero more than frequent ones. So, as nanoGPT's `configure_optimizers` does, only
parameters with two or more dimensions decay, minus those a model names in `no_weight_decay()` (timm's
convention), which is where embeddings stored as matrices are declared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class OptimConfig:
    """The optimization of a training run (`--optim.lr`, or `lr` in an `[optim]` table)."""

    steps: int = 2000  # optimizer steps
    batch_size: int = 128  # chunks (tokenizer) or rows (heads) per step
    lr: float = 3e-4  # AdamW's peak learning rate, after the linear warm-up, then cosine decay to 0
    weight_decay: float = 0.01  # AdamW decay on weight matrices only (rvq.training.optim)
    warmup_steps: int = 100  # steps of linear learning-rate warm-up
    grad_clip: float = 1.0  # the gradients' global norm is clipped to this
    eval_every: int = 200  # steps between evaluations on the held-out episodes


def no_weight_decay_names(model: torch.nn.Module) -> set[str]:
    """Names of parameters that never decay: every parameter under 2 dimensions (biases, norm gains, single
    vectors) plus what `model.no_weight_decay()` returns, if the model defines it (and, recursively, what its
    submodules' `no_weight_decay()` return, prefixed by their names)."""
    names = {name for name, p in model.named_parameters() if p.ndim < 2}
    for prefix, module in model.named_modules():
        declared = getattr(module, "no_weight_decay", None)
        if callable(declared):
            names |= {f"{prefix}.{n}" if prefix else n for n in declared()}
    known = {name for name, _ in model.named_parameters()}
    unknown = sorted(names - known)
    if unknown:
        raise ValueError(f"{type(model).__name__}.no_weight_decay() names parameters the model does not have: "
                         f"{unknown}")
    return names


def weight_decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two AdamW parameter groups: matrices with `weight_decay`, everything else with 0 (see the module doc).
    Every trainable parameter is in exactly one group; the groups carry their parameter names (`names`)."""
    skip = no_weight_decay_names(model)
    decay = [(n, p) for n, p in model.named_parameters() if p.requires_grad and n not in skip]
    keep = [(n, p) for n, p in model.named_parameters() if p.requires_grad and n in skip]
    return [
        {"params": [p for _, p in decay], "weight_decay": weight_decay, "names": [n for n, _ in decay]},
        {"params": [p for _, p in keep], "weight_decay": 0.0, "names": [n for n, _ in keep]},
    ]


def configure_optimizer(
    model: torch.nn.Module, lr: float, weight_decay: float, steps: int, warmup_steps: int
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over `weight_decay_groups` and `transformers`' linear warm-up then cosine decay to 0 at `steps`."""
    from transformers import get_cosine_schedule_with_warmup  # imported here: transformers is slow to import

    optimizer = torch.optim.AdamW(weight_decay_groups(model, weight_decay), lr=lr)
    return optimizer, get_cosine_schedule_with_warmup(optimizer, warmup_steps, steps)
