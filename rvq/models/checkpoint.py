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
from dataclasses import dataclass, field
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

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


IDENTITY_KEYS = ("tokenizer_identity", "feature_identity")


def check_identities(entries: Mapping[str, Any], where: str = "") -> None:
    """Raise unless `entries` names both identities a head is trained for as non-empty hash strings (`where`
    prefixes the message: the file or manifest they came from)."""
    for name in IDENTITY_KEYS:
        value = entries.get(name)
        if not isinstance(value, str) or not value:
            raise ValueError(f"{where}{name} must be a non-empty hash string, got {value!r}")


def _format_of(model: torch.nn.Module) -> str:
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
    check_identities({"tokenizer_identity": tokenizer_identity, "feature_identity": feature_identity})
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
) -> "HeadCheckpoint":
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
    check_identities(payload, f"{source}: ")
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
    return HeadCheckpoint(model.to(device).eval(), payload["tokenizer_identity"], payload["feature_identity"],
                          payload.get("feature_info") or {}, payload.get("metrics") or {})


@dataclass(frozen=True)
class HeadCheckpoint:
    """A draft or main head with what it was trained for: the tokenizer whose codes it predicts and the features it
    reads (hashes), what those features were (`feature_info`, for messages) and its metrics."""

    model: DraftModel | MainModel
    tokenizer_identity: str
    feature_identity: str
    feature_info: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _format_of(self.model)
        check_identities({name: getattr(self, name) for name in IDENTITY_KEYS})

    def save(self, path: str | os.PathLike) -> Path:
        """Write it (`save_head`): a hub-style folder, or one file where `path` ends in `.pt`."""
        return save_head(path, self.model, self.tokenizer_identity, self.feature_identity, self.metrics,
                         self.feature_info)


def read_draft(path: str | os.PathLike, tokenizer_identity: str | None = None, feature_identity: str | None = None,
               device: str | torch.device = "cpu") -> HeadCheckpoint:
    """Read a draft checkpoint (model in eval mode, identities, metrics); refuses a tokenizer or feature identity
    other than the given one."""
    return _load(path, "rvq.draft", tokenizer_identity, feature_identity, device)


def read_main(path: str | os.PathLike, tokenizer_identity: str | None = None, feature_identity: str | None = None,
              device: str | torch.device = "cpu") -> HeadCheckpoint:
    """Read a main checkpoint (model in eval mode, identities, metrics); refuses a tokenizer or feature identity
    other than the given one."""
    return _load(path, "rvq.main", tokenizer_identity, feature_identity, device)


def load_draft(
    path: str | os.PathLike,
    tokenizer_identity: str | None = None,
    feature_identity: str | None = None,
    device: str | torch.device = "cpu",
) -> DraftModel:
    """The draft model of a checkpoint, in eval mode (`read_draft` for its identities and metrics); refuses a
    tokenizer or feature identity other than the given one."""
    return read_draft(path, tokenizer_identity, feature_identity, device).model


def load_main(
    path: str | os.PathLike,
    tokenizer_identity: str | None = None,
    feature_identity: str | None = None,
    device: str | torch.device = "cpu",
) -> MainModel:
    """The main model of a checkpoint, in eval mode (`read_main` for its identities and metrics); refuses a
    tokenizer or feature identity other than the given one."""
    return read_main(path, tokenizer_identity, feature_identity, device).model


def check_pair(draft: DraftModel | HeadCheckpoint, main: MainModel | HeadCheckpoint) -> None:
    """Raise unless draft and main predict the same token space from the same features; given as checkpoints
    (`read_draft` / `read_main`), they must also name the same tokenizer and feature identities."""
    if isinstance(draft, HeadCheckpoint) and isinstance(main, HeadCheckpoint):
        for name in ("tokenizer_identity", "feature_identity"):
            a, b = getattr(draft, name), getattr(main, name)
            if a != b:
                raise ValueError(f"draft and main were trained with different {name.split('_')[0]}s "
                                 f"({a[:12]}… vs {b[:12]}…)")
    draft_model = draft.model if isinstance(draft, HeadCheckpoint) else draft
    main_model = main.model if isinstance(main, HeadCheckpoint) else main
    if draft_model.config.tokens != main_model.config.tokens:
        raise ValueError(f"draft and main predict different token spaces: {draft_model.config.tokens} vs "
                         f"{main_model.config.tokens}")
    if draft_model.feature_dim != main_model.feature_dim:
        raise ValueError(f"draft reads {draft_model.feature_dim}-d features, main reads {main_model.feature_dim}-d")
