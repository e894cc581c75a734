"""The token policies: feature extractor → draft + main (RSD) or main only → tokenizer decode → raw chunk.

A checkpoint folder holds `tokenizer.pt`, `draft.pt`, `main.pt` and its feature source: `backbone/` (a folder
`FeatureExtractor.from_pretrained` loads), a `backbone.txt` naming a hub id, or `features.json` (a state-feature
layout, `rvq.backbones.state`). Identities are checked when loading: heads must have been trained with this
tokenizer and these features.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rvq.backbones import FeatureExtractor
from rvq.backbones.source import load_feature_source
from rvq.backbones.state import FEATURES_FILE, StateFeatures
from rvq.models import load_draft, load_main
from rvq.policies.base import binarize_gripper
from rvq.rsd import DEFAULT_TAU, RSDSummary, greedy_decode, speculative_decode
from rvq.tokenizer import ActionTokenizer

MODES = ("rsd", "main")


def backbone_source(checkpoints: Path) -> str:
    """The folder's feature source: a backbone folder or hub id, or the path of its `features.json`."""
    sources = [checkpoints / "backbone", checkpoints / "backbone.txt", checkpoints / FEATURES_FILE]
    present = [p for p in sources if p.exists()]
    if len(present) > 1:
        raise ValueError(f"{checkpoints}: more than one feature source ({[p.name for p in present]}); keep one")
    if not present:
        raise FileNotFoundError(f"{checkpoints}: no feature source (backbone/ folder, backbone.txt with the VLA's "
                                f"hub id, or {FEATURES_FILE} with a state-feature layout)")
    if present[0].name == "backbone.txt":
        return present[0].read_text().strip()
    return str(present[0])


