"""Tokenizer checkpoints, format `rvq.tokenizer` v1: a hub-style folder (`config.json` + `model.safetensors`,
`rvq.hub_format`) or one `.pt` file (the format rvq wrote before; still written where a path ends in `.pt`);
both hold

    {"format": "rvq.tokenizer", "version": 1,
     "config": TokenizerConfig as a dict,
     "state_dict": {name: tensor},
     "action_stats": ActionNormalizer dict (filled by Phase 1 training) or None,
     "metrics": {...}}

`load_tokenizer` also reads the seed project's dicts: `{"model": state_dict, ...}` and
`{"model_state_dict": ..., "config": ...}`; `seed_quantizer` says how `use_layernorm=True` is read
(robust when robust's calibration buffers are in the file, the seed's LayerNorm variant with a warning
when none are, refused when it cannot be told).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rvq.checkpoint_io import check_finite_state_dict, check_state_dict, content_hash
from rvq.data.normalize import ActionNormalizer
from rvq.hub_format import read_payload, write_payload
from rvq.rfsq.build import TokenizerModel, build_tokenizer_model
from rvq.rfsq.config import TokenizerConfig

TOKENIZER_FORMAT = "rvq.tokenizer"
TOKENIZER_VERSION = 1
SEED_MODEL_KEYS = ("action_dim", "hidden_dim", "num_layers", "num_levels")
QUANTIZER_BUFFERS = "quantizer."


def tokenizer_payload(
    model: TokenizerModel, action_stats: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The dict that `save_tokenizer` writes."""
    return {
        "format": TOKENIZER_FORMAT,
        "version": TOKENIZER_VERSION,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "action_stats": action_stats,
        "metrics": metrics or {},
    }


def save_tokenizer(
    path: str | os.PathLike,
    model: TokenizerModel,
    action_stats: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Write a tokenizer checkpoint: a hub-style folder, or a single file where `path` ends in `.pt` (the format
    older rvq read). `action_stats`: `ActionNormalizer.to_dict()` (None: a model without statistics, which
    `ActionTokenizer` refuses to load)."""
    payload = tokenizer_payload(model, action_stats, metrics)
    return write_payload(path, payload)


def tokenizer_identity(source: str | os.PathLike | dict[str, Any] | TokenizerModel,
                       action_stats: dict[str, Any] | None = None) -> str:
    """Content hash (hex) of a tokenizer: config, weights and action statistics (`action_stats`, for a model given
    in memory; a file or payload holds its own).

    Phase 2 heads record it, so a head is never paired with a tokenizer it was not trained on.
    """
    if isinstance(source, torch.nn.Module):
        payload = tokenizer_payload(source, action_stats)
    elif isinstance(source, dict):
        payload = source
    else:
        payload = _normalize_payload(read_payload(source, "tokenizer checkpoint"), str(source))
    return content_hash(payload["config"], payload["state_dict"], payload.get("action_stats"))


ROBUST_BUFFERS = ("quantizer.center", "quantizer.scale", "quantizer.calibration_steps")


def seed_quantizer(raw: dict[str, Any], state_dict: dict[str, torch.Tensor], source: str,
                   quantizer: str | None = None) -> str:
    """Which quantizer a seed-format file holds; one meaning for `use_layernorm=True`.

    - `quantizer` given by the caller, or a `quantizer` key in the file's config: that.
    - `use_layernorm=False`: naive.
    - `use_layernorm=True` with robust's calibration buffers (`quantizer.center/scale/calibration_steps`)
      holding a robust model's values (calibrated, or robust's initial schedule): robust, as
      `ActionRFSQAE(use_layernorm=True)` builds it.
    - `use_layernorm=True` without those buffers: the seed's per-token LayerNorm variant, with a warning that
      it is not decodable from codes.
    - anything else (some buffers only, or the untouched buffers that naive and LayerNorm models also carry):
      refused; pass `quantizer=`.
    """
    if quantizer is not None:
        return quantizer
    if "quantizer" in raw:
        return str(raw["quantizer"])
    if not raw.get("use_layernorm", True):
        return "naive"
    present = [k for k in ROBUST_BUFFERS if k in state_dict]
    if not present:
        warnings.warn(f"{source}: seed checkpoint without calibration buffers loads as the seed's per-token "
                      "LayerNorm quantizer, which is NOT decodable from codes (decode_from_indices raises); "
                      "pass quantizer= to load it as something else", stacklevel=4)
        return "layernorm"
    if len(present) == len(ROBUST_BUFFERS):
        scale, center = state_dict["quantizer.scale"], state_dict["quantizer.center"]
        untouched = bool((scale == 1).all()) and bool((center == 0).all())  # what naive/LayerNorm models carry
        if not untouched:
            return "robust"
    raise ValueError(
        f"{source}: cannot tell which quantizer this seed-format file holds (use_layernorm=True with "
        f"calibration buffers {present} of {list(ROBUST_BUFFERS)}"
        + (", left at their untouched values" if len(present) == len(ROBUST_BUFFERS) else "")
        + "): pass quantizer='robust', 'layernorm' or 'naive' to load_tokenizer"
    )


def _seed_config(raw: dict[str, Any] | None, state_dict: dict[str, torch.Tensor], source: str,
                 quantizer: str | None = None) -> dict[str, Any]:
    """Config for a seed-format file: its own config if present, else the seed constructor's defaults."""
    if raw is None:
        warnings.warn(
            f"{source}: seed checkpoint without a config; using the seed constructor's defaults "
            "(num_layers=8, num_levels=7, use_layernorm=True) and shapes read from the weights",
            stacklevel=3,
        )
        raw = {}
    config = {k: int(raw[k]) for k in SEED_MODEL_KEYS if k in raw}
    if "encoder.0.weight" in state_dict:
        mlp_dim, action_dim = state_dict["encoder.0.weight"].shape
        config.setdefault("action_dim", int(action_dim))
        config["mlp_dim"] = int(mlp_dim)
    if "encoder.2.weight" in state_dict:
        config.setdefault("hidden_dim", int(state_dict["encoder.2.weight"].shape[0]))
    config["linear_skip"] = "encoder_skip.weight" in state_dict
    config["coarse_decoder"] = "coarse_decoder.0.weight" in state_dict
    config["quantizer"] = seed_quantizer(raw, state_dict, source, quantizer)
    ignored = sorted(set(raw) - set(SEED_MODEL_KEYS) - {"use_layernorm", "quantizer", "mlp_dim"})
    if ignored:
        warnings.warn(f"{source}: seed config keys not used by the model: {ignored}", stacklevel=3)
    return config


