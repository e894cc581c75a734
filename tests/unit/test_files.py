"""Content hashes and the atomic write (`rvq.files`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rvq.files import file_digest, json_digest, tree_digests, write_bytes_atomic


def test_json_digest_is_canonical_and_refuses_what_json_cannot_hold() -> None:
    assert json_digest({"a": 1, "b": [1, 2]}) == json_digest({"b": [1, 2], "a": 1})  # key order does not count
    assert json_digest({"a": 1}) != json_digest({"a": 1.5})
    with pytest.raises(TypeError):  # never its str(): two objects could print alike
        json_digest({"a": object()})


def test_file_and_tree_digests_follow_the_bytes_not_names_sizes_or_times(tmp_path: Path) -> None:
    import os

    (tmp_path / "sub").mkdir()
    (tmp_path / "a.h5").write_bytes(b"x" * 10)
    (tmp_path / "sub" / "b.parquet").write_bytes(b"y" * 3)
    before = tree_digests(tmp_path)
    assert sorted(before) == ["a.h5", "sub/b.parquet"] and before["a.h5"] == file_digest(tmp_path / "a.h5")
    stat = (tmp_path / "a.h5").stat()
    (tmp_path / "a.h5").write_bytes(b"z" * 10)  # same size, time put back
    os.utime(tmp_path / "a.h5", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert tree_digests(tmp_path)["a.h5"] != before["a.h5"]


def test_write_bytes_atomic_replaces_whole_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    write_bytes_atomic(path, json.dumps({"n": 1}))
    write_bytes_atomic(path, b'{"n": 2}')
    assert json.loads(path.read_text()) == {"n": 2} and [p.name for p in tmp_path.iterdir()] == ["record.json"]
