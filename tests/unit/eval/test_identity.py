"""The evaluation's policy identity for the expert's round trip through a tokenizer checkpoint (folder or file)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rvq.eval import EvalConfig
from rvq.eval.config import policy_identity
from rvq.rfsq import ActionRFSQAE
from rvq.rfsq.checkpoint import save_tokenizer


def _identity(tokenizer: Path) -> str:
    return policy_identity(EvalConfig(policy="expert", roundtrip_tokenizer=str(tokenizer)))


def test_a_tokenizer_folder_has_an_identity_that_follows_its_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    first, second = ActionRFSQAE(), ActionRFSQAE()
    folder = save_tokenizer(tmp_path / "a", first)  # the hub-style folder the pipeline's tokenizer stage writes
    assert folder.is_dir()
    same = save_tokenizer(tmp_path / "b", first)
    other = save_tokenizer(tmp_path / "c", second)
    assert _identity(folder) == _identity(same)
    assert _identity(folder) != _identity(other)
    assert _identity(folder) != policy_identity(EvalConfig(policy="expert"))
    single = save_tokenizer(tmp_path / "d.pt", first)  # a single-file checkpoint keeps its file digest
    assert single.is_file() and _identity(single) != _identity(other)


def test_a_folder_without_config_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        _identity(tmp_path / "empty")


def test_a_replayed_demo_folder_is_identified_by_its_files_content(tmp_path: Path) -> None:
    """Actions rewritten in place with the file's size and time kept (as `cp -p` or `rsync -t` leave them) are
    another replay policy; a `.h5` file counts as the reader takes it; the same files elsewhere are the same."""
    import os
    import shutil

    import h5py

    from mocks.libero_files import write_libero_folder

    demos = tmp_path / "demos"
    write_libero_folder(demos, ["pick up the bowl"], num_demos=2, steps=10, image_size=8)

    def identity(folder: Path) -> str:
        return policy_identity(EvalConfig(policy="replay", demos=str(folder), env="mock"))

    before = identity(demos)
    shutil.copytree(demos, tmp_path / "copy")
    assert identity(tmp_path / "copy") == before
    path = next(demos.glob("*.hdf5"))
    stat = path.stat()
    with h5py.File(path, "a") as f:
        f["data/demo_0/actions"][0, 0] += 0.5
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and identity(demos) != before
    shutil.copy(path, demos / "extra.h5")
    assert identity(demos) != identity(tmp_path / "copy")