def check_checkpoint_dir(checkpoints: str | Path, mode: str) -> Path:
    """Refuse a folder that lacks what `mode` needs (before any simulator starts)."""
    checkpoints = Path(checkpoints)
    if not checkpoints.is_dir():
        raise FileNotFoundError(f"checkpoint folder not found: {checkpoints}")
    needed = ["tokenizer.pt", "main.pt"] + (["draft.pt"] if mode == "rsd" else [])
    missing = [name for name in needed if not (checkpoints / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{checkpoints}: missing {missing} for policy {mode!r}")
    backbone_source(checkpoints)
    return checkpoints


class TokenPolicy:
    def __init__(
        self,
        extractor: FeatureExtractor | StateFeatures,
        tokenizer: ActionTokenizer,
        main: torch.nn.Module,
        draft: torch.nn.Module | None = None,
        mode: str = "rsd",
        exact: bool = True,
        flip_gripper: bool = False,
        tau: float = DEFAULT_TAU,
        max_grid_distance: int | None = None,
    ) -> None:
        """`tau`, `max_grid_distance`: relaxed RSD's acceptance rules (`speculative_decode`), unused when exact."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "rsd" and draft is None:
            raise ValueError("the rsd policy needs a draft model")
        for name, model in (("main", main), ("draft", draft)):
            if model is None:
                continue
            if getattr(model, "tokenizer_identity", tokenizer.identity) != tokenizer.identity:
                raise ValueError(f"{name} model was trained with a different tokenizer")
            if getattr(model, "feature_identity", extractor.identity) != extractor.identity:
                raise ValueError(f"{name} model was trained on features of a different extractor")
            if model.feature_dim != extractor.feature_dim:
                raise ValueError(f"{name} model reads {model.feature_dim}-d features, extractor gives {extractor.feature_dim}")
        self.extractor, self.tokenizer, self.main, self.draft = extractor, tokenizer, main, draft
        self.mode, self.exact, self.flip_gripper = mode, exact, flip_gripper
        self.tau, self.max_grid_distance = tau, max_grid_distance
        self.name = mode
        self.instruction = ""
        self.stats = EpisodeStats(mode)

    @classmethod
    def from_dir(cls, checkpoints: str | Path, mode: str = "rsd", device: str = "auto", trust_remote_code: bool = False,
                 image_transform: str = "resize", **kwargs) -> "TokenPolicy":
        """Load a checkpoint folder. `trust_remote_code`: allow the backbone to run code it ships (OpenVLA);
        `image_transform`: the VLA's image preprocessing (`rvq.backbones.preprocess`), as its heads' data had."""
        checkpoints = check_checkpoint_dir(checkpoints, mode)
        extractor = load_feature_source(backbone_source(checkpoints), device, trust_remote_code, image_transform)
        tokenizer = ActionTokenizer.from_checkpoint(checkpoints / "tokenizer.pt", device=extractor.device)
        ids = {"tokenizer_identity": tokenizer.identity, "feature_identity": extractor.identity, "device": extractor.device}
        main = load_main(checkpoints / "main.pt", **ids)
        draft = load_draft(checkpoints / "draft.pt", **ids) if mode == "rsd" else None
        return cls(extractor, tokenizer, main, draft, mode=mode, **kwargs)

    def reset(self, instruction: str, task_id: int, trial: int) -> None:
        self.instruction = instruction
        self.stats = EpisodeStats(self.mode)

    @torch.inference_mode()
    def act_batch(self, observations: list[dict[str, Any]], instructions: list[str],
                  pad_to: int | None = None) -> list[tuple[np.ndarray, dict[str, Any]]]:
        """B observations (one per episode) → B `(chunk [C, 7], step stats)`; what a policy service calls.

        pad_to: run every batch at this size (rows padded with copies of the first). Rows of a fixed-shape
        computation do not depend on the other rows, so an episode's actions then do not depend on which requests
        happened to share its batch (batch invariance: runs are reproducible whatever the timing)."""
        if len(observations) != len(instructions) or not observations:
            raise ValueError(f"{len(observations)} observations and {len(instructions)} instructions")
        if pad_to is not None and len(observations) > pad_to:
            raise ValueError(f"batch of {len(observations)} is larger than pad_to={pad_to}")
        rows = [{"instruction": text, **obs} for obs, text in zip(observations, instructions)]
        rows += [rows[0]] * ((pad_to or len(rows)) - len(rows))
        start = time.perf_counter()
        features = self.extractor.features(rows)
        feature_ms = (time.perf_counter() - start) * 1e3
        stats = None
        if self.mode == "rsd":
            codes, stats = speculative_decode(self.draft, self.main, features, exact=self.exact, tau=self.tau,
                                              max_grid_distance=self.max_grid_distance)
        else:
            codes = greedy_decode(self.main, features)
        chunks = self.tokenizer.decode(codes).numpy()
        step_ms = (time.perf_counter() - start) * 1e3
        return [(binarize_gripper(chunks[i], self.flip_gripper),
                 {"ms": step_ms, "feature_ms": feature_ms, "rsd": stats.row(i) if stats is not None else None,
                  "batch": len(observations)})
                for i in range(len(observations))]

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        chunk, step = self.act_batch([obs], [self.instruction])[0]
        self.stats.add(step)
        return chunk

    def episode_stats(self) -> dict[str, Any]:
        return self.stats.to_dict()


class EpisodeStats:
    """What a token policy did over one episode: chunks, latency, RSD acceptance (from `act_batch`'s step stats)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.summary = RSDSummary()
        self.latency: list[float] = []
        self.feature_ms: list[float] = []
        self.batch: list[int] = []

    def add(self, step: dict[str, Any]) -> None:
        self.latency.append(step["ms"])
        self.feature_ms.append(step["feature_ms"])
        self.batch.append(step["batch"])
        if step["rsd"] is not None:
            self.summary.add(step["rsd"])

    def to_dict(self) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "chunks": len(self.latency),
            "mean_step_ms": float(np.mean(self.latency)) if self.latency else None,
            "mean_feature_ms": float(np.mean(self.feature_ms)) if self.feature_ms else None,
        }
        if self.batch and max(self.batch) > 1:
            stats["mean_batch"] = float(np.mean(self.batch))
        if self.mode == "rsd":
            stats["rsd"] = self.summary.to_dict()
        return stats
