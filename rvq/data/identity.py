"""What a demo folder holds, by content: the identity the pipeline's stages and replay evaluations record."""

from __future__ import annotations

from pathlib import Path

from rvq.data.episodes import list_demo_files
from rvq.data.lerobot import is_lerobot_dataset
from rvq.files import file_digest, tree_digests


def demo_digests(folder: str | Path) -> dict[str, str]:
    """Each file the readers take (the HDF5 reader's `.hdf5` / `.h5`, or every file of a LeRobot dataset) → its
    sha256. Not the folder's path: the same files elsewhere are the same input; a file rewritten in place with its
    size and time kept is not. Refuses a folder without demo files. Costs one read of the files (about 0.5 GB/s)."""
    path = Path(folder)
    if is_lerobot_dataset(path):
        return tree_digests(path)
    return {demo.name: file_digest(demo) for demo in list_demo_files(path)}
