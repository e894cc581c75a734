"""Hub-style checkpoint parts: a folder holding `config.json` and `model.safetensors`, as Hugging Face users expect.

One part (a tokenizer, a draft or a main head) is the same payload a `.pt` checkpoint holds, split in two:

    config.json        {"format": "rvq.main", "version": 1, "config": {...}, ...every other entry...,
                        "weights_sha256": hash of model.safetensors}
    model.safetensors  the state dict (tensors only, the format Hugging Face tools load)

`write_payload` writes a part folder, or a `.pt` file where the path ends in `.pt` (what every writer in rvq still
passes until the policy bundle lands). Readers (`read_payload`) take either and return the same dict, so every check
downstream (format, version, identities, finite weights, shapes) is the same for both. The weights are written
first and `config.json` last, each atomically, and `config.json` names the weights' hash: a folder caught between
the two writes, or whose weights were swapped, is refused instead of read as a mix.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from rvq.checkpoint_io import read_checkpoint, write_checkpoint
from rvq.files import file_digest, write_bytes_atomic

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def write_part(folder: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write `payload` (`format`, `version`, `config`, `state_dict` and JSON-able entries) as a part folder."""
    from safetensors.torch import save

    folder = Path(folder)
    if folder.suffix == ".pt" or folder.is_file():
        raise ValueError(f"{folder}: a hub-style part is a folder, not a file (a .pt path gets `write_payload`'s "
                         "single-file format)")
    for key in ("format", "version", "config", "state_dict"):
        if key not in payload:
            raise ValueError(f"{folder}: the payload has no {key!r} entry")
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in payload["state_dict"].items()}
    blob = save(tensors, metadata={"format": str(payload["format"])})
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    meta["weights_sha256"] = hashlib.sha256(blob).hexdigest()
    try:
        text = json.dumps(meta, indent=2, sort_keys=True)  # metrics may hold NaN/inf, which Python's json reads
    except TypeError as exc:
        raise ValueError(f"{folder}: the checkpoint's entries must be plain JSON data: {exc}") from exc
    write_bytes_atomic(folder / WEIGHTS_NAME, blob)
    write_bytes_atomic(folder / CONFIG_NAME, text.encode())
    return folder


def read_part(folder: str | os.PathLike, what: str = "checkpoint") -> dict[str, Any]:
    """A part folder → its payload dict (`state_dict` from the safetensors file, the rest from `config.json`)."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    missing = [p.name for p in (config_path, weights_path) if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{what} {folder}: the folder lacks {missing} (a hub-style part holds "
                                f"{CONFIG_NAME} and {WEIGHTS_NAME})")
    try:
        meta = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read {what} {config_path}: {exc}") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"{what} {config_path} holds a {type(meta).__name__}, expected a JSON object")
    if "state_dict" in meta:
        raise ValueError(f"{what} {config_path}: a 'state_dict' entry belongs in {WEIGHTS_NAME}, not in JSON")
    if "format" not in meta or "weights_sha256" not in meta:
        raise ValueError(f"{what} {folder}: {CONFIG_NAME} is not an rvq checkpoint part (it has no 'format' and "
                         "'weights_sha256' entries; a VLA backbone folder, for instance, is a feature source)")
    blob = weights_path.read_bytes()
    recorded = meta.pop("weights_sha256")
    if recorded != hashlib.sha256(blob).hexdigest():
        raise ValueError(f"{what} {folder}: {WEIGHTS_NAME} is not the file {CONFIG_NAME} was written with "
                         f"(sha256 {recorded!r} recorded); the folder was written partially or its weights replaced")
    try:
        state_dict = load(blob)
    except SafetensorError as exc:
        raise ValueError(f"cannot read {what} {weights_path}: {exc}") from exc
    return {**meta, "state_dict": state_dict}


def write_payload(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """A part folder at `path`, or a single `.pt` file where `path` ends in `.pt` (the format rvq wrote before)."""
    return write_checkpoint(path, payload) if Path(path).suffix == ".pt" else write_part(path, payload)


def read_payload(path: str | os.PathLike, what: str = "checkpoint") -> dict[str, Any]:
    """A hub-style part folder or a legacy `.pt` file (read with `weights_only=True`) → the payload dict."""
    path = Path(path)
    if path.is_dir():
        return read_part(path, what)
    return read_checkpoint(path, what)


def payload_digest(path: str | os.PathLike) -> str:
    """sha256 that identifies a checkpoint: a part folder's `config.json` (which names its weights' sha256, checked
    by `read_part`), or a legacy `.pt` file's bytes."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{path.parent}: not a checkpoint part folder (no {CONFIG_NAME})")
    return file_digest(path)
