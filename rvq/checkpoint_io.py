"""Reading and writing `.pt` checkpoints made of plain containers and tensors only.

Files are written through an in-memory buffer, so the bytes depend on the content alone
(not on the file name), and read with `torch.load(weights_only=True)`: no arbitrary unpickling.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import torch

from rvq.files import write_bytes_atomic


def write_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write `payload` atomically (temp file + rename); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_bytes_atomic(path, buffer.getvalue())
    return path


def read_checkpoint(path: str | os.PathLike, what: str = "checkpoint") -> dict[str, Any]:
    """Load a checkpoint dict safely; clear errors for a missing, unreadable or non-dict file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"cannot read {what} {path}: the file is empty (0 bytes)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file named
        detail = str(exc).strip() or "no detail given"
        raise ValueError(f"cannot read {what} {path}: {type(exc).__name__}: {detail}") from exc
    if not isinstance(payload, dict):
        raise ValueError(f"{what} {path} holds a {type(payload).__name__}, expected a dict")
    return payload


def content_hash(config: dict[str, Any], state_dict: dict[str, torch.Tensor], extra: Any = None) -> str:
    """SHA-256 over a canonical form of config, tensors (sorted by key) and extra JSON data."""
    digest = hashlib.sha256()
    digest.update(json.dumps(config, sort_keys=True).encode())
    digest.update(json.dumps(extra, sort_keys=True, default=str).encode())
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().cpu().contiguous()
        digest.update(key.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(str(list(tensor.shape)).encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def check_finite_state_dict(state_dict: dict[str, Any], source: str) -> None:
    """Raise naming every tensor that is not a tensor or holds NaN/inf (weights and buffers)."""
    problems = []
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            problems.append(f"{key} is a {type(value).__name__}, not a tensor")
        elif (value.is_floating_point() or value.is_complex()) and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            problems.append(f"{key} has {bad} NaN/inf value(s) of {value.numel()}")
    if problems:
        raise ValueError(f"{source}: refusing weights that are not finite: " + "; ".join(problems))


def check_state_dict(
    state_dict: dict[str, torch.Tensor],
    reference: dict[str, torch.Tensor],
    source: str,
    optional: tuple[str, ...] = (),
) -> None:
    """Raise naming every missing or unexpected key and every shape or dtype-kind mismatch against `reference` (an
    integer tensor where the model holds floats, or the reverse, would be cast by `load_state_dict` without a word)."""
    missing = sorted(k for k in reference if k not in state_dict and not k.startswith(optional or ("\0",)))
    unexpected = sorted(k for k in state_dict if k not in reference)
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    for key, value in state_dict.items():
        if key in reference and tuple(value.shape) != tuple(reference[key].shape):
            problems.append(f"{key}: shape {list(value.shape)} in file, {list(reference[key].shape)} expected")
        elif key in reference and _kind(value) != _kind(reference[key]):
            problems.append(f"{key}: dtype {value.dtype} in file, {reference[key].dtype} expected")
    if problems:
        raise ValueError(f"{source}: state dict does not match the model: " + "; ".join(problems))


def _kind(tensor: torch.Tensor) -> str:
    """float, complex, bool or int: what a tensor's values mean (precisions of one kind load into each other)."""
    if tensor.is_floating_point():
        return "float"
    if tensor.is_complex():
        return "complex"
    return "bool" if tensor.dtype == torch.bool else "int"
