"""Phase 2 data files in rvq's real format (`rvq.data.phase2`), written from arrays, a block of rows at a time.

Used by tests that need files of a chosen size (larger than a memory budget) without running a feature extractor.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from rvq.data.phase2 import PHASE2_FORMAT, PHASE2_VERSION


def write_phase2_file(path: Path, rows: int, feature_dim: int, codes_shape: tuple[int, int, int] = (2, 3, 4),
                      steps_per_episode: int = 20, num_tasks: int = 2, seed: int = 0, block: int = 2048,
                      nan_row: int | None = None) -> Path:
    """`rows` rows of Gaussian features `[rows, feature_dim]`, codes in [0, 5), episodes of `steps_per_episode`
    steps alternating over `num_tasks` tasks; `nan_row` poisons one feature row."""
    rng = np.random.default_rng(seed)
    chunk, hidden, layers = codes_shape
    episode = np.arange(rows) // steps_per_episode
    num_episodes = int(episode[-1]) + 1
    with h5py.File(path, "w") as f:
        features = f.create_dataset("features", (rows, feature_dim), dtype="float32")
        for start in range(0, rows, block):
            stop = min(rows, start + block)
            features[start:stop] = rng.standard_normal((stop - start, feature_dim), dtype=np.float32)
        if nan_row is not None:
            features[nan_row, 0] = np.nan
        f["codes"] = rng.integers(0, 5, (rows, chunk, hidden, layers)).astype(np.uint8)
        f["actions"] = rng.uniform(-1, 1, (rows, chunk, 7)).astype(np.float32)
        f["valid"] = np.ones((rows, chunk), dtype=bool)
        f["episode"] = episode.astype(np.int32)
        f["task"] = (episode % num_tasks).astype(np.int32)
        f["step"] = (np.arange(rows) % steps_per_episode).astype(np.int32)
        f.attrs["format"] = PHASE2_FORMAT
        f.attrs["version"] = PHASE2_VERSION
        f.attrs["tokenizer_identity"] = "tok"
        f.attrs["feature_identity"] = "feat"
        f.attrs["feature_info"] = json.dumps({"feature_dim": feature_dim})
        f.attrs["instructions"] = json.dumps([f"task {t}" for t in range(num_tasks)])
        f.attrs["episodes"] = json.dumps([f"ep{i}" for i in range(num_episodes)])
    return path