def _normalize_payload(raw: dict[str, Any], source: str, quantizer: str | None = None) -> dict[str, Any]:
    """Any supported layout → the rvq payload dict (config dict, state_dict, stats, metrics)."""
    if raw.get("format") == TOKENIZER_FORMAT:
        if raw.get("version") != TOKENIZER_VERSION:
            raise ValueError(f"{source}: tokenizer format version {raw.get('version')} is not supported "
                             f"(this rvq reads version {TOKENIZER_VERSION})")
        for key in ("config", "state_dict"):
            if key not in raw:
                raise ValueError(f"{source}: tokenizer checkpoint is missing the {key!r} entry")
        return raw
    if "format" in raw:
        raise ValueError(f"{source}: file format {raw['format']!r} is not a tokenizer ({TOKENIZER_FORMAT!r})")
    for key in ("model_state_dict", "model"):
        if key in raw and isinstance(raw[key], dict):
            state_dict = raw[key]
            return {
                "format": TOKENIZER_FORMAT,
                "version": TOKENIZER_VERSION,
                "config": _seed_config(raw.get("config"), state_dict, source, quantizer),
                "state_dict": state_dict,
                "action_stats": raw.get("action_stats"),
                "metrics": raw.get("metrics", {}),
                "seed_format": key,
            }
    raise ValueError(
        f"{source}: not a tokenizer checkpoint: expected format {TOKENIZER_FORMAT!r} or a seed dict with "
        f"'model' or 'model_state_dict'; found keys {sorted(raw)}"
    )


def _check_expected(config: TokenizerConfig, expected: TokenizerConfig | dict[str, Any], source: str) -> None:
    want = expected.to_dict() if isinstance(expected, TokenizerConfig) else dict(expected)
    have = config.to_dict()
    diffs = [f"{k}={have.get(k)!r} in file, {v!r} expected" for k, v in want.items() if have.get(k) != v]
    if diffs:
        raise ValueError(f"{source}: tokenizer config mismatch: " + "; ".join(diffs))


@dataclass(frozen=True)
class TokenizerCheckpoint:
    """A tokenizer file, read and checked: the model (eval mode), its action statistics (None when the file has
    none), its metrics, and its identity (`tokenizer_identity` of the file's payload)."""

    model: TokenizerModel
    action_stats: dict[str, Any] | None
    metrics: dict[str, Any]
    identity: str


def read_tokenizer(
    path: str | os.PathLike,
    expected_config: TokenizerConfig | dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
    quantizer: str | None = None,
) -> TokenizerCheckpoint:
    """Read a tokenizer (rvq or seed format).

    `quantizer` names the quantizer of a seed-format file whose own config cannot tell (see `seed_quantizer`);
    rvq-format files record theirs, and a different `quantizer` is refused.
    `expected_config` (a config or a partial dict) refuses a file whose config differs, naming each field.
    """
    source = str(path)
    payload = _normalize_payload(read_payload(path, "tokenizer checkpoint"), source, quantizer)
    if quantizer is not None and payload["config"].get("quantizer") != quantizer:
        raise ValueError(f"{source}: the file records quantizer {payload['config'].get('quantizer')!r}, "
                         f"not {quantizer!r}")
    try:
        config = TokenizerConfig.from_dict(payload["config"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: invalid tokenizer config: {exc}") from exc
    if expected_config is not None:
        _check_expected(config, expected_config, source)
    model = build_tokenizer_model(config)
    state_dict = dict(payload["state_dict"])
    check_finite_state_dict(state_dict, source)
    if payload.get("action_stats") is not None:
        try:
            ActionNormalizer.from_dict(payload["action_stats"])
        except ValueError as exc:
            raise ValueError(f"{source}: invalid action statistics: {exc}") from exc
    # Naive and layernorm quantizers never read their calibration buffers; seed files lack them.
    optional = (QUANTIZER_BUFFERS,) if "seed_format" in payload and config.quantizer != "robust" else ()
    check_state_dict(state_dict, model.state_dict(), source, optional=optional)
    model.load_state_dict(state_dict, strict=not optional)
    return TokenizerCheckpoint(model.to(device).eval(), payload.get("action_stats"), payload.get("metrics") or {},
                               content_hash(payload["config"], payload["state_dict"], payload.get("action_stats")))


def load_tokenizer(
    path: str | os.PathLike,
    expected_config: TokenizerConfig | dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
    quantizer: str | None = None,
) -> TokenizerModel:
    """The model of a tokenizer file, in eval mode (`read_tokenizer` for its statistics, metrics and identity;
    `rvq.tokenizer.ActionTokenizer.from_checkpoint` for raw actions in and out)."""
    return read_tokenizer(path, expected_config, device, quantizer).model
