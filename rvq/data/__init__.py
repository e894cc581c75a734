"""Demonstration data: HDF5 reading, the embedded default, normalization, chunking, splits."""

from rvq.data.chunks import ChunkSet, chunk_episode, make_chunks, split_by_episode
from rvq.data.embedded import embedded_demo_files
from rvq.data.episodes import Episode, list_demo_files, read_demo_file, read_demos, read_obs
from rvq.data.normalize import ActionNormalizer

__all__ = [
    "ActionNormalizer",
    "ChunkSet",
    "Episode",
    "chunk_episode",
    "embedded_demo_files",
    "list_demo_files",
    "make_chunks",
    "read_demo_file",
    "read_demos",
    "read_obs",
    "split_by_episode",
]
