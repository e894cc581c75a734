"""Pieces every training loop here uses: seeding, JSONL metrics, resumable training states."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rvq.checkpoint_io import content_hash, read_checkpoint, write_checkpoint


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; returns a torch generator for batch sampling."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON object as a line (the file is created if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")


def save_train_state(path: Path, fmt: str, model_config: dict[str, Any], **state: Any) -> None:
    """Write a resumable training state: `model`, `optimizer`, `scheduler` objects are stored by
    their state dicts, a `generator` by its RNG state, everything else as given."""
    payload: dict[str, Any] = {"format": fmt, "version": TRAIN_STATE_VERSION, "model_config": model_config}
    for key, value in state.items():
        if isinstance(value, torch.Generator):
            payload[key] = value.get_state()
        elif hasattr(value, "state_dict"):
            payload[key] = value.state_dict()
        else:
            payload[key] = value
    write_checkpoint(path, payload)


# Version 2: the optimizer has two parameter groups (decay on matrices only, rvq.training.optim); a version 1
# state holds one group and an older schedule, and cannot continue under this optimizer.
TRAIN_STATE_VERSION = 2

# Run settings that may change on resume: they do not change what is trained.
RESUME_MAY_CHANGE = ("resume", "progress", "out_dir", "device", "log_to", "wandb_project")


def resume_differences(saved: dict[str, Any] | None, now: dict[str, Any] | None) -> list[str]:
    """`key: saved -> now` for every entry that differs (ignoring `RESUME_MAY_CHANGE`)."""
    saved, now = saved or {}, now or {}
    keys = sorted((set(saved) | set(now)) - set(RESUME_MAY_CHANGE))
    return [f"{k}: {_short(saved.get(k))} in the saved run, {_short(now.get(k))} now"
            for k in keys if saved.get(k) != now.get(k)]


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def fingerprint(*arrays: np.ndarray | torch.Tensor) -> str:
    """SHA-256 over the shapes, dtypes and bytes of arrays, in order (a content hash of training data)."""
    return content_hash({}, {f"{i:04d}": torch.as_tensor(a) for i, a in enumerate(arrays)})


def load_train_state(
    path: str | Path, fmt: str, model_config: dict[str, Any], model, optimizer, scheduler, generator,
    run_config: dict[str, Any] | None = None, inputs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Restore model, optimizer, scheduler and generator from `save_train_state`; returns the payload.

    Refuses a state whose model config, run config (`run_config`, except `RESUME_MAY_CHANGE`) or training
    data (`inputs`) differ from this run's, naming every difference."""
    if Path(path).is_dir():  # a hub-style checkpoint part (the run's best weights), not a training state
        raise ValueError(f"{path}: not a {fmt} but a checkpoint folder; resume from the run's last.pt")
    state = read_checkpoint(path, "training state")
    if state.get("format") != fmt:
        raise ValueError(f"{path}: not a {fmt} (format {state.get('format')!r}); resume from the run's last.pt")
    if state.get("version") != TRAIN_STATE_VERSION:
        raise ValueError(f"{path}: a training state of version {state.get('version')!r}, written by another rvq "
                         f"(this one writes version {TRAIN_STATE_VERSION}: weight decay on matrices only and the "
                         "transformers schedule); it cannot be resumed here, start a new run")
    if state.get("model_config") != model_config:
        raise ValueError(f"{path}: cannot resume: model config differs ({state.get('model_config')} in file, "
                         f"{model_config} now)")
    diffs = []
    if run_config is not None:
        diffs += resume_differences(state.get("config"), run_config)
    if inputs is not None:
        diffs += [f"data {d}" for d in resume_differences(state.get("inputs"), inputs)]
    if diffs:
        raise ValueError(f"{path}: cannot resume a run with other settings or data; start a new run (another "
                         "--out-dir) or resume with the saved ones. Differences: " + "; ".join(diffs))
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    generator.set_state(state["generator"])
    return state
