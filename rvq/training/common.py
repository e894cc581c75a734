"""Pieces every training loop here uses: seeding, AdamW + warm-up/cosine schedule, JSONL metrics."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rvq.checkpoint_io import read_checkpoint, write_checkpoint


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; returns a torch generator for batch sampling."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def adamw_cosine(
    params, lr: float, weight_decay: float, steps: int, warmup_steps: int
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW with linear warm-up then cosine decay to 0 over `steps`."""
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON object as a line (the file is created if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")


def save_train_state(path: Path, fmt: str, model_config: dict[str, Any], **state: Any) -> None:
    """Write a resumable training state: `model`, `optimizer`, `scheduler` objects are stored by
    their state dicts, a `generator` by its RNG state, everything else as given."""
    payload: dict[str, Any] = {"format": fmt, "version": 1, "model_config": model_config}
    for key, value in state.items():
        if isinstance(value, torch.Generator):
            payload[key] = value.get_state()
        elif hasattr(value, "state_dict"):
            payload[key] = value.state_dict()
        else:
            payload[key] = value
    write_checkpoint(path, payload)


def load_train_state(
    path: str | Path, fmt: str, model_config: dict[str, Any], model, optimizer, scheduler, generator
) -> dict[str, Any]:
    """Restore model, optimizer, scheduler and generator from `save_train_state`; returns the payload."""
    state = read_checkpoint(path, "training state")
    if state.get("format") != fmt:
        raise ValueError(f"{path}: not a {fmt} (format {state.get('format')!r}); resume from the run's last.pt")
    if state.get("model_config") != model_config:
        raise ValueError(f"{path}: cannot resume: model config differs ({state.get('model_config')} in file, "
                         f"{model_config} now)")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    generator.set_state(state["generator"])
    return state
