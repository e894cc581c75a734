"""The token policies: observation steps → feature source → draft + main (RSD) or main only → tokenizer decode →
action steps (unnormalize, gripper) → raw chunk.

A policy runs a `PolicyBundle` (`rvq.policies.bundle`): a folder with a manifest declaring the steps, the tokenizer
and heads stored hub-style and the feature source, verified together once when it loads (an older folder of
`tokenizer.pt`, `main.pt`, `draft.pt` still loads, read-only).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rvq.policies.bundle import MODES, PolicyBundle, load_bundle, verify_bundle
from rvq.processors import BinarizeGripper, gripper_flip, gripper_split
from rvq.rsd import (DEFAULT_TAU, ExitRule, ExitSummary, RSDSummary, decode_at_depths, early_exit_decode, greedy_decode,
                     speculative_decode)


def check_checkpoint_dir(checkpoints: str | Path, mode: str) -> Path:
    """Refuse a policy folder that lacks what `mode` needs or whose parts do not belong together (before any
    simulator starts; a VLA backbone is not loaded here)."""
    return verify_bundle(checkpoints, mode).root


class TokenPolicy:
    def __init__(
        self,
        bundle: PolicyBundle,
        mode: str = "rsd",
        exact: bool = True,
        flip_gripper: bool | None = None,
        tau: float = DEFAULT_TAU,
        max_grid_distance: int | None = None,
        exit_tolerance: float | None = None,
        exit_depth: int | None = None,
    ) -> None:
        """`bundle`: the verified parts and steps; `flip_gripper`: None keeps the bundle's gripper step, a value
        replaces its setting; `tau`, `max_grid_distance`: relaxed RSD's acceptance rules (`speculative_decode`),
        unused when exact; `exit_tolerance` (raw action units; 0 or None: decode every layer), `exit_depth`: main-only
        early exit (`rvq.rsd.early_exit.ExitRule`)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode not in bundle.modes:
            raise ValueError(f"policy {mode!r} needs a draft head; this bundle has main only")
        self.bundle = bundle
        self.features, self.tokenizer, self.main = bundle.features, bundle.tokenizer, bundle.main
        self.draft = bundle.draft if mode == "rsd" else None
        self.mode, self.exact = mode, exact
        self.actions = bundle.actions
        if flip_gripper is not None:
            if not self.actions.find(BinarizeGripper):
                raise ValueError("flip_gripper: the bundle's action steps do not binarize the gripper")
            self.actions = self.actions.replace(BinarizeGripper, flip=flip_gripper)
        self.flip_gripper = gripper_flip(self.actions)
        self.tau, self.max_grid_distance = tau, max_grid_distance
        self.exit_rule = None
        if exit_tolerance or exit_depth is not None:
            if mode != "main":
                raise ValueError("early exit decodes with the main head alone: use policy 'main'")
            split = gripper_split(self.flip_gripper) if self.actions.find(BinarizeGripper) else None
            self.exit_rule = ExitRule(self.tokenizer, exit_tolerance or None, exit_depth, split)
        self.name = mode
        self.instruction = ""
        self.stats = EpisodeStats(mode)

    @classmethod
    def from_dir(cls, checkpoints: str | Path, mode: str = "rsd", device: str = "auto", trust_remote_code: bool = False,
                 image_transform: str | None = None, **kwargs) -> "TokenPolicy":
        """Load a policy folder. `trust_remote_code`: allow the backbone to run code it ships (OpenVLA);
        `image_transform`: the VLA's image preprocessing (`rvq.backbones.preprocess`), as its heads' data had
        (None: the bundle's protocol, else resize)."""
        bundle = load_bundle(checkpoints, mode, device, trust_remote_code, image_transform)
        return cls(bundle, mode=mode, **kwargs)

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
        features = self.features.features(rows)
        feature_ms = (time.perf_counter() - start) * 1e3
        stats = exits = None
        if self.mode == "rsd":
            codes, stats = speculative_decode(self.draft, self.main, features, exact=self.exact, tau=self.tau,
                                              max_grid_distance=None if self.exact else self.max_grid_distance)
            normalized, passes = self.tokenizer.decode_normalized(codes), stats.main_passes
        elif self.exit_rule is not None:
            codes, exits = early_exit_decode(self.main, features, self.exit_rule)
            normalized, passes = decode_at_depths(self.tokenizer, codes, exits), exits.main_passes
        else:
            normalized = self.tokenizer.decode_normalized(greedy_decode(self.main, features))
            passes = self.main.num_layers
        chunks = np.asarray(self.actions(normalized), dtype=np.float64)  # [B, C, A]
        step_ms = (time.perf_counter() - start) * 1e3
        return [(chunks[i],
                 {"ms": step_ms, "feature_ms": feature_ms, "rsd": stats.row(i) if stats is not None else None,
                  "exit": exits.row(i) if exits is not None else None, "main_passes": passes,
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
        self.exits = ExitSummary()
        self.latency: list[float] = []
        self.passes: list[int] = []
        self.feature_ms: list[float] = []
        self.batch: list[int] = []

    def add(self, step: dict[str, Any]) -> None:
        self.latency.append(step["ms"])
        if step.get("main_passes") is not None:
            self.passes.append(step["main_passes"])
        self.feature_ms.append(step["feature_ms"])
        self.batch.append(step["batch"])
        if step["rsd"] is not None:
            self.summary.add(step["rsd"])
        if step.get("exit") is not None:
            self.exits.add(step["exit"])

    def to_dict(self) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "chunks": len(self.latency),
            "mean_step_ms": float(np.mean(self.latency)) if self.latency else None,
            "mean_feature_ms": float(np.mean(self.feature_ms)) if self.feature_ms else None,
        }
        if self.passes:
            stats["mean_main_passes"] = float(np.mean(self.passes))
        if self.batch and max(self.batch) > 1:
            stats["mean_batch"] = float(np.mean(self.batch))
        if self.mode == "rsd":
            stats["rsd"] = self.summary.to_dict()
        if self.exits.depth:
            stats["exit"] = self.exits.to_dict()
        return stats
