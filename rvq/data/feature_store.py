"""Phase 2 features read on demand: `[N, D]` float32 rows of the `features` datasets of one or more HDF5 files.

Why: reading every feature into RAM (`f["features"][()]`) does not scale: 4096-d features over LIBERO-90's demos
are ~10 GB. `LazyFeatures` holds file names and row numbers only; indexing it reads just those rows (one h5py read
per file, indices sorted as h5py requires) and returns a tensor. Files are opened read-only and never written.
`load_phase2_data` returns one when the features exceed a memory budget (`RVQ_FEATURE_MEMORY_MB`, default 4096).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np
import torch

DEFAULT_BUDGET_MB = 4096
# Rows per read when scanning a whole file (finiteness check, statistics): bounded memory whatever its size.
SCAN_BYTES = 8 * 2**20


def feature_memory_budget() -> int:
    """Bytes of features `load_phase2_data` keeps in RAM before it reads them lazily (`RVQ_FEATURE_MEMORY_MB`)."""
    raw = os.environ.get("RVQ_FEATURE_MEMORY_MB", str(DEFAULT_BUDGET_MB))
    try:
        megabytes = float(raw)
    except ValueError as exc:
        raise ValueError(f"RVQ_FEATURE_MEMORY_MB must be a number of megabytes, got {raw!r}") from exc
    if megabytes < 0:
        raise ValueError(f"RVQ_FEATURE_MEMORY_MB must be >= 0, got {raw!r}")
    return int(megabytes * 2**20)


class LazyFeatures:
    """Rows `rows` (global numbers over the concatenated files) of the files' `features` datasets.

    `paths[i]` holds `lengths[i]` rows of width `dim`. Indexing (`features[idx]`, an int, slice, index or boolean
    tensor/array) returns a float32 tensor `[len(idx), dim]`; `take(idx)` returns a lazy view instead.
    """

    ndim = 2
    dtype = torch.float32

    def __init__(self, paths: Sequence[Path], lengths: Sequence[int], dim: int, rows: np.ndarray | None = None):
        if len(paths) != len(lengths) or not paths:
            raise ValueError("LazyFeatures needs one length per file and at least one file")
        self.paths = [Path(p) for p in paths]
        self.lengths = [int(n) for n in lengths]
        self.dim = int(dim)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)
        self.rows = np.arange(self.offsets[-1], dtype=np.int64) if rows is None else np.asarray(rows, np.int64)
        self._files: dict[int, h5py.File] = {}

    # --- shape ------------------------------------------------------------------------------------

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.rows), self.dim))

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def nbytes(self) -> int:
        return len(self.rows) * self.dim * 4

    # --- views and reads --------------------------------------------------------------------------

    def _select(self, key) -> np.ndarray:
        if isinstance(key, torch.Tensor):
            key = key.cpu().numpy()
        if isinstance(key, (int, np.integer)):
            return self.rows[[int(key)]]
        index = np.asarray(key) if not isinstance(key, slice) else key
        if isinstance(index, np.ndarray) and index.dtype == bool and index.shape != self.rows.shape:
            raise IndexError(f"boolean index of length {index.shape} for {len(self.rows)} feature rows")
        return self.rows[index]

    def take(self, key) -> "LazyFeatures":
        """A lazy view of some rows (same key types as indexing)."""
        return LazyFeatures(self.paths, self.lengths, self.dim, self._select(key))

    def __getitem__(self, key) -> torch.Tensor:
        rows = self._select(key)
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        file_of = np.searchsorted(self.offsets, rows, side="right") - 1
        for index in np.unique(file_of):
            where = np.nonzero(file_of == index)[0]
            local = rows[where] - self.offsets[index]
            dataset = self._dataset(int(index))
            if len(local) and np.all(np.diff(local) == 1):  # one contiguous block: a slice read
                out[where] = dataset[int(local[0]) : int(local[-1]) + 1]
            else:
                unique, inverse = np.unique(local, return_inverse=True)  # h5py wants increasing, distinct indices
                out[where] = dataset[unique][inverse]
        return torch.from_numpy(out)

    def chunks(self, rows_per_chunk: int | None = None) -> Iterator[torch.Tensor]:
        """All rows in order, `[<= rows_per_chunk, dim]` at a time (default: `SCAN_BYTES` per chunk)."""
        size = rows_per_chunk or max(1, SCAN_BYTES // (4 * max(self.dim, 1)))
        for start in range(0, len(self.rows), size):
            yield self[slice(start, start + size)]

    def materialize(self) -> torch.Tensor:
        """Every row in RAM, `[N, dim]`."""
        return self[slice(None)]

    def to(self, *args, **kwargs) -> torch.Tensor:
        """Like `Tensor.to`: reads every row (only for sets small enough to hold)."""
        return self.materialize().to(*args, **kwargs)

    def _dataset(self, index: int) -> h5py.Dataset:
        if index not in self._files:
            self._files[index] = h5py.File(self.paths[index], "r")
        return self._files[index]["features"]

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_files": {}}  # open files do not travel to other processes

    def __repr__(self) -> str:
        return f"LazyFeatures({len(self.rows)} rows x {self.dim} from {len(self.paths)} file(s))"


Features = torch.Tensor | LazyFeatures


def feature_chunks(features: Features) -> Iterator[torch.Tensor]:
    """Rows of in-memory or lazy features, `SCAN_BYTES` of rows at a time (the same chunks either way, so statistics
    computed chunk by chunk are bit-identical for both)."""
    if isinstance(features, LazyFeatures):
        yield from features.chunks()
        return
    size = max(1, SCAN_BYTES // (4 * max(int(features.shape[1]), 1)))
    for start in range(0, int(features.shape[0]), size):
        yield features[start : start + size]


def as_tensor(features: Features) -> torch.Tensor:
    """In-memory features as they are; lazy ones read whole (for sets small enough to hold, e.g. held-out rows)."""
    return features.materialize() if isinstance(features, LazyFeatures) else features
