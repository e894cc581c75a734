"""Head checkpoints: formats `rvq.draft` and `rvq.main`, version 1, as a hub-style folder (`config.json` +
`model.safetensors`, `rvq.hub_format`) or one `.pt` file (the format rvq wrote before; still written where a path
ends in `.pt`); both hold

    {"format": "rvq.draft" | "rvq.main", "version": 1,
     "config": DraftConfig / MainConfig as a dict,
     "state_dict": {name: tensor},
     "metrics": {...},
     "tokenizer_identity": hash of the tokenizer checkpoint whose codes the head predicts,
     "feature_identity": hash of the FeatureExtractor whose features it reads,
     "feature_info": {"name", "feature_dim", ...} (for messages)}

Loading with `tokenizer_identity` / `feature_identity` refuses a head trained for something else.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rvq.checkpoint_io import check_finite_state_dict, check_state_dict
from rvq.hub_format import read_payload, write_payload
from rvq.models.config import DraftConfig, MainConfig
from rvq.models.draft import DraftModel
from rvq.models.main import MainModel

HEAD_VERSION = 1
FORMATS: dict[str, tuple[type, type]] = {
    "rvq.draft": (DraftConfig, DraftModel),
    "rvq.main": (MainConfig, MainModel),
}


def _format_of(model: nn.Module) -> str:
    for name, (_, model_cls) in FORMATS.items():
        if isinstance(model, model_cls):
            return name
    raise TypeError(f"not a head model: {type(model).__name__}")


def save_head(
    path: str | os.PathLike,
    model: DraftModel | MainModel,
    tokenizer_identity: str,
    feature_identity: str,
    metrics: dict[str, Any] | None = None,
    feature_info: dict[str, Any] | None = None,
) -> Path:
    """Write a draft or main checkpoint with the identities it was trained with: a hub-style folder, or a single
    file where `path` ends in `.pt` (the format older rvq read)."""
    for name, value in (("tokenizer_identity", tokenizer_identity), ("feature_identity", feature_identity)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty hash string, got {value!r}")
    payload = {
        "format": _format_of(model),
        "version": HEAD_VERSION,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "metrics": metrics or {},
        "tokenizer_identity": tokenizer_identity,
        "feature_identity": feature_identity,
        "feature_info": feature_info or {},
    }
    return write_payload(path, payload)


def _load(
    path: str | os.PathLike,
    expected_format: str,
    tokenizer_identity: str | None,
    feature_identity: str | None,
    device: str | torch.device,
) -> nn.Module:
    source = str(path)
    payload = read_payload(path, f"{expected_format} checkpoint")
    fmt = payload.get("format")
    if fmt != expected_format:
        raise ValueError(f"{source}: format is {fmt!r}, expected {expected_format!r}")
    if payload.get("version") != HEAD_VERSION:
        raise ValueError(f"{source}: version {payload.get('version')!r} is not supported (expected {HEAD_VERSION})")
    missing = [k for k in ("config", "state_dict", "tokenizer_identity", "feature_identity") if k not in payload]
    if missing:
        raise ValueError(f"{source}: missing key(s) {missing}")
    for name in ("tokenizer_identity", "feature_identity"):
        if not isinstance(payload[name], str) or not payload[name]:
            raise ValueError(f"{source}: {name} must be a non-empty hash string, got {payload[name]!r}")
    if not isinstance(payload["state_dict"], dict):
        raise ValueError(f"{source}: state_dict is a {type(payload['state_dict']).__name__}, expected a dict")
    check_finite_state_dict(payload["state_dict"], source)
    for name, want in (("tokenizer_identity", tokenizer_identity), ("feature_identity", feature_identity)):
        have = payload[name]
        if want is not None and have != want:
            what = "tokenizer" if name == "tokenizer_identity" else "feature extractor"
            raise ValueError(
                f"{source}: this head was trained with a different {what} "
                f"({name} {have[:12]}… in the file, {want[:12]}… given); retrain it or pass the matching {what}"
            )
    config_cls, model_cls = FORMATS[expected_format]
    try:
        config = config_cls.from_dict(payload["config"])
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"{source}: invalid config: {exc}") from exc
    with torch.device("meta"):  # no random weights first: loading holds one copy of the weights, not two
        model = model_cls(config)
    check_state_dict(payload["state_dict"], model.state_dict(), source)
    model.load_state_dict(payload["state_dict"], assign=True)
    model = model.float()  # as before the meta-device load: heads compute in float32 whatever dtype they were saved in
    attach_identities(model, payload["tokenizer_identity"], payload["feature_identity"],
                      payload.get("feature_info") or {}, payload.get("metrics") or {})
    return model.to(device).eval()


def attach_identities(model: DraftModel | MainModel, tokenizer_identity: str, feature_identity: str,
                      feature_info: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None
                      ) -> DraftModel | MainModel:
    """Name what a head was trained for: the tokenizer whose codes it predicts and the features it reads (what
    `load_draft` / `load_main` set from the file; a policy bundle refuses a head without them)."""
    for name, value in (("tokenizer_identity", tokenizer_identity), ("feature_identity", feature_identity)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty hash string, got {value!r}")
    model.tokenizer_identity, model.feature_identity = tokenizer_identity, feature_identity
    model.feature_info, model.metrics = dict(feature_info or {}), dict(metrics or {})
    return model


def load_draft(
    path: str | os.PathLike,
    tokenizer_identity: str | None = None,
    feature_identity: str | None = None,
    device: str | torch.device = "cpu",
) -> DraftModel:
    """Load a draft model in eval mode; refuses a tokenizer or feature identity other than the given one."""
    return _load(path, "rvq.draft", tokenizer_identity, feature_identity, device)


def load_main(
    path: str | os.PathLike,
    tokenizer_identity: str | None = None,
    feature_identity: str | None = None,
    device: str | torch.device = "cpu",
) -> MainModel:
    """Load a main model in eval mode; refuses a tokenizer or feature identity other than the given one."""
    return _load(path, "rvq.main", tokenizer_identity, feature_identity, device)


def check_pair(draft: DraftModel, main: MainModel) -> None:
    """Raise unless draft and main predict the same token space from the same features."""
    if draft.config.tokens != main.config.tokens:
        raise ValueError(f"draft and main predict different token spaces: {draft.config.tokens} vs {main.config.tokens}")
    if draft.feature_dim != main.feature_dim:
        raise ValueError(f"draft reads {draft.feature_dim}-d features, main reads {main.feature_dim}-d")
    for name in ("tokenizer_identity", "feature_identity"):
        a, b = getattr(draft, name, None), getattr(main, name, None)
        if a is not None and b is not None and a != b:
            raise ValueError(f"draft and main were trained with different {name.split('_')[0]}s ({a[:12]}… vs {b[:12]}…)")
