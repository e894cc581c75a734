"""Temporal ensembling of action chunks (ACT, Zhao et al. 2023): the policy acts on every step, and the action
executed at step t is the weighted mean of every chunk's prediction for step t, the oldest weighted most
(w_i = exp(-m * i), i = 0 for the oldest chunk still covering t). The gripper is a command, not a position: its
weighted mean is split at 0 into the two commands (open -1, close +1), as the policies binarize it.

Why here and not a library: ACT ships it inside its evaluation script, not as a package; it is a few lines.
"""

from __future__ import annotations

from collections import deque

import numpy as np

DEFAULT_ENSEMBLE_DECAY = 0.01  # ACT's m


class TemporalEnsembler:
    """Holds the chunks `[C, A]` that still cover the current step; `step(chunk)` takes the newest and returns the
    action `[A]` to execute now."""

    def __init__(self, decay: float = DEFAULT_ENSEMBLE_DECAY) -> None:
        if not decay >= 0.0:
            raise ValueError(f"temporal ensemble decay must be >= 0, got {decay}")
        self.decay = decay
        self.chunks: deque[np.ndarray] = deque()  # oldest first; chunk j's row for now is its age
        self.ages: deque[int] = deque()

    def reset(self) -> None:
        self.chunks.clear()
        self.ages.clear()

    def step(self, chunk: np.ndarray) -> np.ndarray:
        chunk = np.asarray(chunk, dtype=np.float64)
        if chunk.ndim != 2 or not len(chunk):
            raise ValueError(f"a chunk must be [C, A] with C >= 1, got shape {chunk.shape}")
        if self.chunks and chunk.shape != self.chunks[-1].shape:
            raise ValueError(f"chunk shape changed within an episode: {self.chunks[-1].shape} then {chunk.shape}")
        self.ages = deque(age + 1 for age in self.ages)
        self.chunks.append(chunk)
        self.ages.append(0)
        while self.ages[0] >= len(chunk):  # that chunk no longer covers this step
            self.chunks.popleft()
            self.ages.popleft()
        rows = np.stack([c[age] for c, age in zip(self.chunks, self.ages)])  # [K, A], oldest first
        weights = np.exp(-self.decay * np.arange(len(rows)))
        action = weights @ rows / weights.sum()
        action[-1] = 1.0 if action[-1] > 0 else -1.0
        return action
