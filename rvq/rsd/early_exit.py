"""When early exit stops: after the first `k` layers whose every completion decodes to an executed action within a
tolerance of what the prefix decodes to (certified), or at a fixed depth.

The executed action is what the policy's action steps make of the decode: raw units, the gripper binarized. So a
chunk may stop at depth k when, for every chunk step, (a) each continuous dimension's certified interval lies within
`tolerance` of the prefix's decode, and (b) the gripper's interval lies on one side of the binarization split, so no
completion can flip it. `bound` is (a)'s largest deviation, in raw action units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rvq.processors.action import GRIPPER, binarize_gripper, gripper_split
from rvq.rsd.decode import early_exit_decode, greedy_decode
from rvq.rsd.stats import ExitStats
from rvq.tokenizer import ActionTokenizer


# The tolerance `rvq pipeline`'s bundles declare and its main_exit row runs with (raw action units), and what its
# offline probe also measures. Chosen by closed-loop evidence (docs/history/RESULTS.md, "Decoding"): on the README main job's
# policy, libero_object tasks 0-2 x 50 official initial states, full greedy 136/150, 0.1 135/150 (2.11 main passes
# per chunk), 0.01 133/150 (3.03 passes); neither differs from full greedy (McNemar p = 1.0 and 0.25).
DEFAULT_EXIT_TOLERANCE = 0.1
PROBE_TOLERANCES = (1e-3, 1e-2, 1e-1)
PROBE_DEPTHS = (1, 2, 3)


def check_tolerance(value: float, name: str) -> float:
    """A finite, non-negative tolerance (raw action units), or refuse naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0 (raw action units), got {value!r}")
    return float(value)


