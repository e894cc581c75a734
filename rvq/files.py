"""Files by content: the sha256 of a JSON value, of a file's bytes and of a folder's files (identities,
fingerprints), and the one atomic write (readers never see a partial file)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

_BLOCK = 1 << 20


def json_digest(value: Any) -> str:
    """sha256 (hex) of `value` as canonical JSON (keys sorted); a value JSON cannot hold is refused, never
    replaced by its `str` (two different objects could print alike)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    """sha256 (hex) of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_digests(folder: str | os.PathLike) -> dict[str, str]:
    """Every regular file under `folder` (recursively, hidden files included) → its sha256, keyed by its path
    relative to `folder` (POSIX). What a reader of the folder could read, by content: names, sizes and times
    are not identities."""
    root = Path(folder)
    return {path.relative_to(root).as_posix(): file_digest(path)
            for path in sorted(root.rglob("*")) if path.is_file()}


def write_bytes_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Write `data` (text is UTF-8) to a temp file beside `path` (named by this process, so concurrent writers do
    not share it), then rename it over `path`: a reader sees the old file or the new one, never a partial one."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)
