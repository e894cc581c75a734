"""Reading HDF5 files with h5py's failures turned into errors that name the file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import h5py

T = TypeVar("T")

# What h5py raises on truncated or corrupt objects (bad object headers, checksums, short reads).
HDF5_READ_ERRORS = (OSError, KeyError, RuntimeError, TypeError)


def read_hdf5(path: Path, read: Callable[[h5py.File], T], what: str) -> T:
    """Open `path` read-only and return `read(file)`. A file h5py cannot open, or whose objects it cannot
    read, raises a `ValueError` naming the file and `what` it should have held; `read`'s own ValueErrors pass."""
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path}: not a readable HDF5 file, so not {what} ({exc})") from exc
    try:
        with handle:
            return read(handle)
    except HDF5_READ_ERRORS as exc:
        raise ValueError(f"{path}: cannot read the {what}: the file may be truncated or corrupt "
                         f"({type(exc).__name__}: {exc})") from exc
