"""Action chunks and the split by episode.

A chunk starts at every step of an episode and holds the next `chunk_size` actions; past the
episode's end the last action is repeated (as OpenVLA-OFT pads), and `valid` marks real steps
so padding never counts as data in metrics.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from rvq.data.episodes import Episode


@dataclass(frozen=True)
class ChunkSet:
    """actions: `[N, C, A]`; valid: `[N, C]` bool; episode: `[N]` index into the episode list."""

    actions: np.ndarray
    valid: np.ndarray
    episode: np.ndarray

    def __len__(self) -> int:
        return int(self.actions.shape[0])


def chunk_episode(actions: np.ndarray, chunk_size: int, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """`actions: [T, A]` → `(chunks [N, C, A], valid [N, C])`, one chunk per `stride` steps."""
    steps = actions.shape[0]
    starts = np.arange(0, steps, stride)
    index = starts[:, None] + np.arange(chunk_size)[None, :]
    valid = index < steps
    return actions[np.minimum(index, steps - 1)], valid


def make_chunks(episodes: list[Episode], chunk_size: int, stride: int = 1) -> ChunkSet:
    """Chunks of every episode, concatenated."""
    if not episodes:
        raise ValueError("no episodes to chunk")
    chunks, valids, owners = [], [], []
    for i, ep in enumerate(episodes):
        c, v = chunk_episode(ep.actions, chunk_size, stride)
        chunks.append(c)
        valids.append(v)
        owners.append(np.full(len(c), i))
    return ChunkSet(np.concatenate(chunks).astype(np.float32), np.concatenate(valids), np.concatenate(owners))


def split_by_episode(
    episodes: list[Episode], val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[Episode], list[Episode]]:
    """Hold out whole demonstrations (all arms of a demo together), stratified by source file.

    Each file with at least two demos contributes `max(1, round(val_fraction * demos))` to
    validation. Never splits by step.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    by_file: dict[str, list[str]] = defaultdict(list)
    for ep in episodes:
        if ep.group not in by_file[ep.source]:
            by_file[ep.source].append(ep.group)
    rng = random.Random(seed)
    val_groups: set[str] = set()
    for source in sorted(by_file):
        groups = sorted(by_file[source])
        if len(groups) < 2:
            continue
        rng.shuffle(groups)
        val_groups.update(groups[: max(1, round(val_fraction * len(groups)))])
    if not val_groups:
        raise ValueError("cannot split by episode: no file has two or more demonstrations")
    train = [ep for ep in episodes if ep.group not in val_groups]
    val = [ep for ep in episodes if ep.group in val_groups]
    return train, val
