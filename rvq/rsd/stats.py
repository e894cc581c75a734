"""What residual speculative decoding did: per chunk and aggregated over many chunks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass
class RSDStats:
    """One `speculative_decode` call on a batch of B chunks.

    accepted: `[B]` draft layers accepted per sample (0..k). agreement: `[B, k]` fraction of
    positions where the draft's token equals the main model's choice, per proposed layer.
    main_passes: main-model passes for the batch (verification included). Times in milliseconds.
    """

    proposed_layers: int
    num_layers: int
    accepted: torch.Tensor
    agreement: torch.Tensor
    main_passes: int
    draft_ms: float
    main_ms: float
    total_ms: float
    exact: bool

    @property
    def batch_size(self) -> int:
        return int(self.accepted.shape[0])

    def row(self, i: int) -> "RSDStats":
        """Sample `i` of the batch (times and passes are the batch's: what its decode actually cost)."""
        return RSDStats(self.proposed_layers, self.num_layers, self.accepted[i : i + 1], self.agreement[i : i + 1],
                        self.main_passes, self.draft_ms, self.main_ms, self.total_ms, self.exact)

    def layer_acceptance(self) -> list[float]:
        """Fraction of samples whose layer j was accepted, j < k."""
        return [float((self.accepted > j).float().mean()) for j in range(self.proposed_layers)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "proposed_layers": self.proposed_layers,
            "accepted_layers": self.accepted.tolist(),
            "acceptance_rate": float(self.accepted.float().mean() / self.proposed_layers),
            "layer_acceptance": self.layer_acceptance(),
            "agreement": self.agreement.mean(dim=0).tolist(),
            "main_passes": self.main_passes,
            "draft_ms": self.draft_ms,
            "main_ms": self.main_ms,
            "total_ms": self.total_ms,
            "exact": self.exact,
        }


@dataclass
class RSDSummary:
    """Accumulates `RSDStats` over calls (e.g. over an evaluation episode or a benchmark)."""

    accepted: list[int] = field(default_factory=list)
    proposed_layers: int | None = None
    main_passes: list[int] = field(default_factory=list)
    draft_ms: list[float] = field(default_factory=list)
    main_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)

    def add(self, stats: RSDStats) -> None:
        if self.proposed_layers is not None and stats.proposed_layers != self.proposed_layers:
            raise ValueError(f"cannot mix k={stats.proposed_layers} with k={self.proposed_layers}")
        self.proposed_layers = stats.proposed_layers
        self.accepted += stats.accepted.tolist()
        self.main_passes.append(stats.main_passes)
        self.draft_ms.append(stats.draft_ms)
        self.main_ms.append(stats.main_ms)
        self.total_ms.append(stats.total_ms)

    def to_dict(self) -> dict[str, Any]:
        if not self.accepted:
            return {"chunks": 0}
        accepted = np.asarray(self.accepted)
        k = self.proposed_layers or 1
        return {
            "chunks": int(accepted.size),
            "mean_accepted_layers": float(accepted.mean()),
            "acceptance_rate": float(accepted.mean() / k),
            "layer_acceptance": [float((accepted > j).mean()) for j in range(k)],
            "mean_main_passes": float(np.mean(self.main_passes)),
            "mean_draft_ms": float(np.mean(self.draft_ms)),
            "mean_main_ms": float(np.mean(self.main_ms)),
            "mean_total_ms": float(np.mean(self.total_ms)),
        }


@dataclass
class ExitStats:
    """One `early_exit_decode` call on a batch of B chunks.

    depth: `[B]` layers decoded per chunk (1..L; L when the rule never stopped it). bound: `[B]` what the depth rule
    certified at that depth (raw action units for the certified rule; 0 at the full depth, NaN for a rule that
    certifies nothing). main_passes: one-layer main passes for the batch (its deepest chunk). Time in milliseconds.
    """

    depth: torch.Tensor
    bound: torch.Tensor
    num_layers: int
    main_passes: int
    total_ms: float
    decoded: torch.Tensor | None = None  # [B, C, ...]: the rule's decode of each chunk that stopped early (else 0)

    @property
    def batch_size(self) -> int:
        return int(self.depth.shape[0])

    def row(self, i: int) -> "ExitStats":
        """Chunk `i` of the batch (passes and time are the batch's; the decode stays with the batch)."""
        return ExitStats(self.depth[i : i + 1], self.bound[i : i + 1], self.num_layers, self.main_passes,
                         self.total_ms)


@dataclass
class ExitSummary:
    """Accumulates `ExitStats` over calls (an episode, a benchmark)."""

    depth: list[int] = field(default_factory=list)
    bound: list[float] = field(default_factory=list)
    main_passes: list[int] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)

    def add(self, stats: ExitStats) -> None:
        self.depth += stats.depth.tolist()
        self.bound += stats.bound.tolist()
        self.main_passes.append(stats.main_passes)
        self.total_ms.append(stats.total_ms)

    def to_dict(self) -> dict[str, Any]:
        if not self.depth:
            return {"chunks": 0}
        depth = np.asarray(self.depth)
        bound = np.asarray(self.bound, dtype=np.float64)
        certified = bound[np.isfinite(bound)]
        return {
            "chunks": int(depth.size),
            "mean_depth": float(depth.mean()),
            "depth_counts": {str(int(d)): int((depth == d).sum()) for d in np.unique(depth)},
            "mean_main_passes": float(np.mean(self.main_passes)),
            "mean_bound": float(certified.mean()) if certified.size else None,
            "max_bound": float(certified.max()) if certified.size else None,
            "mean_total_ms": float(np.mean(self.total_ms)),
            # per chunk, in order: the depth decoded and its certified bound (None where the rule claimed none)
            "depth_per_chunk": [int(d) for d in self.depth],
            "bound_per_chunk": [float(b) if np.isfinite(b) else None for b in bound.tolist()],
        }


def token_departure(codes: torch.Tensor, exact_codes: torch.Tensor) -> dict[str, Any]:
    """How far relaxed decoding departs from exact decoding: codes `[B, C, H, L]` each.

    token_mismatch: fraction of tokens that differ; layer_mismatch: the same per layer;
    chunk_mismatch: fraction of chunks with any difference.
    """
    if codes.shape != exact_codes.shape:
        raise ValueError(f"codes {list(codes.shape)} and exact codes {list(exact_codes.shape)} differ in shape")
    diff = codes != exact_codes
    return {
        "token_mismatch": float(diff.float().mean()),
        "layer_mismatch": diff.float().mean(dim=(0, 1, 2)).tolist(),
        "chunk_mismatch": float(diff.flatten(1).any(dim=1).float().mean()),
    }
