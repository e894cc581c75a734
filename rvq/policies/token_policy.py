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
        self._summary = RSDSummary()
        self._latency: list[float] = []
        self._feature_ms: list[float] = []

    @classmethod
    def from_dir(cls, checkpoints: str | Path, mode: str = "rsd", device: str = "auto", trust_remote_code: bool = False,
                 **kwargs) -> "TokenPolicy":
        """Load a checkpoint folder. `trust_remote_code`: allow the backbone to run code it ships (OpenVLA)."""
        checkpoints = check_checkpoint_dir(checkpoints, mode)
        extractor = load_feature_source(backbone_source(checkpoints), device, trust_remote_code)
        tokenizer = ActionTokenizer.from_checkpoint(checkpoints / "tokenizer.pt", device=extractor.device)
        ids = {"tokenizer_identity": tokenizer.identity, "feature_identity": extractor.identity, "device": extractor.device}
        main = load_main(checkpoints / "main.pt", **ids)
        draft = load_draft(checkpoints / "draft.pt", **ids) if mode == "rsd" else None
        return cls(extractor, tokenizer, main, draft, mode=mode, **kwargs)

    def reset(self, instruction: str, task_id: int, trial: int) -> None:
        self.instruction = instruction
        self._summary = RSDSummary()
        self._latency, self._feature_ms = [], []

    @torch.inference_mode()
    def act(self, obs: dict[str, Any]) -> np.ndarray:
        start = time.perf_counter()
        features = self.extractor.features([{"instruction": self.instruction, **obs}])
        self._feature_ms.append((time.perf_counter() - start) * 1e3)
        if self.mode == "rsd":
            codes, stats = speculative_decode(self.draft, self.main, features, exact=self.exact, tau=self.tau,
                                              max_grid_distance=self.max_grid_distance)
            self._summary.add(stats)
        else:
            codes = greedy_decode(self.main, features)
        chunk = self.tokenizer.decode(codes)[0].numpy()
        self._latency.append((time.perf_counter() - start) * 1e3)
        return binarize_gripper(chunk, self.flip_gripper)

    def episode_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "chunks": len(self._latency),
            "mean_step_ms": float(np.mean(self._latency)) if self._latency else None,
            "mean_feature_ms": float(np.mean(self._feature_ms)) if self._feature_ms else None,
        }
        if self.mode == "rsd":
            stats["rsd"] = self._summary.to_dict()
        return stats