@dataclass(frozen=True)
class ExitRule:
    """A `DepthRule` (`rvq.rsd.decode.early_exit_decode`). tolerance: ε in raw action units (None: no certified stop);
    depth: stop at this many layers whatever the bound (None: no fixed depth); at least one is set. gripper_split: the
    binarization threshold of the gripper dimension (`rvq.processors.binarize_gripper`: 0, or 0.5 when flipped), or
    None when the gripper is executed as it decodes (it is then bounded with the other dimensions)."""

    tokenizer: ActionTokenizer
    tolerance: float | None = None
    depth: int | None = None
    gripper_split: float | None = 0.0
    hopeless: frozenset[int] = field(default=frozenset(), init=False)  # depths never checked (`_hopeless_depths`)

    def __post_init__(self) -> None:
        if self.tolerance is None and self.depth is None:
            raise ValueError("an exit rule needs a tolerance, a depth or both")
        if self.tolerance is not None:
            object.__setattr__(self, "tolerance", check_tolerance(self.tolerance, "early-exit tolerance"))
        layers = self.tokenizer.config.num_layers
        if self.depth is not None and (isinstance(self.depth, bool) or not isinstance(self.depth, int)
                                       or not 1 <= self.depth <= layers):
            raise ValueError(f"exit depth must be a whole number of layers in [1, {layers}], got {self.depth!r}")
        object.__setattr__(self, "hopeless", self._hopeless_depths())

    def _hopeless_depths(self) -> frozenset[int]:
        """Depths at which no chunk can be certified within the tolerance: some continuous dimension's interval is at
        least this wide for any codes (`PrefixIntervals.min_half_width`, through the unnormalization's slope; only the
        guard's clipping could narrow it). Not checking there only ever decodes deeper: never less certified."""
        if self.tolerance is None:
            return frozenset()
        normalizer = self.tokenizer.normalizer
        slope = torch.as_tensor((normalizer.high - normalizer.low) / 2, dtype=torch.float32)
        continuous = torch.as_tensor(normalizer.mask)
        if self.gripper_split is not None:
            continuous[GRIPPER] = False
        hopeless = set()
        for k in range(1, self.tokenizer.config.num_layers):
            width = self.tokenizer.intervals.min_half_width(k).cpu().float() * slope
            if bool((width[continuous] > self.tolerance).any()):
                hopeless.add(k)
        return frozenset(hopeless)

    def __call__(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """codes `[B, C, H, k]` → `(done [B], bound [B], prefix [B, C, A] or None)`: bound in raw units, the
        continuous dimensions' largest; prefix the normalized decode of the codes (the tokenizer's, bit for bit).
        A depth the rule cannot stop at (below its fixed depth, where the tolerance cannot be certified) is not
        bounded: not done, bound NaN, no decode."""
        k = codes.shape[-1]
        fixed = self.depth is not None and k >= self.depth
        if not fixed and (self.tolerance is None or k in self.hopeless):
            nothing = torch.zeros(codes.shape[0], dtype=torch.bool)
            return nothing, torch.full((codes.shape[0],), float("nan"), dtype=torch.float64), None
        normalized, prefix, lo, hi = self.tokenizer.completion_interval(codes)
        # in float64: the difference of two float32 values is exact there, so the bound is never rounded below the
        # distance from the prefix to an end of the interval (an end clipped at the guard has no slack of its own)
        prefix64 = prefix.double()
        deviation = torch.maximum(hi.double() - prefix64, prefix64 - lo.double())  # [B, C, A]
        if self.gripper_split is None:
            bound = deviation.flatten(1).amax(dim=1)
            gripper_fixed = torch.ones_like(bound, dtype=torch.bool)
        else:
            bound = deviation[..., :GRIPPER].flatten(1).amax(dim=1)
            split = self.gripper_split
            gripper_fixed = ((lo[..., GRIPPER] > split) | (hi[..., GRIPPER] <= split)).all(dim=1)
        done = torch.full_like(gripper_fixed, fixed)
        if self.tolerance is not None:
            done |= (bound <= self.tolerance) & gripper_fixed
        return done, bound, normalized


def probe_rules(tokenizer: ActionTokenizer, tolerances: tuple[float, ...] | list[float],
                depths: tuple[int, ...] | list[int], flip_gripper: bool = False) -> dict[str, ExitRule]:
    """The rules an offline probe compares: `"tolerance EPS"` for each tolerance, `"depth K"` for each depth."""
    split = gripper_split(flip_gripper)
    rules = {f"tolerance {eps:g}": ExitRule(tokenizer, tolerance=eps, gripper_split=split) for eps in tolerances}
    rules.update({f"depth {d}": ExitRule(tokenizer, depth=d, gripper_split=split) for d in depths})
    return rules


def decode_at_depths(tokenizer: ActionTokenizer, codes: torch.Tensor, stats: ExitStats) -> torch.Tensor:
    """codes `[B, C, H, L]` of an early exit → normalized actions `[B, C, A]`, chunk b decoded from its first
    `stats.depth[b]` layers: the exit rule's own decode where it made one (the tokenizer's, bit for bit), else one
    tokenizer call per distinct depth."""
    depth = stats.depth
    out = None if stats.decoded is None else stats.decoded.cpu().clone()
    missing = depth >= stats.num_layers if out is not None else torch.ones_like(depth, dtype=torch.bool)
    for d in depth[missing].unique().tolist():
        rows = ((depth == d) & missing).nonzero()[:, 0]
        decoded = tokenizer.decode_normalized(codes[rows.to(codes.device), ..., :d])
        if out is None:
            out = decoded.new_empty(codes.shape[0], *decoded.shape[1:])
        out[rows] = decoded
    return out


@torch.inference_mode()
def exit_departure(main, tokenizer: ActionTokenizer, features: torch.Tensor, valid: torch.Tensor, rule: ExitRule,
                   flip_gripper: bool = False) -> dict[str, Any]:
    """Early exit against full greedy decoding, offline on rows `features [N, D]` (`valid [N, C]`: the chunk steps
    that hold real actions): depth per chunk, the certified bound, and the measured departure of the executed action
    (raw units, gripper binarized) from full greedy's."""
    full = greedy_decode(main, features)
    codes, stats = early_exit_decode(main, features, rule)

    def executed(normalized: torch.Tensor) -> np.ndarray:
        return binarize_gripper(tokenizer.normalizer.unnormalize(normalized).numpy(), flip_gripper)

    gap = np.abs(executed(decode_at_depths(tokenizer, codes, stats))
                 - executed(tokenizer.decode_normalized(full)))  # [N, C, A]
    mask = valid.cpu().numpy().astype(bool)
    continuous = np.where(mask[..., None], gap[..., :-1], 0.0)
    per_chunk = continuous.reshape(len(gap), -1).max(axis=1)
    depth = stats.depth.numpy()
    bound = stats.bound.numpy()
    early = depth < tokenizer.config.num_layers
    return {
        "rows": int(len(depth)), "mean_depth": float(depth.mean()),
        "depth_counts": {str(int(d)): int((depth == d).sum()) for d in np.unique(depth)},
        "mean_bound": float(bound[early].mean()) if early.any() else 0.0,
        "max_bound": float(bound[early].max()) if early.any() else 0.0,
        "max_departure_raw": float(per_chunk.max()),
        "mean_departure_raw": float(per_chunk.mean()),
        "action_mse_vs_full_raw": float((continuous ** 2).sum() / max(1, mask.sum() * (gap.shape[-1] - 1))),
        "gripper_flips": int((np.where(mask, gap[..., -1], 0.0) > 0).sum()),
        "within_bound": float((per_chunk <= np.where(early, bound, 0.0) + 1e-12).mean()),
    }
